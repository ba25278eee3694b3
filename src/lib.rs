//! displayd: a Redox OS display driver for the QEMU/Bochs adapter that survives the device
//! disappearing at any moment.
//!
//! The crate is layered, and the arrows point one way: [`guard`] (lifetimes) ← device ← kms ←
//! device_object ← scheme ← platform ← the binary. See the README for the architecture and the unplug policy.

pub mod device;
pub mod device_object;
pub mod guard;
pub mod kms;
pub mod platform;
pub mod scheme;
