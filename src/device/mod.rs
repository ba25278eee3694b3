//! Hardware: everything that touches the Bochs adapter's registers and VRAM.
//!
//! Planned layout (see the README's status): `mmio.rs` (bounds-checked register and VRAM access,
//! reachable only through a [`crate::guard`] section), `bochs.rs` (DISPI programming, EDID, modes,
//! flips, blanking, the health probe) and `emulated.rs` (a software Bochs device for Linux hosts
//! whose removal revokes its mappings, so a use-after-unplug crashes instead of passing).
