//! The Linux host platform: displayd on the emulated Bochs device, in-process, with a stand-in for
//! the kernel between clients and the scheme. Tests, benches and the demo run here.

pub mod consumers;
pub mod demo;
pub mod drm;
pub mod kernel;
pub mod memory;

use std::sync::Arc;

use crate::device::bochs::{Bochs, DeviceError, Hardware, Options, QEMU_BOCHS_DISPLAY};
use crate::device::emulated::EmulatedDevice;
use crate::guard::Releases;

/// Plugs the emulated device in `slot` into the display scheme as device object `instance`: maps
/// its BARs, probes it, builds its KMS state, and binds it for new opens. `on_release` runs when
/// the device object's last reference goes.
pub fn plug(
    kernel: &kernel::Kernel,
    slot: &EmulatedDevice,
    instance: u32,
    on_release: impl FnOnce() + Send + 'static,
) -> Result<Arc<crate::scheme::DeviceObject>, DeviceError> {
    let releases = Releases::new();
    releases.add("device object", on_release);
    let (vram, mmio) = slot.map_bars();
    let bochs = Bochs::probe(QEMU_BOCHS_DISPLAY, Hardware { mmio, vram }, Options::default())?;
    let kms =
        crate::kms::Kms::new(Arc::new(bochs), Arc::new(memory::HostAllocator), "pci:0000:00:02.0".into());
    let device = crate::scheme::DeviceObject::new(kms, instance, releases);
    kernel.scheme().bind(Arc::clone(&device));
    Ok(device)
}
