//! The display scheme end to end, against memcpy in the same run.
//!
//! `cargo bench --bench scheme`:
//! * DIRTYFB of a 256×256 rectangle (encode → dispatch → guard → copy into VRAM) against the floor
//!   for the same work (the rectangle's rows copied one by one between two plain 1920-pixel-wide
//!   buffers) and one contiguous memcpy of the rectangle's bytes. Here client and emulated device
//!   are threads of this process, so that copy runs in atomic words (`displayd::device::words`);
//!   the same row copy in atomic words is printed as the floor for that case too;
//! * an Orbital-like 1920×1080 frame with full damage (GET_CONNECTOR poll, shadow → mapping copy,
//!   DIRTYFB) against the two memcpys of the frame that any such frame needs (shadow → buffer,
//!   buffer → VRAM). Prints frames per second and the ratios;
//! * unplug latency with a drawing client: a client thread sends full-frame DIRTYFBs back to back
//!   while the bench thread unplugs the device through the scheme (a surprise removal) and times the
//!   call, each sample on a fresh device. The stand-in kernel holds no lock across a call, so the
//!   unplug waits only for the client's presence section under way. Prints p50 and p99;
//! * a small call's latency (GET_CONNECTOR) alone and beside a client drawing full frames: what
//!   serving requests on several threads could gain on Redox. Prints p50 and p99.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::SeqCst};
use std::time::Duration;
use std::time::Instant;

use criterion::{criterion_group, Criterion};
use displayd::device::words;
use displayd::device::Unplug;
use displayd::scheme::DisplayScheme;
use displayd_testkit::emulated::{Config, EmulatedDevice};
use displayd_testkit::kernel::{ClientMapping, Fd, Kernel};
use displayd_testkit::{drm, plug};

mod common;
use common::{criterion_mean_ns, PageAligned};

const W: u32 = 1920;
const H: u32 = 1080;
const FRAME: usize = (W * H * 4) as usize;
const RECT: usize = 256 * 256 * 4;

struct Client {
    fd: Fd,
    fb: u32,
    mapping: ClientMapping,
}

fn client(kernel: &Kernel) -> Client {
    let fd = kernel.open("v2/3", 1000).expect("open");
    let connector = drm::get_connector(&fd, 21, true).expect("connector");
    let mode =
        (0..connector.modes.len()).find(|&i| connector.size(i) == Some((W, H))).expect("a 1920x1080 mode");
    let dumb = drm::create_dumb(&fd, W, H).expect("dumb buffer");
    let mapping = fd.mmap(drm::map_dumb(&fd, dumb.handle).expect("map"), dumb.size as usize).expect("mmap");
    let fb = drm::add_fb(&fd, W, H, dumb.pitch, 24, dumb.handle).expect("fb");
    drm::set_crtc(&fd, 19, fb, &[21], Some(&connector.modes[mode])).expect("set_crtc");
    kernel.scheme().activate(3);
    Client { fd, fb, mapping }
}

fn scheme(c: &mut Criterion) {
    let kernel = Kernel::new(DisplayScheme::new("display.bochs")).expect("scheme");
    let emulated = EmulatedDevice::new(Config::default()).expect("emulated device");
    let _device = plug(&kernel, &emulated, 1, || {}).expect("plug");
    let client = client(&kernel);
    let shadow = vec![0x5au8; FRAME];
    // Page-aligned, like the dumb buffer and VRAM the DIRTYFB copies between.
    let mut plain = [PageAligned::new(FRAME, 0xa5), PageAligned::new(FRAME, 0x3c)];

    // A real client has drawn into its buffer before it flushes it.
    client.mapping.write(0, &shadow);

    let mut group = c.benchmark_group("scheme");
    group.bench_function("dirtyfb 256x256", |b| {
        b.iter(|| drm::dirty_fb(&client.fd, client.fb, &[[600, 300, 856, 556]]).expect("dirtyfb"))
    });
    group.bench_function("row copy 256x256", |b| {
        b.iter(|| {
            let [dst, src] = &mut plain;
            let (dst, src) = (dst.bytes_mut(), src.bytes());
            for y in 300..556 {
                let at = y * (W as usize * 4) + 600 * 4;
                dst[at..at + 1024].copy_from_slice(black_box(&src[at..at + 1024]));
            }
        })
    });
    let atomic: [Vec<AtomicU32>; 2] =
        std::array::from_fn(|_| (0..FRAME / 4).map(|_| AtomicU32::new(0)).collect());
    group.bench_function("word row copy 256x256", |b| {
        b.iter(|| {
            for y in 300..556 {
                let at = y * (W as usize * 4) + 600 * 4;
                words::copy(black_box(&atomic[1]), at, &atomic[0], at, 1024);
            }
        })
    });
    group.bench_function("memcpy 256x256 bytes", |b| {
        b.iter(|| plain[0].bytes_mut()[..RECT].copy_from_slice(black_box(&shadow[..RECT])))
    });
    group.bench_function("orbital frame 1920x1080", |b| {
        b.iter(|| {
            drm::get_connector(&client.fd, 21, false).expect("poll");
            client.mapping.write(0, black_box(&shadow));
            drm::dirty_fb(&client.fd, client.fb, &[[0, 0, W as u16, H as u16]]).expect("dirtyfb");
        })
    });
    group.bench_function("two memcpys of a frame", |b| {
        b.iter(|| {
            plain[0].bytes_mut().copy_from_slice(black_box(&shadow));
            let [first, second] = &mut plain;
            second.bytes_mut().copy_from_slice(black_box(first.bytes()));
        })
    });
    group.finish();
}

/// Starts a thread in `scope` that sends `client`'s full-frame DIRTYFBs back to back, counting them
/// in `frames`, until `stop`; returns once its first frame is through.
fn draw_full_frames<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    client: &'scope Client,
    stop: &'scope AtomicBool,
    frames: &'scope AtomicU64,
) {
    scope.spawn(move || {
        while !stop.load(SeqCst) {
            drm::dirty_fb(&client.fd, client.fb, &[[0, 0, W as u16, H as u16]]).expect("dirtyfb");
            frames.fetch_add(1, SeqCst);
        }
    });
    while frames.load(SeqCst) == 0 {
        std::thread::yield_now();
    }
}

/// Unplug latencies in nanoseconds, sorted: each sample a fresh device, unplugged while a client
/// thread sends full-frame DIRTYFBs back to back.
fn unplug_latency_with_a_drawing_client(samples: usize) -> Vec<u64> {
    let mut latencies: Vec<u64> = (0..samples)
        .map(|_| {
            let kernel = Kernel::new(DisplayScheme::new("display.bochs")).expect("scheme");
            let emulated = EmulatedDevice::new(Config::default()).expect("emulated device");
            let _device = plug(&kernel, &emulated, 1, || {}).expect("plug");
            let client = client(&kernel);
            let (stop, frames) = (AtomicBool::new(false), AtomicU64::new(0));
            std::thread::scope(|scope| {
                // Unplug only once the client is drawing.
                draw_full_frames(scope, &client, &stop, &frames);
                let start = Instant::now();
                assert!(kernel.scheme().unplug_bound(Unplug::Surprise), "the device was bound");
                let took = start.elapsed().as_nanos() as u64;
                stop.store(true, SeqCst);
                took
            })
        })
        .collect();
    latencies.sort_unstable();
    latencies
}

/// Latencies in nanoseconds, sorted, of a small call (Orbital's per-frame GET_CONNECTOR poll) from
/// one client, alone or while another client thread sends full-frame DIRTYFBs back to back: what
/// serving requests on several threads could gain, given that both reach the same device object.
fn small_call_latency(beside_a_drawing_client: bool, samples: usize) -> Vec<u64> {
    let kernel = Kernel::new(DisplayScheme::new("display.bochs")).expect("scheme");
    let emulated = EmulatedDevice::new(Config::default()).expect("emulated device");
    let _device = plug(&kernel, &emulated, 1, || {}).expect("plug");
    let drawing = client(&kernel);
    let polling = kernel.open("v2/4", 1000).expect("open");
    let (stop, frames) = (AtomicBool::new(false), AtomicU64::new(0));
    let mut latencies = std::thread::scope(|scope| {
        if beside_a_drawing_client {
            draw_full_frames(scope, &drawing, &stop, &frames);
        }
        let latencies: Vec<u64> = (0..samples)
            .map(|_| {
                let start = Instant::now();
                drm::get_connector(&polling, 21, false).expect("poll");
                start.elapsed().as_nanos() as u64
            })
            .collect();
        stop.store(true, SeqCst);
        latencies
    });
    latencies.sort_unstable();
    latencies
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    targets = scheme
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // Also in `--test` runs (three samples), so CI sees it work.
    let samples = if common::measuring() { 200 } else { 3 };
    let percentiles = |what: &str, sorted: Vec<u64>| {
        let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize] as f64 / 1e3;
        println!("{what:<58} p50 {:>8.1} µs  p99 {:>8.1} µs  max {:>8.1} µs", at(0.5), at(0.99), at(1.0));
    };
    println!("\nover {samples} samples each:");
    percentiles("unplug, a client drawing full frames", unplug_latency_with_a_drawing_client(samples));
    percentiles("GET_CONNECTOR poll, alone", small_call_latency(false, samples * 10));
    percentiles(
        "GET_CONNECTOR poll, another client drawing full frames",
        small_call_latency(true, samples * 10),
    );
    if common::measuring() {
        let mean = |name: &str| criterion_mean_ns("scheme", name);
        if let (Some(dirty), Some(floor), Some(copy)) =
            (mean("dirtyfb 256x256"), mean("row copy 256x256"), mean("memcpy 256x256 bytes"))
        {
            println!(
                "\nDIRTYFB 256x256 end to end {dirty:.0} ns, row copy of the rect {floor:.0} ns (ratio {:.3}), \
                 memcpy of its bytes {copy:.0} ns (ratio {:.3})",
                floor / dirty,
                copy / dirty
            );
        }
        if let (Some(dirty), Some(floor)) = (mean("dirtyfb 256x256"), mean("word row copy 256x256")) {
            println!(
                "DIRTYFB 256x256 against the same row copy in atomic words {floor:.0} ns: ratio {:.3}",
                floor / dirty
            );
        }
        if let (Some(frame), Some(floor)) = (mean("orbital frame 1920x1080"), mean("two memcpys of a frame"))
        {
            println!(
                "Orbital-like 1920x1080 full-damage frames: {:.0} fps, memcpy-limited {:.0} fps: ratio {:.3}",
                1e9 / frame,
                1e9 / floor,
                floor / frame
            );
        }
    }
}
