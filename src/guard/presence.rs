//! Presence sections: the enter/exit/unplug protocol (Linux's `drm_dev_enter`/`exit`/`unplug`).
//!
//! Guarantees:
//! * [`Presence::enter`] yields a [`Section`] only while the device is present; once an unplug has
//!   begun it yields `None`.
//! * [`Presence::unplug`] returns only when every section that could have missed the unplug has
//!   ended, and all the work done inside those sections happens-before its return.
//! * Sections nest to any depth on one thread and may be held by any number of threads at once.
//!
//! How: each thread claims a slot of its own in the presence's slot table and records its nesting
//! depth there with plain stores. Entering stores `depth + 1`, issues a `SeqCst` fence, then reads
//! the unplugged flag; unplugging sets the flag, issues a `SeqCst` fence, then reads every slot. The
//! two fences are totally ordered, so either the reader sees the flag (and backs out) or the unplug
//! sees the reader's depth (and waits for it). Threads beyond the table's size share one overflow
//! slot updated with atomic read-modify-writes: slower, equally correct.

use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst};

use super::sync::{fence, wait_until, Arc, AtomicBool, AtomicU8, AtomicUsize};

/// How many threads get a slot of their own in one presence. Under loom one, so that a two-reader
/// model exercises both the owned slot and the shared overflow slot.
#[cfg(not(loom))]
const OWNED_SLOTS: usize = 64;
#[cfg(loom)]
const OWNED_SLOTS: usize = 1;

/// The slot index that names [`Table::overflow`].
const OVERFLOW: usize = usize::MAX;

const LIVE: u8 = 0;
const UNPLUGGING: u8 = 1;
const GONE: u8 = 2;

/// Whether a device is still present, and the sections that rely on it.
///
/// # Examples
///
/// ```
/// use displayd::guard::Presence;
///
/// let presence = Presence::new();
/// {
///     let outer = presence.enter().expect("present");
///     let _inner = presence.enter().expect("sections nest");
///     drop(outer);
/// }
/// assert!(presence.unplug(), "the first unplug does the work");
/// assert!(!presence.unplug(), "later ones only wait for it");
/// assert!(presence.enter().is_none());
/// ```
///
/// # Invariants
///
/// * `table.state` only moves forward: `LIVE` → `UNPLUGGING` → `GONE`, and exactly one caller makes
///   the `LIVE` → `UNPLUGGING` step.
/// * A slot's depth counts the live [`Section`]s of the thread that owns it (the overflow slot: of
///   every thread that uses it); `GONE` is stored only after every slot was seen at zero after the
///   flag was set.
pub struct Presence {
    table: Arc<Table>,
}

/// A live section: proof, for its lifetime, that the device has not been unplugged yet.
///
/// Dropping it ends the section. It is bound to the thread that entered it (`!Send`), because its
/// depth lives in that thread's slot.
#[must_use = "a section ends as soon as it is dropped"]
pub struct Section<'a> {
    slot: &'a Slot,
    _bound_to_thread: PhantomData<*const ()>,
}

struct Table {
    state: AtomicU8,
    slots: [Slot; OWNED_SLOTS],
    overflow: Slot,
    /// One past the highest owned slot ever claimed: unplug scans no further.
    claimed_bound: AtomicUsize,
    /// Set when the presence is dropped, so threads can forget their slot in it.
    retired: AtomicBool,
}

/// One thread's nesting depth, alone on its cache line so that threads never share a written line.
#[repr(align(128))]
struct Slot {
    depth: AtomicUsize,
    claimed: AtomicBool,
    shared: bool,
}

impl Slot {
    fn new(shared: bool) -> Self {
        Slot { depth: AtomicUsize::new(0), claimed: AtomicBool::new(false), shared }
    }

    /// Adds one level and returns the depth it had before.
    #[inline]
    fn raise(&self) -> usize {
        if self.shared {
            self.depth.fetch_add(1, Relaxed)
        } else {
            // Only the owning thread writes an owned slot, so a load and a store suffice.
            let depth = self.depth.load(Relaxed);
            self.depth.store(depth + 1, Relaxed);
            depth
        }
    }

    /// Removes one level. `Release`: what the section did happens-before an unplug that sees zero.
    #[inline]
    fn lower(&self) {
        if self.shared {
            self.depth.fetch_sub(1, Release);
        } else {
            let depth = self.depth.load(Relaxed);
            self.depth.store(depth - 1, Release);
        }
    }
}

impl Table {
    #[inline]
    fn slot(&self, index: usize) -> &Slot {
        if index == OVERFLOW {
            &self.overflow
        } else {
            &self.slots[index]
        }
    }

    /// Claims the lowest free owned slot for the calling thread, if any is free.
    fn claim(&self) -> Option<usize> {
        let index = self
            .slots
            .iter()
            .position(|slot| slot.claimed.compare_exchange(false, true, Acquire, Relaxed).is_ok())?;
        self.claimed_bound.fetch_max(index + 1, AcqRel);
        Some(index)
    }
}

impl Presence {
    /// A presence for a device that is there now.
    pub fn new() -> Self {
        Presence {
            table: Arc::new(Table {
                state: AtomicU8::new(LIVE),
                slots: std::array::from_fn(|_| Slot::new(false)),
                overflow: Slot::new(true),
                claimed_bound: AtomicUsize::new(0),
                retired: AtomicBool::new(false),
            }),
        }
    }

    /// Opens a section, or returns `None` once an unplug has begun.
    #[inline]
    pub fn enter(&self) -> Option<Section<'_>> {
        let slot = self.table.slot(self.thread_slot());
        let depth_before = slot.raise();
        // A nested section on an owned slot is already covered by this thread's outer one. On the
        // shared slot a non-zero depth may be another thread's, so every entry pays the fence.
        if depth_before == 0 || slot.shared {
            // Pairs with the fence in `unplug_then`: see the module documentation.
            fence(SeqCst);
        }
        if self.table.state.load(Relaxed) != LIVE {
            slot.lower();
            return None;
        }
        Some(Section { slot, _bound_to_thread: PhantomData })
    }

    /// Marks the device gone and waits until no section can still be using it.
    ///
    /// Returns `true` to the one caller that did the work; every other caller (concurrent or later)
    /// returns `false`, and also only once the work is complete.
    ///
    /// # Panics
    ///
    /// If the calling thread holds a section of this presence: it would wait for itself forever.
    pub fn unplug(&self) -> bool {
        self.unplug_then(|| {})
    }

    /// [`Presence::unplug`], running `teardown` once the sections have drained and before any other
    /// unplug caller returns. Only the caller that does the work runs it.
    pub(super) fn unplug_then(&self, teardown: impl FnOnce()) -> bool {
        assert!(
            self.current_thread_depth() == 0,
            "unplug called inside a section of the same device: it would wait for itself"
        );
        let table = &*self.table;
        if table.state.compare_exchange(LIVE, UNPLUGGING, AcqRel, Acquire).is_err() {
            wait_until(|| table.state.load(Acquire) == GONE);
            return false;
        }
        // Pairs with the fence in `enter`: see the module documentation.
        fence(SeqCst);
        let bound = table.claimed_bound.load(Acquire);
        for slot in table.slots[..bound].iter().chain([&table.overflow]) {
            wait_until(|| slot.depth.load(Acquire) == 0);
        }
        // Even if teardown panics, the other unplug callers must not wait forever.
        let _publish = PublishGone(&table.state);
        teardown();
        true
    }

    /// Whether an unplug has begun. A point check that races with unplug: only a [`Section`]
    /// proves presence.
    pub fn is_unplugged(&self) -> bool {
        self.table.state.load(Acquire) != LIVE
    }

    /// Whether an unplug has begun *and* completed.
    pub(super) fn is_gone(&self) -> bool {
        self.table.state.load(Acquire) == GONE
    }

    /// The calling thread's slot index in this presence, claimed on first use.
    #[inline]
    fn thread_slot(&self) -> usize {
        let key = self.key();
        let cached = LAST_SLOT.try_with(|last| {
            let (last_key, index) = last.get();
            (last_key == key).then_some(index)
        });
        match cached {
            Ok(Some(index)) => index,
            _ => self.thread_slot_slow(key),
        }
    }

    #[cold]
    fn thread_slot_slow(&self, key: usize) -> usize {
        match THREAD_SLOTS.try_with(|slots| slots.borrow_mut().find_or_claim(&self.table, key)) {
            Ok(index) => {
                // `LAST_SLOT` only ever names a table that `THREAD_SLOTS` holds, whose address
                // therefore cannot be reused by another table.
                let _ = LAST_SLOT.try_with(|last| last.set((key, index)));
                index
            }
            // This thread is exiting and its slot list is gone: use the shared slot, uncached.
            Err(_) => OVERFLOW,
        }
    }

    /// The calling thread's depth in its owned slot, without claiming one.
    fn current_thread_depth(&self) -> usize {
        let key = self.key();
        THREAD_SLOTS
            .try_with(|slots| slots.borrow().find(key))
            .ok()
            .flatten()
            .filter(|&index| index != OVERFLOW)
            .map_or(0, |index| self.table.slots[index].depth.load(Relaxed))
    }

    #[inline]
    fn key(&self) -> usize {
        Arc::as_ptr(&self.table) as usize
    }
}

impl Default for Presence {
    fn default() -> Self {
        Presence::new()
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        self.table.retired.store(true, Release);
    }
}

impl std::fmt::Debug for Presence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.table.state.load(Acquire) {
            LIVE => "present",
            UNPLUGGING => "unplugging",
            _ => "gone",
        };
        f.debug_struct("Presence").field("state", &state).finish()
    }
}

impl Drop for Section<'_> {
    #[inline]
    fn drop(&mut self) {
        self.slot.lower();
    }
}

struct PublishGone<'a>(&'a AtomicU8);

impl Drop for PublishGone<'_> {
    fn drop(&mut self) {
        self.0.store(GONE, Release);
    }
}

/// The slots one thread holds, one per presence it has entered.
#[derive(Default)]
struct ThreadSlots {
    held: Vec<(Arc<Table>, usize)>,
}

impl ThreadSlots {
    fn find(&self, key: usize) -> Option<usize> {
        self.held.iter().find(|(table, _)| Arc::as_ptr(table) as usize == key).map(|&(_, index)| index)
    }

    fn find_or_claim(&mut self, table: &Arc<Table>, key: usize) -> usize {
        if let Some(index) = self.find(key) {
            return index;
        }
        // Forget presences that are gone, so a long-lived thread does not accumulate them.
        self.held.retain(|(table, _)| !table.retired.load(Acquire));
        let index = table.claim().unwrap_or(OVERFLOW);
        self.held.push((Arc::clone(table), index));
        index
    }
}

impl Drop for ThreadSlots {
    fn drop(&mut self) {
        // A section entered later on this thread (from another thread-local's destructor) must not
        // find a slot through the cache whose claim is released here: it falls back to the shared one.
        let _ = LAST_SLOT.try_with(|last| last.set((0, 0)));
        for (table, index) in &self.held {
            let slot = table.slot(*index);
            // A slot left with a depth (a leaked section) stays claimed: reusing it would corrupt
            // the next owner's count.
            if !slot.shared && slot.depth.load(Relaxed) == 0 {
                slot.claimed.store(false, Release);
            }
        }
    }
}

#[cfg(not(loom))]
std::thread_local! {
    static LAST_SLOT: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
    static THREAD_SLOTS: RefCell<ThreadSlots> = RefCell::new(ThreadSlots::default());
}

#[cfg(loom)]
loom::thread_local! {
    static LAST_SLOT: Cell<(usize, usize)> = Cell::new((0, 0));
    static THREAD_SLOTS: RefCell<ThreadSlots> = RefCell::new(ThreadSlots::default());
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::thread;
    use std::time::Duration;

    #[test]
    fn sections_nest_and_end_in_any_order() {
        let presence = Presence::new();
        let a = presence.enter().unwrap();
        let b = presence.enter().unwrap();
        let c = presence.enter().unwrap();
        drop(b);
        drop(a);
        assert_eq!(presence.current_thread_depth(), 1);
        drop(c);
        assert_eq!(presence.current_thread_depth(), 0);
        assert!(presence.unplug());
    }

    #[test]
    fn enter_fails_once_unplugged_and_unplug_reports_once() {
        let presence = Presence::new();
        assert!(!presence.is_unplugged());
        assert!(presence.unplug());
        assert!(presence.is_unplugged());
        assert!(presence.enter().is_none());
        assert!(!presence.unplug());
        assert_eq!(presence.current_thread_depth(), 0, "a refused enter leaves no depth behind");
    }

    /// Opens a section on another thread and keeps it until the returned sender fires.
    fn hold_section_elsewhere(presence: &Arc<Presence>) -> (thread::JoinHandle<()>, mpsc::Sender<()>) {
        let (entered_tx, entered_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let presence = Arc::clone(presence);
        let reader = thread::spawn(move || {
            let _section = presence.enter().unwrap();
            entered_tx.send(()).unwrap();
            release_rx.recv().unwrap();
        });
        entered_rx.recv().unwrap();
        (reader, release_tx)
    }

    fn spawn_unplug(presence: &Arc<Presence>) -> thread::JoinHandle<bool> {
        let presence = Arc::clone(presence);
        thread::spawn(move || presence.unplug())
    }

    #[test]
    fn unplug_waits_for_a_section_on_another_thread() {
        let presence = Arc::new(Presence::new());
        let (reader, release) = hold_section_elsewhere(&presence);
        let unplugger = spawn_unplug(&presence);
        // The flag is set before the wait: once it shows, the unplugger is waiting on the section.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !presence.is_unplugged() {
            assert!(std::time::Instant::now() < deadline, "the unplug never began");
            thread::yield_now();
        }
        assert!(!unplugger.is_finished(), "unplug returned while a section was live");
        assert!(!presence.is_gone(), "nothing is torn down while the section lives");
        release.send(()).unwrap();
        assert!(unplugger.join().unwrap());
        reader.join().unwrap();
    }

    #[test]
    fn a_second_unplug_waits_for_the_first_to_finish() {
        let presence = Arc::new(Presence::new());
        let (reader, release) = hold_section_elsewhere(&presence);
        // Each unplugger reports, as it returns, whether the unplug had completed by then.
        let unpluggers: Vec<_> = (0..2)
            .map(|_| {
                let presence = Arc::clone(&presence);
                thread::spawn(move || (presence.unplug(), presence.is_gone()))
            })
            .collect();
        release.send(()).unwrap();
        let results: Vec<(bool, bool)> = unpluggers.into_iter().map(|u| u.join().unwrap()).collect();
        assert_eq!(results.iter().filter(|(won, _)| *won).count(), 1, "one unplug did it");
        assert!(results.iter().all(|&(_, gone)| gone), "neither returned before the unplug was complete");
        reader.join().unwrap();
    }

    #[test]
    #[should_panic(expected = "would wait for itself")]
    fn unplug_inside_own_section_is_refused() {
        let presence = Presence::new();
        let _section = presence.enter().unwrap();
        presence.unplug();
    }

    #[test]
    fn threads_beyond_the_table_share_the_overflow_slot() {
        let presence = Arc::new(Presence::new());
        let threads = OWNED_SLOTS + 8;
        let barrier = Arc::new(std::sync::Barrier::new(threads + 1));
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let release_rx = Arc::new(std::sync::Mutex::new(release_rx));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (presence, barrier, release_rx) =
                    (Arc::clone(&presence), Arc::clone(&barrier), Arc::clone(&release_rx));
                thread::spawn(move || {
                    let _section = presence.enter().unwrap();
                    barrier.wait();
                    release_rx.lock().unwrap().recv().unwrap();
                })
            })
            .collect();
        barrier.wait();
        assert_eq!(presence.table.overflow.depth.load(Relaxed), 8);
        assert_eq!(presence.table.claimed_bound.load(Relaxed), OWNED_SLOTS);
        let unplugger = {
            let presence = Arc::clone(&presence);
            thread::spawn(move || presence.unplug())
        };
        for _ in 0..threads {
            assert!(!unplugger.is_finished());
            release_tx.send(()).unwrap();
        }
        assert!(unplugger.join().unwrap());
        for handle in handles {
            handle.join().unwrap();
        }
    }

    #[test]
    fn an_exited_thread_gives_its_slot_back() {
        let presence = Arc::new(Presence::new());
        for _ in 0..(OWNED_SLOTS * 3) {
            let presence = Arc::clone(&presence);
            thread::spawn(move || drop(presence.enter().unwrap())).join().unwrap();
        }
        assert_eq!(presence.table.claimed_bound.load(Relaxed), 1, "one slot, reused by every thread");
    }

    #[test]
    fn a_thread_forgets_presences_that_were_dropped() {
        for _ in 0..100 {
            let presence = Presence::new();
            drop(presence.enter().unwrap());
        }
        let held = THREAD_SLOTS.with(|slots| slots.borrow().held.len());
        assert!(held <= 2, "the thread still holds {held} slot tables");
    }
}
