//! Randomized unplug races. Client threads issue random valid and invalid ioctls, mmaps, unmaps,
//! opens and closes while another thread removes the device (orderly, surprise via the health probe,
//! or by unplugging it directly from its own thread, concurrently with in-flight calls), plugs in new
//! ones and switches VTs. On every seed: the emulated device's tripwire aborts the run on any
//! hardware access after removal; no thread panics; every call returns; a client never sees another
//! client's pixels; and once everything is closed, every device object has been freed.
//!
//! `DISPLAYD_RACE_SEEDS` (default 200) seeds from `DISPLAYD_RACE_SEED_BASE` (default 0). A failing
//! seed prints the command that replays it alone.
#![cfg(not(loom))]

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Weak};
use std::thread;
use std::time::Duration;

use displayd::device::Unplug;
use displayd::device_object::DeviceObject;
use displayd::kms::ioctl;
use displayd::scheme::DisplayScheme;
use displayd_testkit::emulated::{Config, EmulatedDevice, YankedReads};
use displayd_testkit::kernel::{ClientMapping, Fd, Kernel};
use displayd_testkit::{drm, plug};

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

const CALLS: [u64; 12] = [
    ioctl::GET_CAP,
    ioctl::MODE_CARD_RES,
    ioctl::GET_CONNECTOR,
    ioctl::SET_CRTC,
    ioctl::DIRTYFB,
    ioctl::ADD_FB,
    ioctl::RM_FB,
    ioctl::PAGE_FLIP,
    ioctl::GET_PLANE,
    ioctl::OBJ_GET_PROPERTIES,
    ioctl::CLOSE_FB,
    0x42,
];

/// One client's life: random calls; every mapping it gets carries its own tag, and any mapping
/// must show its own tag or zeros, never another client's.
fn client(kernel: Kernel, seed: u64, tag: u8, stop: Arc<AtomicBool>) {
    let mut rng = Rng::new(seed);
    let mut fds: Vec<Fd> = Vec::new();
    let mut mappings: Vec<ClientMapping> = Vec::new();
    let mut fbs: Vec<u32> = Vec::new();
    for _ in 0..150 {
        if stop.load(SeqCst) {
            break;
        }
        match rng.below(10) {
            0 => {
                if let Ok(fd) = kernel.open(&format!("v2/{}", 1 + rng.below(3)), 1000 + u32::from(tag)) {
                    fds.push(fd);
                }
            }
            1 if !fds.is_empty() => drop(fds.swap_remove(rng.below(fds.len() as u64) as usize)),
            2 if !mappings.is_empty() => {
                drop(mappings.swap_remove(rng.below(mappings.len() as u64) as usize))
            }
            3 | 4 if !fds.is_empty() => {
                let fd = &fds[rng.below(fds.len() as u64) as usize];
                let (w, h) = (8 * (1 + rng.below(100)) as u32, 1 + rng.below(600) as u32);
                let Ok(dumb) = drm::create_dumb(fd, w, h) else { continue };
                let Ok(offset) = drm::map_dumb(fd, dumb.handle) else { continue };
                if let Ok(mapping) = fd.mmap(offset, dumb.size as usize) {
                    assert!(mapping.write(0, &[tag; 64]));
                    mappings.push(mapping);
                }
                if let Ok(fb) = drm::add_fb(fd, w, h, dumb.pitch, 24, dumb.handle) {
                    fbs.push(fb);
                }
            }
            5 if !fds.is_empty() => {
                // Probe other windows: whatever maps must be ours (tagged) or fresh (zeros).
                let fd = &fds[rng.below(fds.len() as u64) as usize];
                if let Ok(mapping) = fd.mmap(rng.below(8) << 28, 4096) {
                    let seen = mapping.read(0, 64).expect("a mapping can be read");
                    assert!(
                        seen.iter().all(|&b| b == tag || b == 0),
                        "client {tag} saw another client's pixels"
                    );
                    mappings.push(mapping);
                }
            }
            6 if !fds.is_empty() && !fbs.is_empty() => {
                let fd = &fds[rng.below(fds.len() as u64) as usize];
                let fb = fbs[rng.below(fbs.len() as u64) as usize];
                let _ = drm::dirty_fb(fd, fb, &[[0, 0, 64, 64]]);
            }
            _ if !fds.is_empty() => {
                let fd = &fds[rng.below(fds.len() as u64) as usize];
                let nr = CALLS[rng.below(CALLS.len() as u64) as usize];
                let len = ioctl::find(nr).map_or(8, |row| row.fixed);
                let mut payload: Vec<u8> = (0..len).map(|_| rng.below(4) as u8).collect();
                if let (Some(fb), true) = (fbs.first(), len >= 8) {
                    payload[..4].copy_from_slice(&fb.to_le_bytes());
                }
                let _answered = fd.call(nr, &mut payload);
            }
            _ => {}
        }
    }
}

/// The device side: removals of every kind, replugs and VT switches at random moments.
fn chaos(kernel: &Kernel, seed: u64, first: EmulatedDevice, bound: &mut Vec<Weak<DeviceObject>>) {
    let mut rng = Rng::new(seed ^ 0xc4a0_5000);
    let mut emulated = Some(first);
    for _ in 0..12 {
        thread::sleep(Duration::from_micros(rng.below(1500)));
        match (rng.below(5), emulated.take()) {
            (0, Some(s)) => {
                if let Ok(control) = kernel.open("control", 0) {
                    let _ = control.write(b"unplug");
                }
                s.remove();
            }
            (1, Some(s)) => {
                s.yank(YankedReads::Ones);
                assert!(displayd_testkit::probe_now(kernel.scheme()), "the health probe missed the yank");
                s.remove();
            }
            (2, Some(s)) => {
                // Unplugged from this thread while clients may be inside a section: the guard
                // must wait them out before the BARs go.
                let device = kernel.scheme().device();
                if let Some(device) = &device {
                    device.unplug(Unplug::Surprise);
                }
                s.remove();
                if let Some(device) = &device {
                    kernel.scheme().unplug(device, Unplug::Surprise);
                }
            }
            (3, s) => {
                emulated = s;
                kernel.scheme().activate(1 + rng.below(3) as usize);
            }
            (_, Some(s)) => emulated = Some(s),
            (_, None) => {
                let new = EmulatedDevice::new(Config { vram_bytes: 4 << 20, ..Config::default() }).unwrap();
                let device = plug(kernel, &new, bound.len() as u32 + 1, || {}).unwrap();
                bound.push(Arc::downgrade(&device));
                emulated = Some(new);
            }
        }
    }
}

fn run_seed(seed: u64) {
    let kernel = Kernel::new(DisplayScheme::new("display.bochs")).unwrap();
    let emulated = EmulatedDevice::new(Config { vram_bytes: 4 << 20, ..Config::default() }).unwrap();
    let mut bound = vec![Arc::downgrade(&plug(&kernel, &emulated, 1, || {}).unwrap())];
    kernel.scheme().activate(1);
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (1..=3u8)
        .map(|tag| {
            let (kernel, stop) = (kernel.clone(), Arc::clone(&stop));
            thread::spawn(move || client(kernel, seed.wrapping_add(u64::from(tag)), tag, stop))
        })
        .collect();
    chaos(&kernel, seed, emulated, &mut bound);
    stop.store(true, SeqCst);
    for client in clients {
        client.join().expect("a client thread panicked");
    }
    kernel.scheme().unplug_bound(Unplug::Surprise);
    assert!(bound.iter().all(|d| d.upgrade().is_none()), "a device object outlived every handle");
    assert_eq!(kernel.scheme().open_handles(), 1, "only the root handle is left");
}

#[test]
fn random_unplug_races() {
    let env =
        |name: &str, default: u64| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (base, seeds) = (env("DISPLAYD_RACE_SEED_BASE", 0), env("DISPLAYD_RACE_SEEDS", 200));
    for seed in base..base + seeds {
        if std::panic::catch_unwind(|| run_seed(seed)).is_err() {
            panic!("seed {seed} failed; replay it with DISPLAYD_RACE_SEED_BASE={seed} DISPLAYD_RACE_SEEDS=1");
        }
    }
}
