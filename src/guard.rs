//! The lifetime core: presence sections, unplug, revocable hardware, managed releases.
//!
//! displayd keeps two lifetimes apart, as Linux DRM does:
//!
//! * **The bound interval** — while the device is present. Hardware lives in a [`Revocable`], and the
//!   only way to reach it is [`Revocable::try_access`], which opens a [`Section`]. [`Presence::unplug`]
//!   (and [`Revocable::revoke`]) flips the device to "gone" and returns only after every section that
//!   could have missed the flip has ended; the hardware is then dropped exactly once. No section, no
//!   register: a compile-time property, not a review rule.
//! * **The device object** — while anything refers to it. It is an `Arc`; every handle holds one.
//!   Resources tied to it are registered in a [`Releases`] list and released at the last reference,
//!   in reverse order of registration, exactly once — also when set-up fails halfway.
//!
//! The section fast path takes no lock and writes no cache line that another thread writes: each
//! thread owns a slot per [`Presence`] and pairs a plain store with a `SeqCst` fence, so enter and exit
//! cost a few nanoseconds on one thread and on many (see `benches/guard.rs`).

mod presence;
mod releases;
mod revocable;

pub use presence::{Presence, Section};
pub use releases::Releases;
pub use revocable::{Access, Revocable};

/// The synchronisation primitives the guard is built from: `std`'s normally, `loom`'s when the crate
/// is compiled with `--cfg loom` so that the model tests in `tests/loom.rs` explore every interleaving.
mod sync {
    #[cfg(loom)]
    pub(crate) use loom::{
        sync::atomic::{fence, AtomicBool, AtomicU8, AtomicUsize},
        sync::{Arc, Mutex},
        thread::yield_now,
    };
    #[cfg(not(loom))]
    pub(crate) use std::{
        sync::atomic::{fence, AtomicBool, AtomicU8, AtomicUsize},
        sync::{Arc, Mutex},
        thread::yield_now,
    };

    /// Waits until `done()` holds: a short spin for the common case of a section that is about to
    /// end, then yields, then sleeps, so that a waiter never starves a reader sharing its CPU.
    pub(crate) fn wait_until(mut done: impl FnMut() -> bool) {
        let mut rounds = 0u32;
        while !done() {
            backoff(rounds);
            rounds = rounds.saturating_add(1);
        }
    }

    #[cfg(not(loom))]
    fn backoff(rounds: u32) {
        const SPINS: u32 = 64;
        const YIELDS: u32 = SPINS + 64;
        if rounds < SPINS {
            std::hint::spin_loop();
        } else if rounds < YIELDS {
            yield_now();
        } else {
            // A section that lasts this long is waiting on something slow; poll it gently.
            let micros = 10u64 << (rounds - YIELDS).min(6);
            std::thread::sleep(std::time::Duration::from_micros(micros));
        }
    }

    #[cfg(loom)]
    fn backoff(_rounds: u32) {
        yield_now();
    }
}
