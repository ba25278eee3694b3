//! The health probe on its own thread (`platform::health_probe`): it unplugs a vanished device
//! while nobody serves requests, it never keeps a device object alive, and its thread ends once
//! the device is unplugged or the probe handle dropped.

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use displayd::device::bochs::{Hardware, QEMU_BOCHS_DISPLAY};
use displayd::device::Unplug;
use displayd::device_object::DeviceObject;
use displayd::guard::Releases;
use displayd::linux::memory::HostAllocator;
use displayd::platform::health_probe::HealthProbe;
use displayd_testkit::emulated::{Config, EmulatedDevice, YankedReads};

mod common;

/// Generous: the probe ticks every millisecond here, and the machine may be loaded.
const DEADLINE: Duration = Duration::from_secs(60);

/// A fresh emulated device bound as a device object, and the flag its managed release sets.
fn bound() -> (EmulatedDevice, Arc<AtomicBool>, Arc<DeviceObject>) {
    let emulated = EmulatedDevice::new(Config::default()).unwrap();
    let released = Arc::new(AtomicBool::new(false));
    let (vram, mmio) = emulated.map_bars();
    let releases = Releases::new();
    let flag = Arc::clone(&released);
    releases.add("test", move || flag.store(true, SeqCst));
    let unique = "pci:0000:00:02.0".to_string();
    let device = DeviceObject::bind(
        QEMU_BOCHS_DISPLAY,
        Hardware { mmio, vram },
        Arc::new(HostAllocator),
        unique,
        1,
        releases,
    )
    .expect("bind");
    (emulated, released, device)
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    common::poll(
        DEADLINE,
        Duration::from_millis(1),
        || format!("{what} within {DEADLINE:?}"),
        || Ok(condition().then_some(())),
    )
    .unwrap();
}

#[test]
fn a_vanished_device_is_unplugged_by_the_probe_alone_and_its_thread_ends() {
    let (emulated, released, device) = bound();
    device.kms.adapter().set_mode(640, 480).unwrap();
    let _probe = HealthProbe::spawn(&device, Duration::from_millis(1)).unwrap();
    // Nobody serves requests or calls the scheme: only the probe can notice.
    emulated.yank(YankedReads::Ones);
    wait_until("the probe unplugging the yanked device", || device.is_unplugged());
    // Its thread has ended: it no longer holds even its weak reference.
    wait_until("the probe thread ending", || Arc::weak_count(&device) == 0);
    assert!(!released.load(SeqCst), "the unplug frees nothing while a reference holds the object");
    drop(device);
    assert!(released.load(SeqCst), "freed at the last reference");
}

#[test]
fn the_probe_never_keeps_a_device_object_alive() {
    let (_emulated, released, device) = bound();
    // A period this long never ticks during the test: the probe holds only its weak reference.
    let probe = HealthProbe::spawn(&device, Duration::from_secs(3600)).unwrap();
    drop(device);
    assert!(released.load(SeqCst), "freed at the last strong reference, probe or not");
    drop(probe);
}

#[test]
fn a_ticking_probe_lets_the_device_object_go_at_its_next_tick_at_the_latest() {
    let (_emulated, released, device) = bound();
    let probe = HealthProbe::spawn(&device, Duration::from_millis(1)).unwrap();
    drop(device);
    // A tick may hold the object for its check; it is freed when that tick lets go.
    wait_until("the device object being freed", || released.load(SeqCst));
    drop(probe);
}

#[test]
fn dropping_the_probe_ends_its_thread_and_an_orderly_unplug_ends_it_too() {
    let (emulated, _released, device) = bound();
    let probe = HealthProbe::spawn(&device, Duration::from_secs(3600)).unwrap();
    assert_eq!(Arc::weak_count(&device), 1, "the probe's weak reference");
    drop(probe);
    wait_until("the dropped probe's thread ending", || Arc::weak_count(&device) == 0);

    let _probe = HealthProbe::spawn(&device, Duration::from_millis(1)).unwrap();
    device.unplug(Unplug::Orderly);
    wait_until("the probe thread ending after the unplug", || Arc::weak_count(&device) == 0);
    assert!(emulated.is_present(), "an orderly unplug is not a removal");
}
