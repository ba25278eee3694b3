//! Damage copies from a RAM shadow into VRAM through the guard, against two baselines in the same
//! run: the floor for the same work (a row-by-row `copy_from_slice` of the same rectangle between
//! two plain buffers with the same pitches) and one contiguous memcpy of the same byte count.
//!
//! `cargo bench --bench flush`: a full 1920×1080 frame and a 256×256 rectangle, each through
//! `Bochs::flush` (section, bounds checks, row-wise copies) and as both baselines; prints the
//! flush's throughput as a fraction of each. The flush writes VRAM the way real hardware's is
//! written (plain copies into memory only the device scans out, as on Redox and the Linux guest);
//! a second line copies into the emulated device's VRAM, which a thread of the process scans out,
//! so every access there is an atomic word (`displayd::device::words`).

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, Criterion};
use displayd::device::bochs::{Bochs, Hardware, Options, QEMU_BOCHS_DISPLAY};
use displayd::device::host_mapping::HostMapping;
use displayd::device::mmio::Vram;
use displayd::device::{Adapter, Rect};
use displayd_testkit::emulated::{Config, EmulatedDevice};

mod common;
use common::{criterion_mean_ns, PageAligned};

const WIDTH: u32 = 1920;
const HEIGHT: u32 = 1080;
const PITCH: usize = WIDTH as usize * 4;
const CASES: [(&str, Rect); 2] = [
    ("full frame 1920x1080", Rect { x: 0, y: 0, width: WIDTH, height: HEIGHT }),
    ("rect 256x256", Rect { x: 600, y: 300, width: 256, height: 256 }),
];

fn flush(c: &mut Criterion) {
    let dev = EmulatedDevice::new(Config::default()).expect("emulated device");
    let (emulated_vram, mmio) = dev.map_bars();
    let emulated =
        Bochs::probe(QEMU_BOCHS_DISPLAY, Hardware { mmio, vram: emulated_vram }, Options::default())
            .expect("probe");
    emulated.set_mode(WIDTH as u16, HEIGHT as u16).expect("mode set");
    // Device-like VRAM: a mapping nothing else in the process touches, written with plain copies.
    let memory = HostMapping::anonymous(Config::default().vram_bytes, true).expect("VRAM mapping");
    let (base, len) = (memory.base(), memory.len());
    // SAFETY: the mapping lives as long as the `Vram` (it owns it), and nothing else reaches it.
    let vram = unsafe { Vram::mapped(base, len, Box::new(memory)) };
    let (_, mmio) = EmulatedDevice::new(Config::default()).expect("emulated device").map_bars();
    let bochs = Bochs::probe(QEMU_BOCHS_DISPLAY, Hardware { mmio, vram }, Options::default()).expect("probe");
    bochs.set_mode(WIDTH as u16, HEIGHT as u16).expect("mode set");
    // Filled with non-zero bytes so that every page of both buffers is really there; page-aligned
    // like a dumb buffer and like VRAM, so every copy here pairs the same alignments.
    let shadow = PageAligned::new(PITCH * HEIGHT as usize, 0x5a);
    let shadow = shadow.bytes();
    let mut plain_target = PageAligned::new(PITCH * HEIGHT as usize, 0xa5);
    let plain_target = plain_target.bytes_mut();

    let mut group = c.benchmark_group("flush");
    for (name, rect) in CASES {
        let bytes = (rect.width * rect.height * 4) as usize;
        group.bench_function(format!("{name} via guard"), |b| {
            b.iter(|| bochs.flush(black_box(shadow), PITCH, rect).expect("flush"))
        });
        group.bench_function(format!("{name} via guard, emulated"), |b| {
            b.iter(|| emulated.flush(black_box(shadow), PITCH, rect).expect("flush"))
        });
        group.bench_function(format!("{name} row copy"), |b| {
            b.iter(|| row_copy(plain_target, black_box(shadow), rect))
        });
        group.bench_function(format!("{name} memcpy"), |b| {
            b.iter(|| plain_target[..bytes].copy_from_slice(black_box(&shadow[..bytes])))
        });
    }
    group.finish();
}

/// The floor for a rectangle flush: its rows copied one by one between two plain buffers whose
/// pitch is the frame's (what any damage copy into a linear framebuffer has to do).
fn row_copy(dst: &mut [u8], src: &[u8], rect: Rect) {
    let (x, row_bytes) = (rect.x as usize * 4, rect.width as usize * 4);
    for y in rect.y as usize..(rect.y + rect.height) as usize {
        let at = y * PITCH + x;
        dst[at..at + row_bytes].copy_from_slice(&src[at..at + row_bytes]);
    }
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
        println!("\nflush throughput as a fraction of the floor (row copy) and of memcpy (higher is better)");
        for (name, rect) in CASES {
            let bytes = f64::from(rect.width * rect.height * 4);
            let mean = |what: &str| criterion_mean_ns("flush", &format!("{name} {what}"));
            if let Some(words) = mean("via guard, emulated") {
                println!("{name:<22} into the emulated VRAM (atomic words) {words:>10.0} ns");
            }
            if let (Some(guarded), Some(floor), Some(plain)) =
                (mean("via guard"), mean("row copy"), mean("memcpy"))
            {
                println!(
                    "{name:<22} guard {guarded:>10.0} ns ({:5.1} GB/s)  row copy {floor:>10.0} ns ({:5.1} GB/s)  \
                     memcpy {plain:>10.0} ns  ratio to floor {:.3}  to memcpy {:.3}",
                    bytes / guarded,
                    bytes / floor,
                    floor / guarded,
                    plain / guarded
                );
            }
        }
    }
}
