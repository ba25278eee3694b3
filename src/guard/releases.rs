//! Managed releases: the device object's clean-up list (Linux's drmm actions).
//!
//! Guarantees:
//! * Every registered action runs exactly once, when the list is dropped — that is, with the device
//!   object that owns it, at its last reference.
//! * Actions run in reverse order of registration, so later resources (which may depend on earlier
//!   ones) go first.
//! * Set-up that fails halfway drops the list it was building, which runs what had been registered:
//!   there is no separate error path to forget.

use super::sync::Mutex;

type Action = Box<dyn FnOnce() + Send>;

/// Clean-up actions tied to a device object's lifetime.
///
/// # Examples
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use displayd::guard::Releases;
///
/// let log = Arc::new(Mutex::new(Vec::new()));
/// let releases = Releases::new();
/// for name in ["scheme name", "vt state", "mode list"] {
///     let log = Arc::clone(&log);
///     releases.add(name, move || log.lock().unwrap().push(name));
/// }
/// drop(releases);
/// assert_eq!(*log.lock().unwrap(), ["mode list", "vt state", "scheme name"]);
/// ```
///
/// # Invariants
///
/// * `actions` holds each registered action until the drop takes them all; nothing else removes one.
pub struct Releases {
    actions: Mutex<Vec<(&'static str, Action)>>,
}

impl Releases {
    /// An empty list.
    pub fn new() -> Self {
        Releases { actions: Mutex::new(Vec::new()) }
    }

    /// Registers `action`, to run when the list is dropped. `name` appears in the debug log.
    pub fn add(&self, name: &'static str, action: impl FnOnce() + Send + 'static) {
        self.lock().push((name, Box::new(action)));
    }

    /// How many actions are waiting.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no action is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> impl std::ops::DerefMut<Target = Vec<(&'static str, Action)>> + '_ {
        // An action that panicked cannot leave the list half-updated (push is the only mutation),
        // so a poisoned lock is still a valid list.
        self.actions.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Default for Releases {
    fn default() -> Self {
        Releases::new()
    }
}

impl Drop for Releases {
    fn drop(&mut self) {
        let actions = std::mem::take(&mut *self.lock());
        for (name, action) in actions.into_iter().rev() {
            log::debug!("release: {name}");
            action();
        }
    }
}

impl std::fmt::Debug for Releases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.lock().iter().map(|(name, _)| *name).collect();
        f.debug_struct("Releases").field("pending", &names).finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A device object as set-up builds it: a resource is registered as soon as it is acquired.
    struct Device {
        _releases: Releases,
    }

    fn set_up(log: &Arc<Mutex<Vec<&'static str>>>, fail_at: Option<usize>) -> Result<Device, usize> {
        let releases = Releases::new();
        for (step, name) in ["pcid channel", "bars", "scheme"].into_iter().enumerate() {
            if fail_at == Some(step) {
                return Err(step);
            }
            let log = Arc::clone(log);
            releases.add(name, move || log.lock().unwrap().push(name));
        }
        Ok(Device { _releases: releases })
    }

    #[test]
    fn a_failed_set_up_releases_what_it_had_in_reverse() {
        let log = Arc::new(Mutex::new(Vec::new()));
        assert_eq!(set_up(&log, Some(2)).err(), Some(2));
        assert_eq!(*log.lock().unwrap(), ["bars", "pcid channel"]);
    }

    #[test]
    fn the_last_reference_releases_everything_once() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let device = Arc::new(set_up(&log, None).unwrap());
        let handles: Vec<_> = (0..4).map(|_| Arc::clone(&device)).collect();
        drop(device);
        assert!(log.lock().unwrap().is_empty(), "released while references remain");
        let threads: Vec<_> = handles.into_iter().map(|h| std::thread::spawn(move || drop(h))).collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(*log.lock().unwrap(), ["scheme", "bars", "pcid channel"]);
    }

    #[test]
    fn len_counts_pending_actions() {
        let releases = Releases::new();
        assert!(releases.is_empty());
        releases.add("a", || {});
        releases.add("b", || {});
        assert_eq!(releases.len(), 2);
    }
}
