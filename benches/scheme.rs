//! The display scheme end to end, against memcpy in the same run.
//!
//! `cargo bench --bench scheme`:
//! * DIRTYFB of a 256×256 rectangle (encode → dispatch → guard → copy into VRAM) against the floor
//!   for the same work (the rectangle's rows copied one by one between two plain 1920-pixel-wide
//!   buffers) and one contiguous memcpy of the rectangle's bytes;
//! * an Orbital-like 1920×1080 frame with full damage (GET_CONNECTOR poll, shadow → mapping copy,
//!   DIRTYFB) against the two memcpys of the frame that any such frame needs (shadow → buffer,
//!   buffer → VRAM). Prints frames per second and the ratios.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, Criterion};
use displayd::scheme::DisplayScheme;
use displayd_testkit::emulated::{Config, EmulatedDevice};
use displayd_testkit::kernel::{Fd, Kernel, Mapping};
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
    mapping: Mapping,
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
    let slot = EmulatedDevice::new(Config::default()).expect("emulated device");
    let _device = plug(&kernel, &slot, 1, || {}).expect("plug");
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

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    targets = scheme
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
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
