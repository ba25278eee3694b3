//! `Revocable<T>`: a value reachable only inside a presence section, dropped exactly once at revoke.
//!
//! Guarantees:
//! * [`Revocable::try_access`] hands out the value only inside a [`Section`], and the reference it
//!   gives cannot outlive that section (it borrows the [`Access`], not the `Revocable`).
//! * [`Revocable::revoke`] refuses new sections, waits for the live ones, then drops the value —
//!   exactly once, whoever calls revoke and however often. An unrevoked value is dropped with the
//!   `Revocable`.
//!
//! Nothing here hands out a pointer: the `Revocable` owns the value for its whole life. (A C API
//! that returned the pointer was merged into Linux and reverted in 2026 because consumers kept
//! stale copies of it.)

use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::ops::Deref;
#[cfg(not(loom))]
use std::ptr::NonNull;

use super::presence::{Presence, Section};

#[cfg(loom)]
use loom::cell::UnsafeCell;
#[cfg(not(loom))]
use std::cell::UnsafeCell;

/// A value owned for as long as the device is present (the hardware, in displayd).
///
/// # Examples
///
/// ```
/// use displayd::guard::Revocable;
///
/// let registers = Revocable::new(vec![0xB0C5u16; 16]);
/// {
///     let regs = registers.try_access().expect("the device is present");
///     assert_eq!(regs[0], 0xB0C5);
/// }
/// assert!(registers.revoke(), "this call dropped the value");
/// assert!(registers.try_access().is_none());
/// ```
///
/// # Invariants
///
/// * `value` is initialised until the presence is gone; the one successful revoke drops it after
///   the presence has drained, and nothing reads it afterwards because every later `try_access`
///   is refused.
/// * Every `&T` given out lives inside an [`Access`], which holds a live [`Section`].
pub struct Revocable<T> {
    presence: Presence,
    value: UnsafeCell<ManuallyDrop<T>>,
}

// SAFETY: sharing a `Revocable` shares `&T` between threads (needs `T: Sync`) and lets any thread
// that holds it run `revoke`, which drops `T` on that thread (needs `T: Send`).
unsafe impl<T: Send + Sync> Sync for Revocable<T> {}

/// Access to a revocable value: derefs to it, and keeps the device present while it lives.
///
/// Bound to the thread that made it, like the [`Section`] inside it.
pub struct Access<'a, T> {
    // A pointer, not `&'a T`: a reference held in a struct is assumed valid for as long as the
    // struct could be used, even while its drop runs and ends the section, after which revoke may
    // drop the value (the problem of std's `Ref`, rust-lang/rust#63787). Declared before the
    // section so that, under loom, the tracked read ends before the section.
    #[cfg(not(loom))]
    value: NonNull<T>,
    #[cfg(loom)]
    value: loom::cell::ConstPtr<ManuallyDrop<T>>,
    section: Section<'a>,
    _value: PhantomData<&'a T>,
}

impl<T> Revocable<T> {
    /// Wraps a value for a device that is present now.
    pub fn new(value: T) -> Self {
        Revocable { presence: Presence::new(), value: UnsafeCell::new(ManuallyDrop::new(value)) }
    }

    /// The value, inside a fresh section; `None` once revoke has begun.
    #[inline]
    pub fn try_access(&self) -> Option<Access<'_, T>> {
        let section = self.presence.enter()?;
        #[cfg(not(loom))]
        // SAFETY: `UnsafeCell::get` never returns null, and `ManuallyDrop<T>` has `T`'s layout. No
        // reference is made here; `Access::deref` makes each one inside the section.
        let value = unsafe { NonNull::new_unchecked(self.value.get().cast::<T>()) };
        #[cfg(loom)]
        let value = self.value.get();
        Some(Access { value, section, _value: PhantomData })
    }

    /// Refuses new access, waits until no section holds the value, then drops it.
    ///
    /// Returns `true` to the caller that dropped it. Every caller returns only once it is dropped.
    ///
    /// # Panics
    ///
    /// If the calling thread holds an [`Access`] of this value (it would wait for itself).
    pub fn revoke(&self) -> bool {
        self.presence.unplug_then(|| {
            #[cfg(not(loom))]
            // SAFETY: `unplug_then` runs this at most once, after every section has ended and with
            // new ones refused, so no reference to the value exists; `Drop` skips a gone value.
            unsafe {
                ManuallyDrop::drop(&mut *self.value.get())
            }
            #[cfg(loom)]
            // SAFETY: as above; loom additionally checks that no tracked read overlaps this write.
            unsafe {
                ManuallyDrop::drop(self.value.get_mut().deref())
            }
        })
    }

    /// Whether revoke has begun (a racy point check; only an [`Access`] proves the value is there).
    pub fn is_revoked(&self) -> bool {
        self.presence.is_unplugged()
    }
}

impl<T> Drop for Revocable<T> {
    fn drop(&mut self) {
        if self.presence.is_gone() {
            return;
        }
        #[cfg(not(loom))]
        // SAFETY: the presence never went gone, so revoke never dropped the value, and `&mut self`
        // rules out any live `Access`.
        unsafe {
            ManuallyDrop::drop(self.value.get_mut())
        }
        #[cfg(loom)]
        // SAFETY: as above.
        unsafe {
            ManuallyDrop::drop(self.value.get_mut().deref())
        }
    }
}

impl<T> std::fmt::Debug for Revocable<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocable").field("presence", &self.presence).finish_non_exhaustive()
    }
}

impl<'a, T> Access<'a, T> {
    /// The section this access lives in.
    pub fn section(&self) -> &Section<'a> {
        &self.section
    }
}

impl<T> Deref for Access<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        #[cfg(not(loom))]
        // SAFETY: the value is initialised while this access's section lives (revoke waits for it
        // before dropping it), and only shared references to it are ever made while present.
        return unsafe { self.value.as_ref() };
        #[cfg(loom)]
        // SAFETY: the pointer was taken inside the live section this access holds.
        return unsafe { self.value.deref() };
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::sync::Arc;

    struct Counted(Arc<AtomicUsize>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    #[test]
    fn revoke_drops_once_and_drop_skips_a_revoked_value() {
        let drops = Arc::new(AtomicUsize::new(0));
        let value = Revocable::new(Counted(Arc::clone(&drops)));
        assert!(value.revoke());
        assert!(!value.revoke());
        assert_eq!(drops.load(SeqCst), 1);
        drop(value);
        assert_eq!(drops.load(SeqCst), 1);
    }

    #[test]
    fn an_unrevoked_value_drops_with_its_owner() {
        let drops = Arc::new(AtomicUsize::new(0));
        drop(Revocable::new(Counted(Arc::clone(&drops))));
        assert_eq!(drops.load(SeqCst), 1);
    }

    #[test]
    fn concurrent_revokes_drop_once_and_all_return_after_the_drop() {
        for _ in 0..200 {
            let drops = Arc::new(AtomicUsize::new(0));
            let value = Arc::new(Revocable::new(Counted(Arc::clone(&drops))));
            let handles: Vec<_> = (0..3)
                .map(|_| {
                    let (value, drops) = (Arc::clone(&value), Arc::clone(&drops));
                    std::thread::spawn(move || {
                        let won = value.revoke();
                        assert_eq!(drops.load(SeqCst), 1, "revoke returned before the drop");
                        won
                    })
                })
                .collect();
            let winners = handles.into_iter().map(|h| h.join().unwrap());
            assert_eq!(winners.filter(|&won| won).count(), 1);
        }
    }

    #[test]
    #[should_panic(expected = "would wait for itself")]
    fn revoke_inside_own_access_is_refused() {
        let value = Revocable::new(1u8);
        let _access = value.try_access().unwrap();
        value.revoke();
    }
}
