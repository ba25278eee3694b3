//! The Linux host platform: displayd on the emulated Bochs device, in-process, with a stand-in for
//! the kernel between clients and the scheme. Tests, benches and the demo run here.

pub mod consumers;
#[cfg(feature = "demo")]
pub mod demo;
pub mod drm;
pub mod kernel;
pub mod memory;

use std::sync::Arc;

use crate::device::bochs::{DeviceError, Hardware, PciId, QEMU_BOCHS_DISPLAY};
use crate::device::emulated::EmulatedDevice;
use crate::device_object::DeviceObject;
use crate::guard::Releases;

/// Plugs the emulated device in `slot` into the display scheme as device object `instance` (see
/// [`plug_hardware`]).
pub fn plug(
    kernel: &kernel::Kernel,
    slot: &EmulatedDevice,
    instance: u32,
    on_release: impl FnOnce() + Send + 'static,
) -> Result<Arc<DeviceObject>, DeviceError> {
    let (vram, mmio) = slot.map_bars();
    let hardware = Hardware { mmio, vram };
    plug_hardware(kernel, QEMU_BOCHS_DISPLAY, hardware, "pci:0000:00:02.0", instance, on_release)
}

/// Plugs mapped Bochs hardware into the display scheme as device object `instance`
/// ([`DeviceObject::bind`], `unique` being the DRM bus id clients read) and binds it for new opens.
/// `on_release` runs when the device object's last reference goes, or now if set-up fails.
pub fn plug_hardware(
    kernel: &kernel::Kernel,
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
    kernel.scheme().bind(Arc::clone(&device));
    Ok(device)
}
