//! displayd's test kit: what the tests, benches, fuzz target and demo drive the driver with on a
//! Linux host, kept out of the driver so the `displayd` library holds only what runs.
//!
//! * [`emulated`]: a software Bochs device whose removal revokes its mappings, so a use after
//!   unplug crashes instead of passing;
//! * [`kernel`]: an in-process stand-in for the Redox kernel between clients and the scheme, and
//!   [`drm`], the client side of its calls, encoded as relibc sends them;
//! * [`consumers`]: Orbital's and fbcond's call sequences with their failure rules;
//! * [`demo`] (feature `demo`): the orbclient-drawn compositor through unplug, replug and yank;
//! * [`guest`]: the QEMU end-to-end test's scenario on displayd's Linux platform, and
//!   [`fake_sysfs`], the sysfs tree its tests and the Linux platform's run on;
//! * [`test_pattern`]: the frames the end-to-end clients draw and the hosts compare.
//!
//! Its binaries are `demo` (what `scripts/demo` runs) and `guest` (what the QEMU test boots).

pub mod consumers;
#[cfg(feature = "demo")]
pub mod demo;
pub mod drm;
pub mod emulated;
pub mod fake_sysfs;
pub mod guest;
pub mod kernel;
pub mod test_pattern;

use std::sync::Arc;

use displayd::device::bochs::{Hardware, QEMU_BOCHS_DISPLAY};
use displayd::device::{DeviceError, Unplug};
use displayd::device_object::DeviceObject;
use displayd::linux::plug_hardware;
use displayd::scheme::DisplayScheme;
use emulated::EmulatedDevice;

/// Plugs `emulated` into the stand-in kernel's scheme as device object
/// `instance` (see [`plug_hardware`]).
pub fn plug(
    kernel: &kernel::Kernel,
    emulated: &EmulatedDevice,
    instance: u32,
    on_release: impl FnOnce() + Send + 'static,
) -> Result<Arc<DeviceObject>, DeviceError> {
    let (vram, mmio) = emulated.map_bars();
    let hardware = Hardware { mmio, vram };
    plug_hardware(kernel.scheme(), QEMU_BOCHS_DISPLAY, hardware, "pci:0000:00:02.0", instance, on_release)
}

/// One health-probe tick, run now, for tests that decide when the probe runs: the bound device's
/// [`DeviceObject::check_health`], then for a device found absent the surprise unplug and unbind
/// that the driver's `HealthProbe` thread and the event loop's next wake do on Redox. Returns
/// whether it unplugged one.
pub fn probe_now(scheme: &DisplayScheme) -> bool {
    let Some(device) = scheme.device() else { return false };
    let Some(absent) = device.check_health() else { return false };
    log::warn!("health probe: device {}: {absent}: surprise removal", device.instance);
    scheme.unplug(&device, Unplug::Surprise)
}
