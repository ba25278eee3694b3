//! IGT's `core_hotunplug`, ported to the emulated device and the display scheme.
//!
//! "unbind" is an orderly removal through the control path; "remove" is a surprise: the device is
//! yanked (its registers read 0xFFFF) and the health probe must notice. "bind"/"rescan" plug in a
//! new device instance. The health check opens a new handle, runs Orbital's start-up, draws one
//! frame and finds it in the new device's VRAM. After each run every earlier device object must be
//! freed. Each subtest repeats `DISPLAYD_HOTUNPLUG_REPEAT` times (default 20); the emulated device's
//! tripwire aborts the whole run on any hardware access after removal.
#![cfg(not(loom))]

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Weak};
use std::thread;

use displayd::device_object::DeviceObject;
use displayd::scheme::DisplayScheme;
use displayd_testkit::consumers::{Consumer, ConsumerDisplay, ConsumerError};
use displayd_testkit::emulated::{Config, EmulatedDevice, YankedReads};
use displayd_testkit::kernel::Kernel;
use displayd_testkit::plug;

/// The "PCI bus": one emulated device at a time, the scheme, and every device object ever bound.
struct Bus {
    kernel: Kernel,
    emulated: EmulatedDevice,
    bound: Vec<Weak<DeviceObject>>,
}

impl Bus {
    fn new() -> Bus {
        let kernel = Kernel::new(DisplayScheme::new("display.bochs")).unwrap();
        let (emulated, device) = Bus::plug_new(&kernel, 1);
        Bus { kernel, emulated, bound: vec![Arc::downgrade(&device)] }
    }

    fn plug_new(kernel: &Kernel, instance: u32) -> (EmulatedDevice, Arc<DeviceObject>) {
        // 4 MiB keeps the many devices of a long run cheap; 1280x800 still fits.
        let emulated = EmulatedDevice::new(Config { vram_bytes: 4 << 20, ..Config::default() }).unwrap();
        let device = plug(kernel, &emulated, instance, || {}).unwrap();
        (emulated, device)
    }

    /// Orderly removal: the administrator's `unplug`, then the device is removed.
    fn unbind(&self) {
        self.kernel.open("control", 0).unwrap().write(b"unplug").unwrap();
        self.emulated.remove();
    }

    /// Surprise removal: the device vanishes; only the health probe can tell.
    fn remove(&self) {
        self.emulated.yank(YankedReads::Ones);
        assert!(
            displayd_testkit::probe_now(self.kernel.scheme()),
            "the health probe missed a vanished device"
        );
        self.emulated.remove();
    }

    /// A new device instance appears (rebind or rescan).
    fn bind(&mut self) {
        let (emulated, device) = Bus::plug_new(&self.kernel, self.bound.len() as u32 + 1);
        self.emulated = emulated;
        self.bound.push(Arc::downgrade(&device));
    }

    /// IGT's health check, on the display node: Orbital's start-up, one frame, seen in VRAM.
    fn healthcheck(&self) {
        let mut display =
            ConsumerDisplay::start(&self.kernel, Consumer::Orbital, 3).expect("open and start-up");
        self.kernel.scheme().activate(3);
        let (w, h) = display.size();
        display.frame((0, 0, w, h), &[0x11, 0x22, 0x33, 0].repeat((w * h) as usize)).expect("one frame");
        let screen = self.emulated.scanout().expect("the new device shows the frame");
        assert_eq!(screen.pixel(w / 2, h / 2), [0x33, 0x22, 0x11]);
    }

    /// Every device object but the bound one has been freed.
    fn assert_old_devices_freed(&self) {
        let (old, current) = self.bound.split_at(self.bound.len() - 1);
        assert!(old.iter().all(|d| d.upgrade().is_none()), "an unplugged device object outlived its handles");
        assert!(current[0].upgrade().is_some());
    }
}

/// An open client: fbcond on VT 2, drawing a frame now and then.
fn open(bus: &Bus) -> ConsumerDisplay {
    ConsumerDisplay::start(&bus.kernel, Consumer::Fbcond, 2).expect("open")
}

/// An Orbital-like consumer drawing on another thread until stopped; it returns whether it ever
/// hit a call it would crash on.
struct Load {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<Result<u64, ConsumerError>>,
}

impl Load {
    fn start(bus: &Bus) -> Load {
        let mut display = ConsumerDisplay::start(&bus.kernel, Consumer::Orbital, 4).expect("load start-up");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let (drawing_tx, drawing) = std::sync::mpsc::channel();
        let thread = thread::spawn(move || {
            let mut frames = 0;
            while !flag.load(SeqCst) {
                display.frame((0, 0, 64, 64), &[0xaa; 64 * 64 * 4])?;
                frames += 1;
                let _ = drawing_tx.send(());
                thread::yield_now();
            }
            Ok(frames)
        });
        drawing.recv().expect("the load draws before the removal");
        Load { stop, thread }
    }

    fn finish(self) {
        self.stop.store(true, SeqCst);
        let frames = self.thread.join().expect("load thread").expect("the loaded consumer never crashes");
        assert!(frames > 0);
    }
}

#[derive(Clone, Copy)]
enum Removal {
    Unbind,
    Remove,
}

impl Bus {
    fn take_away(&self, how: Removal) {
        match how {
            Removal::Unbind => self.unbind(),
            Removal::Remove => self.remove(),
        }
    }
}

fn repeat(subtest: impl Fn()) {
    let times: usize =
        std::env::var("DISPLAYD_HOTUNPLUG_REPEAT").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    for _ in 0..times {
        subtest();
    }
}

/// unbind-rebind and unplug-rescan: no file open.
fn cold(how: Removal) {
    repeat(|| {
        let mut bus = Bus::new();
        bus.take_away(how);
        bus.bind();
        bus.healthcheck();
        bus.assert_old_devices_freed();
    });
}

/// hotunbind-rebind and hotunplug-rescan: the file is closed before the new device appears.
fn hot_close_first(how: Removal, load: bool) {
    repeat(|| {
        let mut bus = Bus::new();
        let mut client = open(&bus);
        let load = load.then(|| Load::start(&bus));
        bus.take_away(how);
        client.frame((0, 0, 8, 8), &[1; 256]).expect("a call after removal is answered");
        drop(client);
        if let Some(load) = load {
            load.finish();
        }
        bus.bind();
        bus.healthcheck();
        bus.assert_old_devices_freed();
    });
}

/// hotrebind/hotreplug (old file still open at the health check) and their -lateclose variants
/// (old file closed after the new device appeared, then checked again).
fn hot_keep_open(how: Removal, late_close: bool, load: bool) {
    repeat(|| {
        let mut bus = Bus::new();
        let mut client = open(&bus);
        let load = load.then(|| Load::start(&bus));
        bus.take_away(how);
        bus.bind();
        client.frame((0, 0, 8, 8), &[1; 256]).expect("the old handle is still served");
        bus.healthcheck();
        if late_close {
            drop(client);
            if let Some(load) = load {
                load.finish();
            }
            bus.healthcheck();
            bus.assert_old_devices_freed();
        } else {
            assert!(bus.bound[0].upgrade().is_some(), "the old handle holds the old device object");
            drop(client);
            if let Some(load) = load {
                load.finish();
            }
            bus.assert_old_devices_freed();
        }
    });
}

#[test]
fn unbind_rebind() {
    cold(Removal::Unbind);
}

#[test]
fn unplug_rescan() {
    cold(Removal::Remove);
}

#[test]
fn hotunbind_rebind() {
    hot_close_first(Removal::Unbind, false);
}

#[test]
fn hotunplug_rescan() {
    hot_close_first(Removal::Remove, false);
}

#[test]
fn hotrebind() {
    hot_keep_open(Removal::Unbind, false, false);
}

#[test]
fn hotreplug() {
    hot_keep_open(Removal::Remove, false, false);
}

#[test]
fn hotrebind_lateclose() {
    hot_keep_open(Removal::Unbind, true, false);
}

#[test]
fn hotreplug_lateclose() {
    hot_keep_open(Removal::Remove, true, false);
}

#[test]
fn hotunbind_rebind_with_load() {
    hot_close_first(Removal::Unbind, true);
}

#[test]
fn hotunplug_rescan_with_load() {
    hot_close_first(Removal::Remove, true);
}

#[test]
fn hotrebind_with_load() {
    hot_keep_open(Removal::Unbind, false, true);
}

#[test]
fn hotreplug_with_load() {
    hot_keep_open(Removal::Remove, false, true);
}
