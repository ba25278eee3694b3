//! Model checks of the lifetime core: every interleaving (and every weak-memory outcome loom models)
//! of readers against unplug. Run with `RUSTFLAGS="--cfg loom" cargo test --release --test loom`.
#![cfg(loom)]

use displayd::guard::{Presence, Releases, Revocable};
use loom::cell::UnsafeCell;
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use loom::sync::{Arc, Mutex};
use loom::thread;

/// Stands for the hardware: reading it after its drop is the bug the guard exists to prevent.
struct Hardware {
    alive: AtomicBool,
    drops: Arc<AtomicUsize>,
}

impl Hardware {
    fn new(drops: &Arc<AtomicUsize>) -> Self {
        Hardware { alive: AtomicBool::new(true), drops: Arc::clone(drops) }
    }

    fn touch(&self) {
        assert!(self.alive.load(Relaxed), "a reader observed the hardware after its drop");
    }
}

impl Drop for Hardware {
    fn drop(&mut self) {
        self.alive.store(false, Relaxed);
        self.drops.fetch_add(1, Relaxed);
    }
}

/// Two readers, one of them nested, race a revoke; under `OWNED_SLOTS = 1` one reader uses its own
/// slot and the other the shared overflow slot. Loom's `UnsafeCell` inside `Revocable` flags any
/// read that is not ordered before the drop.
#[test]
fn two_readers_one_nested_against_revoke() {
    loom::model(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let hw = Arc::new(Revocable::new(Hardware::new(&drops)));
        let flat = {
            let hw = Arc::clone(&hw);
            thread::spawn(move || {
                if let Some(regs) = hw.try_access() {
                    regs.touch();
                }
            })
        };
        let nested = {
            let hw = Arc::clone(&hw);
            thread::spawn(move || {
                if let Some(outer) = hw.try_access() {
                    outer.touch();
                    if let Some(inner) = hw.try_access() {
                        inner.touch();
                    }
                    outer.touch();
                }
            })
        };
        assert!(hw.revoke());
        assert_eq!(drops.load(Relaxed), 1);
        assert!(hw.try_access().is_none());
        flat.join().unwrap();
        nested.join().unwrap();
        assert_eq!(drops.load(Relaxed), 1);
    });
}

/// The bare presence protects whatever the caller guards with it: a write after unplug must never
/// overlap a read inside a section.
#[test]
fn presence_orders_sections_before_the_teardown_write() {
    loom::model(|| {
        let presence = Arc::new(Presence::new());
        let registers = Arc::new(UnsafeCell::new(0xB0C5u16));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (presence, registers) = (Arc::clone(&presence), Arc::clone(&registers));
                thread::spawn(move || {
                    if let Some(_section) = presence.enter() {
                        // SAFETY: (test) the teardown write below happens only after unplug.
                        let id = registers.with(|id| unsafe { *id });
                        assert_eq!(id, 0xB0C5);
                    }
                })
            })
            .collect();
        assert!(presence.unplug());
        // SAFETY: (test) unplug returned, so no section reads the value any more.
        registers.with_mut(|id| unsafe { *id = 0xFFFF });
        for reader in readers {
            reader.join().unwrap();
        }
    });
}

/// Concurrent revokes: exactly one drops the value and says so; both return after the drop.
#[test]
fn concurrent_revokes_drop_exactly_once() {
    loom::model(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let hw = Arc::new(Revocable::new(Hardware::new(&drops)));
        let other = {
            let (hw, drops) = (Arc::clone(&hw), Arc::clone(&drops));
            thread::spawn(move || {
                let won = hw.revoke();
                assert_eq!(drops.load(Relaxed), 1, "revoke returned before the drop");
                won
            })
        };
        let won_here = hw.revoke();
        assert_eq!(drops.load(Relaxed), 1, "revoke returned before the drop");
        let won_there = other.join().unwrap();
        assert!(won_here ^ won_there, "exactly one revoke reports the drop");
        drop(hw);
        assert_eq!(drops.load(Relaxed), 1);
    });
}

/// The last two references to a device object drop on two threads at once: its releases run once,
/// in reverse order of registration.
#[test]
fn releases_run_once_in_reverse_when_the_last_two_references_race() {
    loom::model(|| {
        let log = Arc::new(Mutex::new(Vec::new()));
        let releases = Releases::new();
        for step in 0..3 {
            let log = Arc::clone(&log);
            releases.add("step", move || log.lock().unwrap().push(step));
        }
        let device = Arc::new(releases);
        let other = Arc::clone(&device);
        let racer = thread::spawn(move || drop(other));
        drop(device);
        racer.join().unwrap();
        assert_eq!(*log.lock().unwrap(), [2, 1, 0]);
    });
}
