//! Fuzzes the display scheme's call dispatcher: the input is a script of ioctls (any number, any
//! payload bytes), DIRTYFBs with arbitrary clip rectangles on each client's shown framebuffer,
//! event reads, mmaps, VT switches and an unplug, played by two clients against a fresh device. Any panic
//! (overflow checks are on: cargo-fuzz builds with debug assertions), or a device object that
//! outlives its last handle, is a finding.
//!
//! `cargo fuzz run dispatch` (from the repository root; needs cargo-fuzz and nightly).
#![no_main]

use std::sync::Arc;

use displayd::device::Unplug;
use displayd::kms::ioctl;
use displayd::scheme::DisplayScheme;
use displayd_testkit::emulated::{Config, EmulatedDevice};
use displayd_testkit::kernel::Kernel;
use displayd_testkit::{drm, plug};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|script: &[u8]| {
    let kernel = Kernel::new(DisplayScheme::new("display.bochs")).expect("scheme");
    let emulated = EmulatedDevice::new(Config { vram_bytes: 4 << 20, ..Config::default() }).expect("device");
    let device = plug(&kernel, &emulated, 1, || {}).expect("plug");
    let weak = Arc::downgrade(&device);
    drop(device);
    let clients = [kernel.open("v2/2", 1000).expect("open"), kernel.open("v2/3", 1001).expect("open")];
    // Each client shows a 640x480 framebuffer on its VT (VT 2 on screen), for DIRTYFB to reach.
    let shown: Vec<u32> = clients.iter().map(|fd| show(fd).expect("a shown framebuffer")).collect();
    kernel.scheme().activate(2);
    let mut mappings = Vec::new();
    let mut bytes = script.iter().copied();
    while let Some(op) = bytes.next() {
        let arg = bytes.next().unwrap_or(0);
        let client = &clients[usize::from(op & 1)];
        match op >> 1 {
            0..=89 => {
                // An ioctl: the number (mostly known ones), then `arg` payload bytes from the script,
                // padded to the fixed part every other time so deeper code is reached.
                let nr = u64::from(bytes.next().unwrap_or(0)) + if op & 2 == 0 { 0xa0 } else { 0 };
                let mut payload: Vec<u8> = bytes.by_ref().take(usize::from(arg)).collect();
                if op & 4 != 0 {
                    if let Some(row) = ioctl::find(nr) {
                        payload.resize(row.fixed.max(payload.len()), 0);
                    }
                }
                let _ = client.call(nr, &mut payload);
            }
            90..=104 => {
                // DIRTYFB on the client's shown framebuffer with `arg % 8` clips of script bytes:
                // inverted, empty, huge or outside, whatever the bytes say.
                let clips: Vec<[u16; 4]> = (0..arg % 8)
                    .map(|_| {
                        std::array::from_fn(|_| {
                            u16::from_le_bytes([bytes.next().unwrap_or(0), bytes.next().unwrap_or(0)])
                        })
                    })
                    .collect();
                let _ = drm::dirty_fb(client, shown[usize::from(op & 1)], &clips);
            }
            105..=106 => {
                // read: flip-completion events into a buffer of `arg` bytes (never blocks).
                let _ = client.read(&mut vec![0u8; usize::from(arg)]);
            }
            107..=112 => {
                if let Ok(mapping) = client.mmap(u64::from(arg % 8) << 28, 4096 * (1 + usize::from(arg >> 5)))
                {
                    mappings.push(mapping);
                }
            }
            113..=116 => mappings.clear(),
            117..=124 => kernel.scheme().activate(usize::from(arg % 5)),
            _ => {
                kernel.scheme().unplug_bound(Unplug::Orderly);
                emulated.remove();
            }
        }
    }
    drop(clients);
    drop(mappings);
    kernel.scheme().unplug_bound(Unplug::Surprise);
    assert!(weak.upgrade().is_none(), "the device object outlived every handle");
});

/// A 640x480 framebuffer set on the client's CRTC; its id.
fn show(fd: &displayd_testkit::kernel::Fd) -> Option<u32> {
    let connector = drm::get_connector(fd, 21, true).ok()?;
    let mode = (0..connector.modes.len()).find(|&i| connector.size(i) == Some((640, 480))).unwrap_or(0);
    let (w, h) = connector.size(mode).unwrap_or((640, 480));
    let dumb = drm::create_dumb(fd, w, h).ok()?;
    let fb = drm::add_fb(fd, w, h, dumb.pitch, 24, dumb.handle).ok()?;
    drm::set_crtc(fd, 19, fb, &[21], Some(&connector.modes[mode])).ok()?;
    Some(fb)
}
