//! displayd on a real PCI function under Linux (issue #7): the function found and mapped through
//! sysfs, its removal and arrival learnt from the kernel's uevents, dumb buffers in anonymous
//! mappings. Linux has no Redox kernel to serve the scheme to, so what serves clients is the
//! caller's [`hotplug::Service`]; the QEMU end-to-end test boots this in a Linux guest with the test
//! kit's in-process clients.

pub mod hotplug;
pub mod memory;
pub mod pci;
pub mod uevent;

use std::sync::Arc;

use crate::device::bochs::{Hardware, PciId};
use crate::device::DeviceError;
use crate::device_object::DeviceObject;
use crate::guard::Releases;
use crate::scheme::DisplayScheme;

/// Plugs mapped Bochs hardware into `scheme` as device object `instance` ([`DeviceObject::bind`],
/// `unique` being the DRM bus id clients read, dumb buffers from [`memory::HostAllocator`]) and
/// binds it for new opens. `on_release` runs when the device object's last reference goes, or now
/// if set-up fails.
pub fn plug_hardware(
    scheme: &DisplayScheme,
    pci: PciId,
    hardware: Hardware,
    unique: &str,
    instance: u32,
    on_release: impl FnOnce() + Send + 'static,
) -> Result<Arc<DeviceObject>, DeviceError> {
    let releases = Releases::new();
    releases.add("device object", on_release);
    let allocator = Arc::new(memory::HostAllocator);
    let device = DeviceObject::bind(pci, hardware, allocator, unique.into(), instance, releases)?;
    scheme.bind(Arc::clone(&device));
    Ok(device)
}
