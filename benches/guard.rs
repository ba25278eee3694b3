//! What a presence section costs, against the designs it replaces, measured in one run.
//!
//! `cargo bench --bench guard` times an enter+exit pair on one thread and on two threads at once for
//! displayd's guard and for the baselines — a plain load (the floor), std `RwLock::read`,
//! parking_lot `RwLock::read`, arc-swap `load`, and the bare store + `SeqCst` fence that any
//! fence-based section must pay — then unplug latency with no reader and with one busy
//! reader, and prints each design's ratio to the floor of the same thread count.

use std::hint::black_box;
use std::sync::atomic::{
    fence, AtomicBool, AtomicUsize,
    Ordering::{Relaxed, Release, SeqCst},
};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use criterion::{criterion_group, Criterion};
use displayd::guard::{Presence, Revocable};

mod common;
use common::criterion_mean_ns;

/// One enter+exit pair of each design, on a value shared by every thread that runs it.
#[derive(Clone)]
enum Design {
    Floor(Arc<AtomicBool>),
    FenceMinimum(Arc<AtomicBool>),
    Presence(Arc<Presence>),
    Revocable(Arc<Revocable<u64>>),
    StdRwLock(Arc<std::sync::RwLock<u64>>),
    ParkingLotRwLock(Arc<parking_lot::RwLock<u64>>),
    ArcSwap(Arc<ArcSwap<u64>>),
}

const DESIGNS: [&str; 7] = [
    "plain load (floor)",
    "store + SeqCst fence",
    "displayd Presence",
    "displayd Revocable",
    "std RwLock",
    "parking_lot RwLock",
    "arc-swap",
];

impl Design {
    fn all() -> Vec<Design> {
        vec![
            Design::Floor(Arc::new(AtomicBool::new(false))),
            Design::FenceMinimum(Arc::new(AtomicBool::new(false))),
            Design::Presence(Arc::new(Presence::new())),
            Design::Revocable(Arc::new(Revocable::new(7))),
            Design::StdRwLock(Arc::new(std::sync::RwLock::new(7))),
            Design::ParkingLotRwLock(Arc::new(parking_lot::RwLock::new(7))),
            Design::ArcSwap(Arc::new(ArcSwap::from_pointee(7))),
        ]
    }

    fn run(&self, pairs: u64) {
        match self {
            Design::Floor(flag) => (0..pairs).for_each(|_| {
                black_box(flag.load(Relaxed));
            }),
            // The least any fence-based section can do, with a slot private to the calling thread:
            // what a presence costs beyond this is overhead.
            Design::FenceMinimum(flag) => {
                let depth = AtomicUsize::new(0);
                (0..pairs).for_each(|_| {
                    depth.store(1, Relaxed);
                    fence(SeqCst);
                    black_box(flag.load(Relaxed));
                    depth.store(0, Release);
                })
            }
            Design::Presence(presence) => (0..pairs).for_each(|_| {
                black_box(presence.enter().is_some());
            }),
            Design::Revocable(value) => (0..pairs).for_each(|_| {
                black_box(value.try_access().map(|v| *v));
            }),
            Design::StdRwLock(lock) => (0..pairs).for_each(|_| {
                black_box(*lock.read().unwrap());
            }),
            Design::ParkingLotRwLock(lock) => (0..pairs).for_each(|_| {
                black_box(*lock.read());
            }),
            Design::ArcSwap(swap) => (0..pairs).for_each(|_| {
                black_box(**swap.load());
            }),
        }
    }

    /// Runs `pairs` pairs on each of `threads` threads at once; returns the wall time they took.
    fn run_concurrently(&self, threads: usize, pairs: u64) -> Duration {
        let start = Arc::new(Barrier::new(threads + 1));
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let (design, start) = (self.clone(), Arc::clone(&start));
                thread::spawn(move || {
                    design.run(1000); // claim this thread's slot before the clock starts
                    start.wait();
                    design.run(pairs);
                })
            })
            .collect();
        start.wait();
        let began = Instant::now();
        workers.into_iter().for_each(|w| w.join().unwrap());
        began.elapsed()
    }
}

fn enter_exit(c: &mut Criterion) {
    for threads in [1, 2] {
        let mut group = c.benchmark_group(format!("enter_exit_{threads}t"));
        for (name, design) in DESIGNS.iter().zip(Design::all()) {
            group.bench_function(*name, |b| {
                b.iter_custom(|pairs| design.run_concurrently(threads, pairs));
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = enter_exit
}

/// Unplug latency samples in nanoseconds, each on a fresh presence.
fn unplug_latency(busy_reader: bool, samples: usize) -> Vec<u64> {
    let mut latencies: Vec<u64> = (0..samples)
        .map(|_| {
            let presence = Arc::new(Presence::new());
            let reader = busy_reader.then(|| {
                let (presence, running) = (Arc::clone(&presence), Arc::new(AtomicBool::new(false)));
                let started = Arc::clone(&running);
                let handle = thread::spawn(move || {
                    // Short sections back to back, as a drawing client's flushes would be.
                    while let Some(section) = presence.enter() {
                        started.store(true, Relaxed);
                        black_box(&section);
                    }
                });
                while !running.load(Relaxed) {
                    std::hint::spin_loop();
                }
                handle
            });
            let began = Instant::now();
            presence.unplug();
            let took = began.elapsed().as_nanos() as u64;
            if let Some(handle) = reader {
                handle.join().unwrap();
            }
            took
        })
        .collect();
    latencies.sort_unstable();
    latencies
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn summary(samples: usize) {
    println!("\nenter+exit pair, mean ns (ratio to the floor of the same thread count)");
    println!("{:<22} {:>18} {:>18}", "design", "1 thread", "2 threads");
    let floors = ["enter_exit_1t", "enter_exit_2t"].map(|g| criterion_mean_ns(g, DESIGNS[0]));
    for name in DESIGNS {
        let cells = ["enter_exit_1t", "enter_exit_2t"].iter().zip(floors).map(|(group, floor)| {
            match (criterion_mean_ns(group, name), floor) {
                (Some(ns), Some(floor)) => format!("{ns:7.2} ({:5.2}x)", ns / floor),
                _ => "n/a".to_string(),
            }
        });
        let cells: Vec<_> = cells.collect();
        println!("{name:<22} {:>18} {:>18}", cells[0], cells[1]);
    }
    println!("\nunplug latency over {samples} unplugs, ns");
    for (label, busy) in [("no reader", false), ("1 busy reader", true)] {
        let sorted = unplug_latency(busy, samples);
        println!("{label:<22} p50 {:>8}   p99 {:>8}", percentile(&sorted, 0.5), percentile(&sorted, 0.99));
    }
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // `cargo bench -- --test` (CI) only checks that the bench runs; the table needs real samples.
    if common::measuring() {
        let samples =
            std::env::var("DISPLAYD_UNPLUG_SAMPLES").ok().and_then(|s| s.parse().ok()).unwrap_or(2000);
        summary(samples);
    }
}
