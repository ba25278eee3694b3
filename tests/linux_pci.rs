//! displayd's Linux platform on a stand-in sysfs: which functions it takes, how it enables and maps
//! them, and that an unplug unmaps their BARs.
#![cfg(target_os = "linux")]

use std::path::Path;

use displayd::device::bochs::{Bochs, Options, PciId};
use displayd::device::{Adapter, DeviceError, Rect, Unplug};
use displayd::linux::pci::{find_bochs, SysfsFunction};
use displayd_testkit::fake_sysfs;

#[test]
fn finds_enables_and_maps_a_bochs_function_and_unmaps_at_unplug() {
    let root = fake_sysfs::with_one(0x1234, 0x1111);
    let found = find_bochs(&root).unwrap();
    assert_eq!(found.len(), 1, "only the Bochs function");
    let function = &found[0];
    assert_eq!(function.address, "0000:00:02.0");
    assert_eq!(function.id, PciId { vendor: 0x1234, device: 0x1111, class: 3, subclass: 0x80, revision: 2 });
    assert!(function.bars_ready().unwrap());
    fake_sysfs::assign_bars(&function.path, false);
    assert!(!function.bars_ready().unwrap(), "an add@ uevent can come before the addresses");
    fake_sysfs::assign_bars(&function.path, true);
    std::fs::rename(function.path.join("resource2"), function.path.join("resource2.later")).unwrap();
    assert!(!function.bars_ready().unwrap(), "and before the resource files");
    std::fs::rename(function.path.join("resource2.later"), function.path.join("resource2")).unwrap();
    function.enable().unwrap();
    assert_eq!(std::fs::read_to_string(function.path.join("enable")).unwrap(), "1");
    let bochs = Bochs::probe(function.id, function.map_bars().unwrap(), Options::default()).unwrap();
    assert_eq!(bochs.vram_bytes(), 4 << 20);
    bochs.set_mode(640, 480).unwrap();
    bochs.flush(&[7u8; 640 * 4], 640 * 4, Rect { x: 0, y: 0, width: 640, height: 1 }).unwrap();
    let vram = std::fs::read(function.path.join("resource0")).unwrap();
    assert!(vram[..640 * 4].iter().all(|&b| b == 7), "the flush reached the BAR");
    let resource0 = function.path.join("resource0");
    let maps = || std::fs::read_to_string("/proc/self/maps").unwrap();
    assert!(maps().contains(resource0.to_str().unwrap()), "VRAM is mapped while bound");
    assert!(bochs.unplug(Unplug::Orderly));
    assert_eq!(bochs.set_mode(640, 480), Err(DeviceError::Gone));
    assert!(!maps().contains(resource0.to_str().unwrap()), "the unplug unmapped VRAM");
    std::fs::remove_dir_all(root).unwrap();
}

#[test]
fn other_devices_and_broken_attributes_are_not_taken() {
    let root = fake_sysfs::with_one(0x1af4, 0x1050);
    assert!(find_bochs(&root).unwrap().is_empty());
    fake_sysfs::add(&root, "0000:00:03.0", 0x1234, 0x1111);
    std::fs::write(root.join("bus/pci/devices/0000:00:02.0/vendor"), "nonsense").unwrap();
    let found = find_bochs(&root).unwrap();
    assert_eq!(found.len(), 1, "the broken function is skipped, the scan goes on");
    assert_eq!(found[0].address, "0000:00:03.0");
    let error = SysfsFunction::bochs_at(&root.join("bus/pci/devices/0000:00:02.0")).unwrap_err();
    assert!(error.to_string().contains("vendor"), "{error}");
    assert!(find_bochs(Path::new("/nonexistent")).is_err());
    std::fs::remove_dir_all(root).unwrap();
}
