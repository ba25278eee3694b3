//! displayd on a real PCI function under Linux (issue #7): the function found and mapped through
//! sysfs, its removal and arrival learnt from the kernel's uevents, and clients served in-process
//! exactly as on the emulated device. The QEMU end-to-end test boots this in a Linux guest.

pub mod guest;
pub mod pci;
pub mod uevent;
