//! Hardware: everything that touches the Bochs adapter's registers and VRAM.
//!
//! `mmio` is the only way to the BARs, `regs` names them, `edid` reads (and, for the emulated
//! device, writes) monitor descriptions, `bochs` programs the adapter, and `emulated` is a software
//! Bochs device for Linux hosts whose removal revokes its mappings, so a use-after-unplug crashes
//! instead of passing.

pub mod bochs;
pub mod edid;
#[cfg(not(target_os = "redox"))]
pub mod emulated;
pub mod mmio;
pub mod regs;
