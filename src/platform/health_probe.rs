//! The health probe on a thread of its own: removal detection that no request can hold up.
//!
//! Guarantees:
//! * Every `period` the probe runs [`DeviceObject::check_health`] on its device object. When the ID
//!   register no longer reads a Bochs id, the probe unplugs that object as a surprise removal
//!   ([`DeviceObject::unplug`]) right there, on its own thread: the unplug waits only for the
//!   presence sections open at that moment, never for the request loop or any lock it holds, and a
//!   long request never delays the probe. Unbinding the object from the scheme (so new opens answer
//!   ENODEV) stays with the thread that owns the scheme, at its next wake
//!   ([`crate::scheme::DisplayScheme::unbind_if_unplugged`]).
//! * Between ticks the probe holds only a weak reference, so it never keeps a device object alive
//!   (a tick holds a strong one for its check and unplug), and it ends at its next tick once the
//!   object is freed, once its device is unplugged by anyone, or once the
//!   [`HealthProbe`] handle is dropped.
//!
//! The thread is never joined. Dropping the handle wakes it, and it ends on that wake; nothing waits
//! for that. (On Redox, relibc's `pthread_join` has faulted once a joined thread had exited: seen
//! in the end-to-end test's client.)

use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

use crate::device::Unplug;
use crate::device_object::{Absent, DeviceObject};

/// A running health probe; dropping it stops the probe.
pub struct HealthProbe {
    stop: Arc<Stop>,
}

/// The probe's stop flag, and the condition variable its thread sleeps on between ticks.
#[derive(Default)]
struct Stop {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl Stop {
    /// Waits one period or until stopped; `true` if stopped.
    fn wait(&self, period: Duration) -> bool {
        let stopped = self.stopped.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (stopped, _) = self
            .wake
            .wait_timeout_while(stopped, period, |stopped| !*stopped)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *stopped
    }
}

impl HealthProbe {
    /// Starts probing `device` every `period` on a new thread.
    pub fn spawn(device: &Arc<DeviceObject>, period: Duration) -> std::io::Result<HealthProbe> {
        let stop = Arc::new(Stop::default());
        let (weak, theirs) = (Arc::downgrade(device), Arc::clone(&stop));
        std::thread::Builder::new()
            .name(format!("health-probe-{}", device.instance))
            .spawn(move || probe(&weak, period, &theirs))?;
        Ok(HealthProbe { stop })
    }
}

impl Drop for HealthProbe {
    fn drop(&mut self) {
        *self.stop.stopped.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = true;
        self.stop.wake.notify_all();
    }
}

/// The probe thread: tick, check, and unplug a vanished device.
fn probe(device: &Weak<DeviceObject>, period: Duration, stop: &Stop) {
    loop {
        if stop.wait(period) {
            return;
        }
        // Upgraded for one check only, so the probe never holds the object between ticks.
        let Some(device) = device.upgrade() else { return };
        match device.check_health() {
            None => {}
            Some(Absent::AlreadyUnplugged) => return,
            Some(gone @ Absent::Vanished(_)) => {
                log::warn!("health probe: device {}: {gone}: surprise removal", device.instance);
                device.unplug(Unplug::Surprise);
                return;
            }
        }
    }
}
