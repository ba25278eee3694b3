//! Many threads, nested sections, several devices at once, and unplugs at random moments.
//!
//! `DISPLAYD_STRESS_ROUNDS` sets how many devices are created and unplugged (default 2000);
//! `DISPLAYD_STRESS_SEED` replays one run. Each round checks that no reader ever observed the
//! hardware after its drop, that it was dropped exactly once, that exactly one of the concurrent
//! revokes reported doing it, and that every access after the revoke was refused.
#![cfg(not(loom))]

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use displayd::guard::Revocable;

const ALIVE: u8 = 1;
const DROPPED: u8 = 2;

/// Stands for the hardware. Its liveness is recorded outside it, so that a reader that wrongly
/// outlives it reads a defined value instead of freed memory.
struct Hardware {
    state: Arc<AtomicU8>,
}

impl Drop for Hardware {
    fn drop(&mut self) {
        assert_eq!(self.state.swap(DROPPED, SeqCst), ALIVE, "the hardware was dropped twice");
    }
}

struct Device {
    hardware: Revocable<Hardware>,
    state: Arc<AtomicU8>,
    revoked: AtomicBool,
    late_accesses: AtomicUsize,
}

impl Device {
    fn new() -> Arc<Self> {
        let state = Arc::new(AtomicU8::new(ALIVE));
        Arc::new(Device {
            hardware: Revocable::new(Hardware { state: Arc::clone(&state) }),
            state,
            revoked: AtomicBool::new(false),
            late_accesses: AtomicUsize::new(0),
        })
    }

    /// One client request: a section, sometimes with nested ones, checking the hardware is there.
    fn request(&self, rng: &mut Rng) {
        let revoked_before = self.revoked.load(SeqCst);
        let Some(hw) = self.hardware.try_access() else {
            return;
        };
        if revoked_before {
            self.late_accesses.fetch_add(1, SeqCst);
        }
        assert_eq!(hw.state.load(SeqCst), ALIVE, "a reader observed the hardware after its drop");
        for _ in 0..rng.below(3) {
            if let Some(inner) = self.hardware.try_access() {
                assert_eq!(inner.state.load(SeqCst), ALIVE);
            }
        }
        if rng.below(64) == 0 {
            thread::yield_now(); // a section that gets descheduled midway
        }
        assert_eq!(hw.state.load(SeqCst), ALIVE, "the hardware was dropped under a live section");
    }
}

/// xorshift64*: small, seedable, good enough to spread timings.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
fn readers_and_revokes_race_on_many_devices() {
    let rounds: u64 = env_or("DISPLAYD_STRESS_ROUNDS", 2000);
    let seed: u64 = env_or("DISPLAYD_STRESS_SEED", 0x5eed_d15b);
    let readers = 4;
    let revokers = 2;
    let started = Instant::now();
    for round in 0..rounds {
        let round_seed = seed ^ round.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        // Two devices live at once, so threads hold slots in several presences.
        let devices = [Device::new(), Device::new()];
        let go = Arc::new(Barrier::new(readers + revokers));
        let reader_threads: Vec<_> = (0..readers)
            .map(|i| {
                let (devices, go) = (devices.clone(), Arc::clone(&go));
                thread::spawn(move || {
                    let mut rng = Rng(round_seed.wrapping_add(i as u64 + 1) | 1);
                    go.wait();
                    // Keep issuing requests until both devices refuse them.
                    while devices.iter().any(|d| !d.hardware.is_revoked()) {
                        let device = &devices[rng.below(2) as usize];
                        device.request(&mut rng);
                    }
                })
            })
            .collect();
        let revoker_threads: Vec<_> = (0..revokers)
            .map(|i| {
                let (devices, go) = (devices.clone(), Arc::clone(&go));
                thread::spawn(move || {
                    let mut rng = Rng(round_seed.wrapping_mul(i as u64 + 7) | 1);
                    go.wait();
                    let mut wins = 0;
                    for device in &devices {
                        thread::sleep(Duration::from_micros(rng.below(200)));
                        if device.hardware.revoke() {
                            wins += 1;
                        }
                        device.revoked.store(true, SeqCst);
                        assert_eq!(device.state.load(SeqCst), DROPPED, "revoke returned before the drop");
                    }
                    wins
                })
            })
            .collect();
        for reader in reader_threads {
            reader
                .join()
                .unwrap_or_else(|_| panic!("round {round} failed: replay with DISPLAYD_STRESS_SEED={seed}"));
        }
        let wins: usize = revoker_threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(wins, devices.len(), "each device reports exactly one revoke that did the work");
        for device in &devices {
            assert_eq!(device.state.load(SeqCst), DROPPED);
            assert_eq!(device.late_accesses.load(SeqCst), 0, "an access began after revoke returned");
            assert!(device.hardware.try_access().is_none());
        }
    }
    eprintln!("stress: {rounds} rounds in {:?} (seed {seed:#x})", started.elapsed());
}
