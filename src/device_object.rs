//! The device object: one bound instance of the adapter — the counterpart of Linux's
//! `drm_device` — owning its hardware driver, its KMS state and its managed releases.
//!
//! Guarantees:
//! * [`DeviceObject::bind`] is the only way to make one, and every platform (Redox, the Linux guest,
//!   the host's tests and demo) binds through it: probe the hardware, build the KMS state, arm the
//!   releases. If the probe fails, the releases run at once.
//! * [`DeviceObject::check_health`] is the only health check: it reads the ID register (never
//!   writing the device) and its verdict is the same on every platform — an ID that is no longer a
//!   Bochs id means the device vanished without notice, a surprise removal.
//! * [`DeviceObject::unplug`] unplugs this object's device and no other: once it returns nothing
//!   touches that hardware again. Which device new opens reach is the scheme's business, not this.
//! * The managed releases run after everything else of the object is gone, at its last reference.

use std::sync::Arc;

use crate::device::bochs::{Bochs, Hardware, Options, PciId};
use crate::device::{Adapter, DeviceError, Health, Unplug};
use crate::guard::Releases;
use crate::kms::{Allocator, Kms};

/// Why a device object's device is gone, as the health check found it. Either way it is a surprise
/// removal: the device must be unplugged with [`Unplug::Surprise`], never touched again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Absent {
    /// The ID register reads this, not a Bochs id (0xFFFF on real PCI, 0x0000 on QEMU after
    /// removal): the device vanished without notice.
    Vanished(u16),
    /// It is already unplugged while still bound: the driver found it gone in the middle of a call
    /// (see [`Bochs::set_mode`]) and unplugged it then.
    AlreadyUnplugged,
}

impl std::fmt::Display for Absent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Absent::Vanished(id) => write!(f, "ID register reads {id:#06x}"),
            Absent::AlreadyUnplugged => f.write_str("the driver found it gone during a call"),
        }
    }
}

/// One device instance's object: its adapter, its KMS state and the releases that run at its last
/// reference.
pub struct DeviceObject {
    /// The KMS state (which reaches the hardware through the same adapter).
    pub kms: Kms,
    /// Which instance this is (1 for the first device bound, then 2, ...).
    pub instance: u32,
    /// The hardware driver, held directly for the health check and the unplug.
    adapter: Arc<Bochs>,
    // Declared last: dropped after the KMS state and the adapter, at the very end of the object's
    // life.
    _releases: Releases,
}

impl DeviceObject {
    /// Binds a Bochs function as device object `instance`: probes `hardware` (the mapped BARs of
    /// function `pci`), then builds its KMS state, with `allocator` for dumb buffers and `unique` as
    /// the DRM bus id clients read (`pci:<address>`). `releases` run when the object's last
    /// reference goes, or now if the probe fails. The object is ready for the scheme to bind.
    pub fn bind(
        pci: PciId,
        hardware: Hardware,
        allocator: Arc<dyn Allocator>,
        unique: String,
        instance: u32,
        releases: Releases,
    ) -> Result<Arc<DeviceObject>, DeviceError> {
        let adapter = Arc::new(Bochs::probe(pci, hardware, Options::default())?);
        let kms = Kms::new(Arc::clone(&adapter) as _, allocator, unique);
        log::info!("device {instance}: bound as a new device object");
        Ok(Arc::new(DeviceObject { kms, instance, adapter, _releases: releases }))
    }

    /// The health check, the same on every platform: `None` while the device is there, else why it
    /// is gone (then unplug it as a surprise). Reads the ID register only; once unplugged, reads
    /// nothing.
    pub fn check_health(&self) -> Option<Absent> {
        match self.adapter.health() {
            Health::Present => None,
            Health::Vanished(id) => Some(Absent::Vanished(id)),
            Health::Unplugged => Some(Absent::AlreadyUnplugged),
        }
    }

    /// Unplugs this object's device (orderly: scanout off first; surprise: not touched). When it
    /// returns, no thread touches the hardware again. `true` to the call that did it.
    pub fn unplug(&self, kind: Unplug) -> bool {
        self.adapter.unplug(kind)
    }

    /// Whether this object's device has been unplugged.
    pub fn is_unplugged(&self) -> bool {
        self.adapter.is_unplugged()
    }
}

impl Drop for DeviceObject {
    fn drop(&mut self) {
        log::info!("device {}: last reference gone, device object freed", self.instance);
    }
}
