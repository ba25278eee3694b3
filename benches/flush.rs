//! Damage copies from a RAM shadow into the emulated VRAM through the guard, against a plain memcpy
//! of the same bytes in the same run.
//!
//! `cargo bench --bench flush`: a full 1920×1080 frame and a 256×256 rectangle, each through
//! `Bochs::flush` (section, bounds checks, row-wise copies) and as one `copy_from_slice` of the
//! same byte count; prints the flush's throughput as a fraction of memcpy's.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, Criterion};
use displayd::device::bochs::{Bochs, Hardware, Options, Rect, QEMU_BOCHS_DISPLAY};
use displayd::device::emulated::{Config, EmulatedDevice};

mod common;
use common::criterion_mean_ns;

const WIDTH: u32 = 1920;
const HEIGHT: u32 = 1080;
const PITCH: usize = WIDTH as usize * 4;
const CASES: [(&str, Rect); 2] = [
    ("full frame 1920x1080", Rect { x: 0, y: 0, width: WIDTH, height: HEIGHT }),
    ("rect 256x256", Rect { x: 600, y: 300, width: 256, height: 256 }),
];

fn flush(c: &mut Criterion) {
    let dev = EmulatedDevice::new(Config::default()).expect("emulated device");
    let (vram, mmio) = dev.map_bars();
    let bochs = Bochs::probe(QEMU_BOCHS_DISPLAY, Hardware { mmio, vram }, Options::default()).expect("probe");
    bochs.set_mode(WIDTH as u16, HEIGHT as u16).expect("mode set");
    // Filled with non-zero bytes so that every page of both buffers is really there.
    let shadow = vec![0x5au8; PITCH * HEIGHT as usize];
    let mut plain_target = vec![0xa5u8; PITCH * HEIGHT as usize];

    let mut group = c.benchmark_group("flush");
    for (name, rect) in CASES {
        let bytes = (rect.width * rect.height * 4) as usize;
        group.bench_function(format!("{name} via guard"), |b| {
            b.iter(|| bochs.flush(black_box(&shadow), PITCH, rect).expect("flush"))
        });
        group.bench_function(format!("{name} memcpy"), |b| {
            b.iter(|| plain_target[..bytes].copy_from_slice(black_box(&shadow[..bytes])))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(40)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = flush
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    if common::measuring() {
        println!("\nflush throughput as a fraction of memcpy of the same bytes (higher is better)");
        for (name, rect) in CASES {
            let bytes = f64::from(rect.width * rect.height * 4);
            let guarded = criterion_mean_ns("flush", &format!("{name} via guard"));
            let plain = criterion_mean_ns("flush", &format!("{name} memcpy"));
            if let (Some(guarded), Some(plain)) = (guarded, plain) {
                println!(
                    "{name:<22} guard {guarded:>10.0} ns ({:5.1} GB/s)  memcpy {plain:>10.0} ns ({:5.1} GB/s)  ratio {:.3}",
                    bytes / guarded,
                    bytes / plain,
                    plain / guarded
                );
            }
        }
    }
}
