//! Fuzzes the display scheme's call dispatcher: the input is a script of ioctls (any number, any
//! payload bytes), mmaps, VT switches and an unplug, played by two clients against a fresh device.
//! Any panic, or a device object that outlives its last handle, is a finding.
//!
//! `cargo fuzz run dispatch` (from the repository root; needs cargo-fuzz and nightly).
#![no_main]

use std::sync::Arc;

use displayd::device::bochs::Removal;
use displayd::device::emulated::{Config, EmulatedDevice};
use displayd::kms::codec::ioctl;
use displayd::platform::host::kernel::Kernel;
use displayd::platform::host::plug;
use displayd::scheme::DisplayScheme;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|script: &[u8]| {
    let kernel = Kernel::new(DisplayScheme::new("display.bochs")).expect("scheme");
    let slot = EmulatedDevice::new(Config { vram_bytes: 4 << 20, ..Config::default() }).expect("device");
    let device = plug(&kernel, &slot, 1, || {}).expect("plug");
    let weak = Arc::downgrade(&device);
    drop(device);
    let clients = [kernel.open("v2/2", 1000).expect("open"), kernel.open("v2/3", 1001).expect("open")];
    let mut mappings = Vec::new();
    let mut bytes = script.iter().copied();
    while let Some(op) = bytes.next() {
        let arg = bytes.next().unwrap_or(0);
        let client = &clients[usize::from(op & 1)];
        match op >> 1 {
            0..=99 => {
                // An ioctl: the number (mostly known ones), then `arg` payload bytes from the script,
                // padded to the fixed part every other time so deeper code is reached.
                let nr = u64::from(bytes.next().unwrap_or(0)) + if op & 2 == 0 { 0xa0 } else { 0 };
                let mut payload: Vec<u8> = bytes.by_ref().take(usize::from(arg)).collect();
                if op & 4 != 0 {
                    if let Some(layout) = ioctl::layout(nr) {
                        payload.resize(layout.fixed.max(payload.len()), 0);
                    }
                }
                let _ = client.call(nr, &mut payload);
            }
            100..=109 => {
                if let Ok(mapping) = client.mmap(u64::from(arg % 8) << 28, 4096 * (1 + usize::from(arg >> 5))) {
                    mappings.push(mapping);
                }
            }
            110..=114 => mappings.clear(),
            115..=124 => kernel.scheme().activate(usize::from(arg % 5)),
            _ => {
                kernel.scheme().unplug(Removal::Orderly);
                slot.remove();
            }
        }
    }
    drop(clients);
    drop(mappings);
    kernel.scheme().unplug(Removal::Surprise);
    assert!(weak.upgrade().is_none(), "the device object outlived every handle");
});
