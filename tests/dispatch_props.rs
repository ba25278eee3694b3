//! Random client input never panics the driver: random ioctl numbers, payload sizes and bytes (with
//! real object ids and handles mixed in), event reads, mmaps and VT switches, across an unplug.
//! Every call is answered with a value or an errno, and closing everything frees the device object.
//! `PROPTEST_CASES` sets the number of cases (default 256).
#![cfg(not(loom))]

use std::sync::Arc;

use displayd::device::Unplug;
use displayd::kms::ioctl;
use displayd::scheme::DisplayScheme;
use displayd_testkit::emulated::{Config, EmulatedDevice};
use displayd_testkit::kernel::Kernel;
use displayd_testkit::{drm, plug};
use proptest::prelude::*;

/// Every ioctl in the table, and one number outside it.
fn known() -> Vec<u64> {
    ioctl::TABLE.iter().map(|row| row.nr).chain([0x42]).collect()
}

#[derive(Debug, Clone)]
enum Op {
    Call { client: usize, nr: u64, payload: Vec<u8>, plant: Vec<(usize, u32)>, exact_size: bool },
    Mmap { client: usize, handle: u64, len: usize },
    DropMappings,
    Read { client: usize, len: usize },
    Activate(usize),
    Unplug,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..2usize, prop::sample::select(known()), prop::collection::vec(any::<u8>(), 0..160),
              prop::collection::vec((0..40usize, prop_oneof![Just(0u32), 1..6u32, 17..30u32, Just(0x3432_5258), any::<u32>()]), 0..6),
              any::<bool>())
            .prop_map(|(client, nr, payload, plant, exact_size)| Op::Call { client, nr, payload, plant, exact_size }),
        2 => (0..2usize, 0..6u64, prop_oneof![Just(4096usize), 1..20000usize]).prop_map(|(client, handle, len)| Op::Mmap { client, handle, len }),
        1 => Just(Op::DropMappings),
        1 => (0..2usize, 0..80usize).prop_map(|(client, len)| Op::Read { client, len }),
        1 => (1..5usize).prop_map(Op::Activate),
        1 => Just(Op::Unplug),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)))]

    #[test]
    fn random_client_input_never_panics_and_the_last_close_frees_everything(ops in prop::collection::vec(op(), 1..60)) {
        let kernel = Kernel::new(DisplayScheme::new("display.bochs")).unwrap();
        let emulated = EmulatedDevice::new(Config { vram_bytes: 4 << 20, ..Config::default() }).unwrap();
        let device = plug(&kernel, &emulated, 1, || {}).unwrap();
        let weak = Arc::downgrade(&device);
        drop(device);
        let clients = [kernel.open("v2/2", 1000).unwrap(), kernel.open("v2/3", 1001).unwrap()];
        // Give each client something real to point at.
        for fd in &clients {
            if let Ok(dumb) = drm::create_dumb(fd, 64, 64) {
                let _ = drm::add_fb(fd, 64, 64, dumb.pitch, 24, dumb.handle);
            }
        }
        let mut mappings = Vec::new();
        for op in ops {
            match op {
                Op::Call { client, nr, mut payload, plant, exact_size } => {
                    if exact_size {
                        if let Some(row) = ioctl::find(nr) {
                            payload.resize(row.fixed, 0);
                        }
                    }
                    for (at, value) in plant {
                        if at + 4 <= payload.len() {
                            payload[at..at + 4].copy_from_slice(&value.to_le_bytes());
                        }
                    }
                    let _answered = clients[client].call(nr, &mut payload);
                }
                Op::Mmap { client, handle, len } => {
                    if let Ok(mapping) = clients[client].mmap(handle * 0x1000_0000, len) {
                        prop_assert!(mapping.write(0, &[0xaa; 16][..len.min(16)]));
                        mappings.push(mapping);
                    }
                }
                Op::DropMappings => mappings.clear(),
                Op::Read { client, len } => {
                    if let Ok(read) = clients[client].read(&mut vec![0; len]) {
                        prop_assert!(read > 0 && read % 32 == 0 && read <= len, "whole events only: {read}");
                    }
                }
                Op::Activate(vt) => kernel.scheme().activate(vt),
                Op::Unplug => {
                    kernel.scheme().unplug_bound(Unplug::Orderly);
                    emulated.remove(); // any later hardware access aborts the test
                }
            }
        }
        drop(clients);
        let bound = kernel.scheme().device().is_some();
        prop_assert_eq!(weak.upgrade().is_some(), bound || !mappings.is_empty(), "alive exactly while bound or mapped");
        drop(mappings);
        kernel.scheme().unplug_bound(Unplug::Surprise);
        prop_assert!(weak.upgrade().is_none(), "the device object outlived every handle");
    }
}

/// A clip coordinate: inside, on the edges of and far outside an 800×600 framebuffer.
fn coordinate() -> impl Strategy<Value = u16> {
    prop_oneof![
        0..900u16,
        Just(0u16),
        Just(599),
        Just(600),
        Just(799),
        Just(800),
        Just(u16::MAX),
        any::<u16>()
    ]
}

/// The bounding box, clipped to `w`×`h`, of the clips that cover any of it (what DIRTYFB repaints);
/// no clips at all means the whole framebuffer.
fn expected_damage(clips: &[[u16; 4]], (w, h): (u32, u32)) -> Option<(u32, u32, u32, u32)> {
    if clips.is_empty() {
        return Some((0, 0, w, h));
    }
    clips
        .iter()
        .map(|c| c.map(u32::from))
        .map(|[x1, y1, x2, y2]| (x1, y1, x2.min(w), y2.min(h)))
        .filter(|&(x1, y1, x2, y2)| x1 < x2 && y1 < y2)
        .reduce(|a, b| (a.0.min(b.0), a.1.min(b.1), a.2.max(b.2), a.3.max(b.3)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)))]

    /// DIRTYFB with any clip rectangles (inverted, empty, huge, outside the framebuffer) on the
    /// framebuffer being shown: always accepted, never a panic (this test runs with overflow checks
    /// on), and exactly the part of the clips' bounding box inside the framebuffer is repainted.
    #[test]
    fn dirtyfb_with_arbitrary_clips_repaints_exactly_the_clipped_damage(
        clips in prop::collection::vec([coordinate(), coordinate(), coordinate(), coordinate()], 0..6)
    ) {
        let (w, h) = (800u32, 600u32);
        let kernel = Kernel::new(DisplayScheme::new("display.bochs")).unwrap();
        let emulated = EmulatedDevice::new(Config { vram_bytes: 4 << 20, ..Config::default() }).unwrap();
        let _device = plug(&kernel, &emulated, 1, || {}).unwrap();
        let fd = kernel.open("v2/3", 1000).unwrap();
        let connector = drm::get_connector(&fd, 21, true).unwrap();
        let mode = (0..connector.modes.len()).find(|&i| connector.size(i) == Some((w, h))).unwrap();
        let dumb = drm::create_dumb(&fd, w, h).unwrap();
        let mapping = fd.mmap(drm::map_dumb(&fd, dumb.handle).unwrap(), dumb.size as usize).unwrap();
        let fill = |byte: u8| {
            for row in 0..h {
                mapping.write((row * dumb.pitch) as usize, &vec![byte; (w * 4) as usize]);
            }
        };
        fill(0x11);
        let fb = drm::add_fb(&fd, w, h, dumb.pitch, 24, dumb.handle).unwrap();
        drm::set_crtc(&fd, 19, fb, &[21], Some(&connector.modes[mode])).unwrap();
        kernel.scheme().activate(3);
        fill(0x77); // drawn, not yet flushed
        prop_assert_eq!(drm::dirty_fb(&fd, fb, &clips), Ok(()));
        let screen = emulated.scanout().unwrap();
        let repainted = |x: u32, y: u32| screen.pixel(x, y) == [0x77; 3];
        match expected_damage(&clips, (w, h)) {
            None => prop_assert!(!repainted(0, 0) && !repainted(w - 1, h - 1), "nothing to repaint"),
            Some((x1, y1, x2, y2)) => {
                for (x, y) in [(x1, y1), (x2 - 1, y1), (x1, y2 - 1), (x2 - 1, y2 - 1)] {
                    prop_assert!(repainted(x, y), "({x}, {y}) inside the damage");
                }
                let outside = [(x1.wrapping_sub(1), y1), (x2, y1), (x1, y1.wrapping_sub(1)), (x1, y2)];
                for (x, y) in outside.into_iter().filter(|&(x, y)| x < w && y < h) {
                    prop_assert!(!repainted(x, y), "({x}, {y}) outside the damage");
                }
            }
        }
    }
}
