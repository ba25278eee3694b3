//! The display scheme end to end: Orbital's and fbcond's exact call sequences through the scheme's
//! request methods (what `SchemeSync` forwards to on Redox) into the emulated device's VRAM, VT switching, handles that outlive the device,
//! the control path, ownership rules, and the reference driver's panics turned into errnos.
#![cfg(not(loom))]

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;

use displayd::device_object::DeviceObject;
use displayd::kms::ioctl;
use displayd::scheme::{DisplayScheme, DRM_DEVICE};
use displayd_testkit::consumers::{Consumer, ConsumerDisplay};
use displayd_testkit::drm;
use displayd_testkit::emulated::{Config, EmulatedDevice};
use displayd_testkit::kernel::Kernel;
use displayd_testkit::plug;
use syscall::error::{EACCES, EINVAL, ENODEV, ENOENT, ENXIO};

struct Rig {
    kernel: Kernel,
    emulated: EmulatedDevice,
    device: Arc<DeviceObject>,
    released: Arc<AtomicBool>,
}

fn rig() -> Rig {
    let kernel = Kernel::new(DisplayScheme::new("display.bochs")).unwrap();
    let (emulated, device, released) = replug(&kernel, 1);
    Rig { kernel, emulated, device, released }
}

fn replug(kernel: &Kernel, instance: u32) -> (EmulatedDevice, Arc<DeviceObject>, Arc<AtomicBool>) {
    let emulated = EmulatedDevice::new(Config::default()).unwrap();
    let released = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&released);
    let device = plug(kernel, &emulated, instance, move || flag.store(true, SeqCst)).unwrap();
    (emulated, device, released)
}

fn solid(w: u32, h: u32, [r, g, b]: [u8; 3]) -> Vec<u8> {
    [b, g, r, 0].repeat((w * h) as usize)
}

fn errno<T>(result: syscall::error::Result<T>) -> i32 {
    match result {
        Ok(_) => panic!("expected an error, the call succeeded"),
        Err(error) => error.errno,
    }
}

#[test]
fn orbital_starts_on_its_vt_and_its_frames_reach_the_screen_once_active() {
    let rig = rig();
    let mut orbital = ConsumerDisplay::start(&rig.kernel, Consumer::Orbital, 3).unwrap();
    assert_eq!(orbital.size(), (1280, 800), "the EDID's preferred mode");
    assert!(rig.emulated.scanout().is_none(), "VT 3 is not active yet: nothing reaches the screen");
    orbital.frame((0, 0, 1280, 800), &solid(1280, 800, [10, 20, 30])).unwrap();
    rig.kernel.scheme().activate(3); // inputd -A 3
    let screen = rig.emulated.scanout().expect("activation replays VT 3");
    assert_eq!((screen.width, screen.height), (1280, 800));
    assert_eq!(screen.pixel(640, 400), [10, 20, 30]);
    orbital.frame((100, 50, 64, 32), &solid(64, 32, [200, 0, 0])).unwrap();
    let screen = rig.emulated.scanout().unwrap();
    assert_eq!(screen.pixel(100, 50), [200, 0, 0]);
    assert_eq!(screen.pixel(163, 81), [200, 0, 0]);
    assert_eq!(screen.pixel(164, 81), [10, 20, 30]);
    assert_eq!(orbital.logged_errors, 0);
}

#[test]
fn switching_vts_replays_each_consumers_screen() {
    let rig = rig();
    let mut fbcond = ConsumerDisplay::start(&rig.kernel, Consumer::Fbcond, 2).unwrap();
    rig.kernel.scheme().activate(2);
    fbcond.frame((0, 0, 1280, 800), &solid(1280, 800, [0, 0, 90])).unwrap();
    let mut orbital = ConsumerDisplay::start(&rig.kernel, Consumer::Orbital, 3).unwrap();
    orbital.frame((0, 0, 1280, 800), &solid(1280, 800, [0, 90, 0])).unwrap();
    assert_eq!(rig.emulated.scanout().unwrap().pixel(5, 5), [0, 0, 90], "VT 3 drew off screen");
    rig.kernel.scheme().activate(3);
    assert_eq!(rig.emulated.scanout().unwrap().pixel(5, 5), [0, 90, 0]);
    rig.kernel.scheme().activate(2);
    assert_eq!(rig.emulated.scanout().unwrap().pixel(5, 5), [0, 0, 90]);
}

#[test]
fn after_an_orderly_unplug_consumers_keep_running_and_nothing_touches_the_device() {
    let rig = rig();
    let mut orbital = ConsumerDisplay::start(&rig.kernel, Consumer::Orbital, 3).unwrap();
    let mut fbcond = ConsumerDisplay::start(&rig.kernel, Consumer::Fbcond, 2).unwrap();
    rig.kernel.scheme().activate(3);
    let control = rig.kernel.open("control", 0).unwrap();
    assert_eq!(control.write(b"unplug\n").unwrap(), 7);
    rig.emulated.remove(); // from here any hardware access aborts the test process
    let frame = solid(64, 64, [1, 2, 3]);
    for _ in 0..3 {
        orbital.frame((0, 0, 64, 64), &frame).expect("Orbital would not panic");
        fbcond.frame((0, 0, 64, 64), &frame).expect("fbcond would not panic");
    }
    assert_eq!(orbital.logged_errors, 0, "DIRTYFB is accepted and dropped");
    let connector = drm::get_connector(orbital.fd(), 21, false).unwrap();
    assert_eq!(connector.connection, 2, "disconnected");
    assert_eq!(connector.size(0), Some((1280, 800)), "the last known modes");
    assert_eq!(errno(drm::create_dumb(orbital.fd(), 64, 64)), ENODEV);
    assert_eq!(errno(drm::set_crtc(orbital.fd(), 19, 0, &[], None)), ENODEV);
    assert_eq!(errno(rig.kernel.open("v2/4", 0)), ENODEV, "no device to bind new opens to");
    let mut status = [0u8; 64];
    let len = control.read_at(0, &mut status).unwrap(); // the write moved the file position
    let pid = std::process::id();
    assert_eq!(status[..len], *format!("no device, 2 display handles, pid {pid}\n").as_bytes());

    let weak = Arc::downgrade(&rig.device);
    drop(rig.device);
    drop(orbital);
    assert!(weak.upgrade().is_some(), "fbcond's handle still holds the device object");
    assert!(!rig.released.load(SeqCst));
    drop(fbcond);
    assert!(weak.upgrade().is_none(), "the last close freed the device object");
    assert!(rig.released.load(SeqCst), "its managed releases ran");
}

#[test]
fn a_replugged_device_serves_new_opens_while_old_handles_stay_on_the_old_one() {
    let rig = rig();
    let mut old = ConsumerDisplay::start(&rig.kernel, Consumer::Fbcond, 2).unwrap();
    rig.kernel.scheme().activate(2);
    rig.kernel.scheme().unplug(&rig.device, displayd::device::Unplug::Surprise);
    rig.emulated.remove();
    let (new_emulated, new_device, _) = replug(&rig.kernel, 2);
    rig.kernel.scheme().activate(2);
    let mut fresh = ConsumerDisplay::start(&rig.kernel, Consumer::Fbcond, 2).unwrap();
    fresh.frame((0, 0, 1280, 800), &solid(1280, 800, [7, 77, 177])).unwrap();
    assert_eq!(new_emulated.scanout().unwrap().pixel(9, 9), [7, 77, 177]);
    old.frame((0, 0, 8, 8), &solid(8, 8, [255, 0, 0])).expect("the old handle is still served");
    assert_eq!(
        new_emulated.scanout().unwrap().pixel(0, 0),
        [7, 77, 177],
        "old clients never reach the new device"
    );
    assert_eq!(drm::get_connector(old.fd(), 21, false).unwrap().connection, 2);
    assert_eq!(drm::get_connector(fresh.fd(), 21, false).unwrap().connection, 1);
    drop(old);
    assert!(Arc::strong_count(&new_device) >= 2, "the new device is untouched by the old close");
}

#[test]
fn the_control_path_is_root_only_and_says_what_it_does() {
    let rig = rig();
    assert_eq!(errno(rig.kernel.open("control", 1000)), EACCES);
    let control = rig.kernel.open("control", 0).unwrap();
    // Read as a file: the status line, then the end of it (the kernel tracks the offset because
    // the handle is POSITIONED; otherwise Redox passes offset u64::MAX and the status reads empty).
    let mut status = [0u8; 80];
    let len = control.read(&mut status).unwrap();
    let line = format!("device 1 present, 0 display handles, active vt none, pid {}\n", std::process::id());
    assert_eq!(status[..len], *line.as_bytes());
    assert_eq!(control.read(&mut status).unwrap(), 0, "end of file");
    assert_eq!(control.read_at(7, &mut status).unwrap(), len - 7, "pread from an offset");
    assert_eq!(errno(control.write(b"reboot")), EINVAL);
    assert_eq!(errno(control.call(ioctl::VERSION, &mut [0; 40])), EINVAL);
    control.write(b"unplug").unwrap();
    assert_eq!(errno(control.write(b"unplug")), ENODEV, "nothing left to unplug");
}

#[test]
fn paths_fstat_and_fpath_follow_the_reference() {
    let rig = rig();
    assert_eq!(errno(rig.kernel.open("", 0)), EINVAL);
    assert_eq!(errno(rig.kernel.open("v1/2", 0)), ENOENT);
    assert_eq!(errno(rig.kernel.open("v2/two", 0)), EINVAL);
    assert_eq!(errno(rig.kernel.open("other", 0)), EINVAL);
    let fd = rig.kernel.open("v2/5", 1000).unwrap();
    assert_eq!(fd.path().unwrap(), "/scheme/display.bochs/v2/5");
    assert_eq!(fd.st_dev().unwrap(), DRM_DEVICE);
    assert_eq!(DRM_DEVICE, 0xe200);
}

#[test]
fn the_reference_drivers_panics_are_errnos_here() {
    let rig = rig();
    let fd = rig.kernel.open("v2/3", 1000).unwrap();
    // GET_CONNECTOR probing (count_modes 0) with a bad connector id.
    let mut connector = [0u8; 48];
    connector[16..20].copy_from_slice(&99u32.to_le_bytes());
    assert_eq!(errno(fd.call(ioctl::GET_CONNECTOR, &mut connector)), ENOENT);
    // GET_PLANE with a bad plane id.
    let mut plane = [0u8; 24];
    plane[..4].copy_from_slice(&7u32.to_le_bytes());
    assert_eq!(errno(fd.call(ioctl::GET_PLANE, &mut plane)), ENOENT);
    // A dumb buffer of 256 MiB or more (the reference asserts in MAP_DUMB).
    assert_eq!(errno(drm::create_dumb(&fd, 16000, 4200)), EINVAL);
    // mmap with an offset that names no buffer.
    assert_eq!(errno(fd.mmap(5 * 0x1000_0000, 4096)), ENOENT);
    // SET_PLANE with fb 0 on an inactive VT, then activating it.
    let mut set_plane = [0u8; 48];
    set_plane[..4].copy_from_slice(&18u32.to_le_bytes());
    set_plane[4..8].copy_from_slice(&19u32.to_le_bytes());
    fd.call(ioctl::SET_PLANE, &mut set_plane).unwrap();
    rig.kernel.scheme().activate(3);
    assert!(rig.emulated.scanout().is_none(), "nothing to show, and no panic");
    // GET_FB on every format the driver accepts (the reference panics on non-XRGB/ARGB).
    let dumb = drm::create_dumb(&fd, 64, 64).unwrap();
    let mut add_fb2 = [0u8; 104];
    for (at, v) in [(4, 64u32), (8, 64), (12, 0x3432_5241), (20, dumb.handle), (36, dumb.pitch)] {
        add_fb2[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    fd.call(ioctl::ADD_FB2, &mut add_fb2).unwrap();
    let mut get_fb = [0u8; 28];
    get_fb[..4].copy_from_slice(&add_fb2[..4]);
    fd.call(ioctl::GET_FB, &mut get_fb).unwrap();
    assert_eq!(&get_fb[16..24], &[32, 0, 0, 0, 32, 0, 0, 0], "32 bpp, depth 32 for ARGB8888");
    add_fb2[12..16].copy_from_slice(&0x3231_4752u32.to_le_bytes()); // RG12: not scanned out
    assert_eq!(errno(fd.call(ioctl::ADD_FB2, &mut add_fb2)), EINVAL);
    // Cursors: Bochs has none, as vesad answers.
    assert_eq!(errno(fd.call(ioctl::CURSOR, &mut [0; 28])), ENXIO);
    // An unknown ioctl and a payload of the wrong size.
    assert_eq!(errno(fd.call(0x42, &mut [0; 8])), EINVAL);
    assert_eq!(errno(fd.call(ioctl::GET_CAP, &mut [0; 15])), EINVAL);
}

#[test]
fn clients_cannot_reach_each_others_buffers_or_destroy_each_others_framebuffers() {
    let rig = rig();
    let alice = rig.kernel.open("v2/3", 1000).unwrap();
    let mallory = rig.kernel.open("v2/3", 1001).unwrap();
    let dumb = drm::create_dumb(&alice, 64, 64).unwrap();
    let offset = drm::map_dumb(&alice, dumb.handle).unwrap();
    let fb = drm::add_fb(&alice, 64, 64, dumb.pitch, 24, dumb.handle).unwrap();
    let secret = alice.mmap(offset, dumb.size as usize).unwrap();
    assert!(secret.write(0, b"alice's pixels"));
    assert_eq!(errno(mallory.mmap(offset, 4096)), ENOENT, "no mapping of another client's buffer");
    assert_eq!(errno(drm::map_dumb(&mallory, dumb.handle)), ENOENT);
    assert_eq!(errno(drm::destroy_dumb(&mallory, dumb.handle)), ENOENT);
    assert_eq!(errno(drm::add_fb(&mallory, 64, 64, dumb.pitch, 24, dumb.handle)), ENOENT);
    assert_eq!(errno(drm::rm_fb(&mallory, fb)), EACCES);
    assert_eq!(errno(mallory.call(ioctl::CLOSE_FB, &mut [fb.to_le_bytes(), [0; 4]].concat())), EACCES);
    let mut get_fb = [0u8; 28];
    get_fb[..4].copy_from_slice(&fb.to_le_bytes());
    mallory.call(ioctl::GET_FB, &mut get_fb).unwrap();
    assert_eq!(&get_fb[24..28], &[0; 4], "no handle to another client's buffer");
    assert_eq!(
        drm::card_res(&mallory).unwrap().fbs,
        Vec::<u32>::new(),
        "only your own framebuffers are listed"
    );
    assert_eq!(secret.read(0, 14).unwrap(), b"alice's pixels");
}

#[test]
fn closing_a_file_frees_its_buffers_and_framebuffers_and_its_mapping_outlives_destroy() {
    let rig = rig();
    let fd = rig.kernel.open("v2/3", 1000).unwrap();
    let dumb = drm::create_dumb(&fd, 640, 480).unwrap();
    let mapping = fd.mmap(drm::map_dumb(&fd, dumb.handle).unwrap(), dumb.size as usize).unwrap();
    drm::add_fb(&fd, 640, 480, dumb.pitch, 24, dumb.handle).unwrap();
    assert_eq!(rig.device.kms.live_objects(), (1, 1));
    drm::destroy_dumb(&fd, dumb.handle).unwrap();
    assert!(mapping.write(0, &[1, 2, 3, 4]), "the mapping is still valid memory");
    assert_eq!(mapping.read(0, 4).unwrap(), [1, 2, 3, 4]);
    drop(fd);
    assert_eq!(rig.device.kms.live_objects(), (1, 0), "the mapping keeps the file open");
    drop(mapping);
    assert_eq!(rig.device.kms.live_objects(), (0, 0), "the last reference ran the teardown");
    assert_eq!(rig.kernel.scheme().open_handles(), 1, "only the root handle is left");
}

/// An fd on VT 3 (active) with a 640x480 mode set on a framebuffer of `colour`.
fn shown(rig: &Rig, colour: [u8; 3]) -> (displayd_testkit::kernel::Fd, u32, [u8; 68]) {
    let fd = rig.kernel.open("v2/3", 1000).unwrap();
    let connector = drm::get_connector(&fd, 21, true).unwrap();
    let mode =
        connector.modes[(0..connector.modes.len()).find(|&i| connector.size(i) == Some((800, 600))).unwrap()];
    let fb = framebuffer(&fd, 800, 600, colour);
    drm::set_crtc(&fd, 19, fb, &[21], Some(&mode)).unwrap();
    rig.kernel.scheme().activate(3);
    (fd, fb, mode)
}

/// A framebuffer of one colour.
fn framebuffer(fd: &displayd_testkit::kernel::Fd, w: u32, h: u32, colour: [u8; 3]) -> u32 {
    let dumb = drm::create_dumb(fd, w, h).unwrap();
    let mapping = fd.mmap(drm::map_dumb(fd, dumb.handle).unwrap(), dumb.size as usize).unwrap();
    for row in 0..h {
        mapping.write((row * dumb.pitch) as usize, &solid(w, 1, colour));
    }
    drm::add_fb(fd, w, h, dumb.pitch, 24, dumb.handle).unwrap()
}

fn fixed(pairs: &[(usize, u32)], len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len];
    for &(at, v) in pairs {
        p[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    p
}

#[test]
fn page_flip_shows_the_new_framebuffer_without_tearing_and_close_fb_waits_for_the_plane() {
    let rig = rig();
    let (fd, first, _) = shown(&rig, [50, 0, 0]);
    assert_eq!(rig.emulated.scanout().unwrap().pixel(10, 10), [50, 0, 0]);
    let second = framebuffer(&fd, 800, 600, [0, 60, 0]);
    fd.call(ioctl::PAGE_FLIP, &mut fixed(&[(0, 19), (4, second)], 24)).unwrap();
    assert_eq!(rig.emulated.scanout().unwrap().pixel(799, 599), [0, 60, 0]);
    assert_eq!(rig.emulated.dispi(displayd::device::regs::DISPI_Y_OFFSET), 600, "flipped to the back page");
    fd.call(ioctl::PAGE_FLIP, &mut fixed(&[(0, 19), (4, first)], 24)).unwrap();
    assert_eq!(rig.emulated.dispi(displayd::device::regs::DISPI_Y_OFFSET), 0, "and back");
    assert_eq!(
        errno(fd.call(ioctl::PAGE_FLIP, &mut fixed(&[(0, 19), (4, second), (8, 4)], 24))),
        EINVAL,
        "an unknown flag"
    );
    // CLOSE_FB on the framebuffer being shown: it stays until the plane moves off it.
    fd.call(ioctl::CLOSE_FB, &mut fixed(&[(0, first)], 8)).unwrap();
    assert_eq!(rig.device.kms.live_objects().0, 2);
    assert_eq!(errno(drm::dirty_fb(&fd, first, &[])), ENOENT, "a closed framebuffer is gone for clients");
    let mut get = fixed(&[(0, first)], 28);
    fd.call(ioctl::GET_FB, &mut get).unwrap();
    fd.call(ioctl::PAGE_FLIP, &mut fixed(&[(0, 19), (4, second)], 24)).unwrap();
    assert_eq!(rig.device.kms.live_objects().0, 1, "destroyed once no plane shows it");
}

#[test]
fn properties_the_edid_blob_and_version_calls_answer_like_the_reference() {
    let rig = rig();
    let (fd, _, _) = shown(&rig, [1, 1, 1]);
    // OBJ_GET_PROPERTIES on the connector: [EDID, DPMS, TILE, CRTC_ID] and their values.
    let mut props = fixed(&[(0, 4), (4, 21)], 12 + 16 + 32);
    fd.call(ioctl::OBJ_GET_PROPERTIES, &mut props).unwrap();
    assert_eq!(u32::from_le_bytes(props[8..12].try_into().unwrap()), 0xc0c0_c0c0);
    assert_eq!(&props[12..28], &[2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0]);
    let edid_blob = u32::from_le_bytes(props[28..32].try_into().unwrap());
    assert_eq!(edid_blob, 22, "the EDID blob is the first dynamic id");
    assert_eq!(u64::from_le_bytes(props[52..60].try_into().unwrap()), 19, "CRTC_ID: attached");
    // GET_PROP_BLOB: probe the length, then fetch the EDID itself.
    let mut probe = fixed(&[(0, edid_blob)], 8);
    fd.call(ioctl::GET_PROP_BLOB, &mut probe).unwrap();
    let length = u32::from_le_bytes(probe[4..8].try_into().unwrap());
    assert_eq!(length, 128, "128 bytes per block, and the base block declares no extensions");
    let mut blob = fixed(&[(0, edid_blob), (4, length)], 8 + length as usize);
    fd.call(ioctl::GET_PROP_BLOB, &mut blob).unwrap();
    assert_eq!(&blob[8..16], &[0, 255, 255, 255, 255, 255, 255, 0]);
    // GET_PROPERTY on DPMS: enum values and names.
    let mut dpms = fixed(&[(0, 3), (40, 4), (44, 4)], 48 + 32 + 160);
    fd.call(ioctl::GET_PROPERTY, &mut dpms).unwrap();
    assert_eq!(&dpms[8..12], b"DPMS");
    assert_eq!(&dpms[48 + 32 + 40 + 8..48 + 32 + 40 + 15], b"Standby");
    // VERSION: probe, then names.
    let mut version = vec![0u8; 40];
    fd.call(ioctl::VERSION, &mut version).unwrap();
    assert_eq!(&version[..8], &[1, 0, 0, 0, 4, 0, 0, 0]);
    let name_len = u64::from_le_bytes(version[16..24].try_into().unwrap()) as usize;
    assert_eq!(name_len, "displayd".len());
    // GET_UNIQUE is empty until SET_VERSION, which accepts libdrm's 1.4 and Redox's 0.4.
    let mut unique = vec![0u8; 8];
    fd.call(ioctl::GET_UNIQUE, &mut unique).unwrap();
    assert_eq!(unique, [0; 8]);
    let mut set_version = [1i32, 4, -1, -1].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>();
    fd.call(ioctl::SET_VERSION, &mut set_version).unwrap();
    let mut bad_version = [2i32, 0, -1, -1].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>();
    assert_eq!(errno(fd.call(ioctl::SET_VERSION, &mut bad_version)), EINVAL);
    let mut unique = vec![0u8; 8];
    fd.call(ioctl::GET_UNIQUE, &mut unique).unwrap();
    let len = u64::from_le_bytes(unique[..8].try_into().unwrap()) as usize;
    let mut unique = [len.to_le_bytes().to_vec(), vec![0; len]].concat();
    fd.call(ioctl::GET_UNIQUE, &mut unique).unwrap();
    assert_eq!(&unique[8..], b"pci:0000:00:02.0");
}

#[test]
fn set_plane_places_a_framebuffer_region_and_dpms_blanks_through_set_property() {
    let rig = rig();
    let (fd, _, _) = shown(&rig, [0, 0, 0]);
    let small = framebuffer(&fd, 100, 100, [9, 99, 199]);
    // 64x32 from (10, 20) of the small framebuffer, at (300, 200) on the screen; 16.16 source.
    let request = [
        (0, 18),
        (4, 19),
        (8, small),
        (16, 300),
        (20, 200),
        (24, 64),
        (28, 32),
        (32, 10 << 16),
        (36, 20 << 16),
        (40, 32 << 16),
        (44, 64 << 16),
    ];
    fd.call(ioctl::SET_PLANE, &mut fixed(&request, 48)).unwrap();
    let screen = rig.emulated.scanout().unwrap();
    assert_eq!(screen.pixel(300, 200), [9, 99, 199]);
    assert_eq!(screen.pixel(363, 231), [9, 99, 199]);
    assert_eq!(screen.pixel(364, 231), [0, 0, 0]);
    let scaled = [(0, 18), (4, 19), (8, small), (24, 64), (28, 32), (40, 16 << 16), (44, 64 << 16)];
    assert_eq!(errno(fd.call(ioctl::SET_PLANE, &mut fixed(&scaled, 48))), EINVAL, "no scaling");
    let outside =
        [(0, 18), (4, 19), (8, small), (16, 790), (24, 64), (28, 32), (40, 32 << 16), (44, 64 << 16)];
    assert_eq!(errno(fd.call(ioctl::SET_PLANE, &mut fixed(&outside, 48))), EINVAL, "off the screen");
    // DPMS off through SET_PROPERTY on the connector: a no-op blank on bochs-display, but accepted.
    let mut dpms = fixed(&[(8, 3), (12, 21)], 16);
    dpms[..8].copy_from_slice(&3u64.to_le_bytes());
    fd.call(ioctl::SET_PROPERTY, &mut dpms).unwrap();
    let mut bad = fixed(&[(8, 3), (12, 21)], 16);
    bad[..8].copy_from_slice(&9u64.to_le_bytes());
    assert_eq!(errno(fd.call(ioctl::SET_PROPERTY, &mut bad)), EINVAL);
}

#[test]
fn the_health_probe_turns_a_yank_into_a_surprise_unplug() {
    let rig = rig();
    let mut fbcond = ConsumerDisplay::start(&rig.kernel, Consumer::Fbcond, 2).unwrap();
    rig.kernel.scheme().activate(2);
    assert!(!displayd_testkit::probe_now(rig.kernel.scheme()), "a present device is left alone");
    rig.emulated.yank(displayd_testkit::emulated::YankedReads::Ones);
    assert!(displayd_testkit::probe_now(rig.kernel.scheme()));
    assert!(rig.kernel.scheme().device().is_none());
    rig.emulated.remove();
    fbcond.frame((0, 0, 8, 8), &solid(8, 8, [1, 1, 1])).expect("fbcond keeps running");
    assert!(!displayd_testkit::probe_now(rig.kernel.scheme()), "nothing left to probe");
}

/// SET_PLANE request: `size` at `crtc` on the screen, from `src` in the framebuffer (16.16 source).
fn set_plane_req(fb: u32, crtc: (u32, u32), size: (u32, u32), src: (u32, u32)) -> Vec<u8> {
    let fields = [
        (0, 18),
        (4, 19),
        (8, fb),
        (16, crtc.0),
        (20, crtc.1),
        (24, size.0),
        (28, size.1),
        (32, src.0 << 16),
        (36, src.1 << 16),
        (40, size.1 << 16),
        (44, size.0 << 16),
    ];
    fixed(&fields, 48)
}

#[test]
fn polling_get_fb_returns_the_callers_own_handle_and_grows_nothing() {
    let rig = rig();
    let fd = rig.kernel.open("v2/3", 1000).unwrap();
    let other = rig.kernel.open("v2/3", 1001).unwrap();
    let dumb = drm::create_dumb(&fd, 64, 64).unwrap();
    let fb = drm::add_fb(&fd, 64, 64, dumb.pitch, 24, dumb.handle).unwrap();
    let before = rig.device.kms.live_objects();
    for _ in 0..1000 {
        assert_eq!(drm::get_fb(&fd, fb).unwrap().handle, dumb.handle, "the handle it was made from");
        assert_eq!(drm::get_fb2(&fd, fb).unwrap().handle, dumb.handle);
        assert_eq!(drm::get_fb(&other, fb).unwrap().handle, 0, "not the caller's: no handle");
    }
    assert_eq!(rig.device.kms.live_objects(), before, "no handle was made");
    drm::create_dumb(&fd, 64, 64).expect("the file's allowance is untouched");
    drm::destroy_dumb(&fd, dumb.handle).unwrap();
    assert_eq!(drm::get_fb(&fd, fb).unwrap().handle, 0, "no handle of the caller's is left to name");
}

#[test]
fn page_flip_of_a_small_plane_copies_only_the_plane() {
    let rig = rig();
    let (fd, _, _) = shown(&rig, [0, 0, 0]);
    let a = framebuffer(&fd, 100, 100, [1, 2, 3]);
    // b: a 100x100 framebuffer at the top-left of an 800x600 buffer whose other pixels are red.
    let dumb = drm::create_dumb(&fd, 800, 600).unwrap();
    let map = fd.mmap(drm::map_dumb(&fd, dumb.handle).unwrap(), dumb.size as usize).unwrap();
    for row in 0..600u32 {
        let mut line = solid(800, 1, [255, 0, 0]);
        if row < 100 {
            line[..400].copy_from_slice(&solid(100, 1, [0, 255, 0]));
        }
        map.write((row * dumb.pitch) as usize, &line);
    }
    let b = drm::add_fb(&fd, 100, 100, dumb.pitch, 24, dumb.handle).unwrap();
    let c = framebuffer(&fd, 100, 100, [4, 5, 6]);
    fd.call(ioctl::SET_PLANE, &mut set_plane_req(a, (0, 0), (100, 100), (0, 0))).unwrap();
    fd.call(ioctl::PAGE_FLIP, &mut fixed(&[(0, 19), (4, c)], 24)).expect("a flip between equal framebuffers");
    fd.call(ioctl::PAGE_FLIP, &mut fixed(&[(0, 19), (4, b)], 24)).unwrap();
    let screen = rig.emulated.scanout().unwrap();
    assert_eq!(screen.pixel(50, 50), [0, 255, 0]);
    assert_eq!(screen.pixel(400, 400), [0, 0, 0], "nothing outside the plane reaches the screen");
}

#[test]
fn taking_the_plane_away_keeps_the_crtc_on() {
    let rig = rig();
    let (fd, first, _) = shown(&rig, [9, 9, 9]);
    let a = framebuffer(&fd, 100, 100, [1, 2, 3]);
    fd.call(ioctl::SET_PLANE, &mut set_plane_req(0, (0, 0), (0, 0), (0, 0))).unwrap();
    assert_eq!(rig.emulated.scanout().expect("the mode stays").pixel(5, 5), [0, 0, 0], "no plane: black");
    fd.call(ioctl::SET_PLANE, &mut set_plane_req(a, (10, 10), (100, 100), (0, 0))).expect("a plane again");
    assert_eq!(rig.emulated.scanout().unwrap().pixel(10, 10), [1, 2, 3]);
    drm::set_crtc(&fd, 19, first, &[21], Some(&shown_mode(&fd))).unwrap();
    drm::rm_fb(&fd, first).unwrap();
    assert_eq!(rig.emulated.scanout().expect("the mode stays").pixel(5, 5), [0, 0, 0]);
    fd.call(ioctl::SET_PLANE, &mut set_plane_req(a, (10, 10), (100, 100), (0, 0))).expect("after RM_FB too");
}

/// The 800x600 mode record `shown` uses.
fn shown_mode(fd: &displayd_testkit::kernel::Fd) -> [u8; 68] {
    let connector = drm::get_connector(fd, 21, false).unwrap();
    connector.modes[(0..connector.modes.len()).find(|&i| connector.size(i) == Some((800, 600))).unwrap()]
}

#[test]
fn a_closed_framebuffer_on_screen_outlives_its_file_until_the_plane_moves() {
    let rig = rig();
    let (fd, first, _) = shown(&rig, [50, 60, 70]);
    fd.call(ioctl::CLOSE_FB, &mut fixed(&[(0, first)], 8)).unwrap();
    drop(fd);
    assert_eq!(rig.emulated.scanout().expect("still shown").pixel(5, 5), [50, 60, 70]);
    assert_eq!(rig.device.kms.live_objects().0, 1, "kept only because the plane shows it");
    let next = rig.kernel.open("v2/3", 1000).unwrap();
    let fb = framebuffer(&next, 800, 600, [1, 1, 1]);
    drm::set_crtc(&next, 19, fb, &[21], Some(&shown_mode(&next))).unwrap();
    assert_eq!(rig.device.kms.live_objects().0, 1, "gone once the plane moved off it");
}

#[test]
fn set_crtc_needs_a_framebuffer_for_a_mode_and_never_shows_another_vts_pixels() {
    let rig = rig();
    let (_alice, _, mode) = shown(&rig, [0xaa, 0xbb, 0xcc]); // VT 3, active
    let bob = rig.kernel.open("v2/4", 1001).unwrap();
    rig.kernel.scheme().activate(4);
    assert_eq!(errno(drm::set_crtc(&bob, 19, 0, &[21], Some(&mode))), ENOENT, "as in Linux");
    assert_eq!(
        errno(drm::set_crtc(&bob, 19, u32::MAX, &[21], Some(&mode))),
        EINVAL,
        "no framebuffer to keep (Linux: the CRTC has no current framebuffer)"
    );
    // A small plane on VT 4: around it the screen is black, not what VT 3 left in VRAM.
    let small = framebuffer(&bob, 800, 600, [1, 2, 3]);
    drm::set_crtc(&bob, 19, small, &[21], Some(&mode)).unwrap();
    let tiny = framebuffer(&bob, 64, 64, [7, 7, 7]);
    bob.call(ioctl::SET_PLANE, &mut set_plane_req(tiny, (100, 100), (64, 64), (0, 0))).unwrap();
    rig.kernel.scheme().activate(3);
    rig.kernel.scheme().activate(4);
    let screen = rig.emulated.scanout().unwrap();
    assert_eq!(screen.pixel(100, 100), [7, 7, 7]);
    assert_eq!(screen.pixel(10, 10), [0, 0, 0], "nothing of VT 3 around VT 4's plane");
}

#[test]
fn vt_numbers_are_canonical_and_bounded_and_per_vt_state_goes_with_the_last_handle() {
    let rig = rig();
    let (_shown_fd, _, mode) = shown(&rig, [3, 3, 3]); // VT 3, active
    let baseline = (rig.device.kms.vt_states(), rig.device.kms.live_objects());
    assert_eq!(baseline.0, 1);
    for bad in
        ["v2/+3", "v2/0003", "v2/03", "v2/", "v2/-1", "v2/3 ", "v2/ 3", "v2/3a", "v2/4097", "v2/300000"]
    {
        assert_eq!(errno(rig.kernel.open(bad, 1000)), EINVAL, "{bad}");
    }
    assert_eq!(rig.kernel.open("v2/0", 1000).unwrap().path().unwrap(), "/scheme/display.bochs/v2/0");
    // Every VT number once, one at a time, each with a mode set on a framebuffer closed while shown.
    for vt in 0..=displayd::kms::MAX_VT {
        let fd = rig.kernel.open(&format!("v2/{vt}"), 1000).unwrap();
        if vt % 512 == 1 {
            let fb = framebuffer(&fd, 800, 600, [1, 2, 3]);
            drm::set_crtc(&fd, 19, fb, &[21], Some(&mode)).unwrap();
            fd.call(ioctl::CLOSE_FB, &mut fixed(&[(0, fb)], 8)).unwrap();
        }
    }
    assert_eq!((rig.device.kms.vt_states(), rig.device.kms.live_objects()), baseline);
    // Many at once, then all closed.
    let open: Vec<_> = (100..400).map(|vt| rig.kernel.open(&format!("v2/{vt}"), 1000).unwrap()).collect();
    assert_eq!(rig.device.kms.vt_states(), baseline.0 + 300);
    drop(open);
    assert_eq!((rig.device.kms.vt_states(), rig.device.kms.live_objects()), baseline);
    // Switching away from a VT nobody holds forgets it too.
    rig.kernel.scheme().activate(7);
    rig.kernel.scheme().activate(3);
    assert_eq!(rig.device.kms.vt_states(), baseline.0);
}

#[test]
fn framebuffers_per_file_are_bounded() {
    let rig = rig();
    let fd = rig.kernel.open("v2/3", 1000).unwrap();
    let dumb = drm::create_dumb(&fd, 64, 64).unwrap();
    for _ in 0..displayd::kms::MAX_FRAMEBUFFERS_PER_FILE {
        drm::add_fb(&fd, 64, 64, dumb.pitch, 24, dumb.handle).unwrap();
    }
    assert_eq!(errno(drm::add_fb(&fd, 64, 64, dumb.pitch, 24, dumb.handle)), syscall::error::ENOSPC);
    let other = rig.kernel.open("v2/3", 1001).unwrap();
    let theirs = drm::create_dumb(&other, 64, 64).unwrap();
    drm::add_fb(&other, 64, 64, theirs.pitch, 24, theirs.handle).expect("another file has its own allowance");
}

#[test]
fn unplugging_a_device_object_that_is_no_longer_bound_leaves_the_bound_one_alone() {
    use displayd::device::Unplug;
    use displayd::device_object::Absent;
    use displayd_testkit::emulated::YankedReads;
    let rig = rig();
    rig.kernel.open("control", 0).unwrap().write(b"unplug").unwrap();
    rig.emulated.remove();
    assert_eq!(rig.device.check_health(), Some(Absent::AlreadyUnplugged));
    let (new_emulated, new_device, _) = replug(&rig.kernel, 2);
    // A late remover of device 1 (a probe that saw it go) names it: device 2 stays bound.
    assert!(!rig.kernel.scheme().unplug(&rig.device, Unplug::Surprise), "device 1 was no longer bound");
    assert!(Arc::ptr_eq(&rig.kernel.scheme().device().unwrap(), &new_device));
    assert_eq!(new_device.check_health(), None, "device 2 is untouched");
    new_emulated.yank(YankedReads::Zeros);
    assert_eq!(new_device.check_health(), Some(Absent::Vanished(0)));
    assert!(rig.kernel.scheme().unplug(&new_device, Unplug::Surprise), "device 2 was the bound one");
    assert!(rig.kernel.scheme().device().is_none());
    new_emulated.remove();
}

#[test]
fn a_bind_whose_probe_fails_runs_the_managed_releases_at_once() {
    let kernel = Kernel::new(DisplayScheme::new("display.bochs")).unwrap();
    let emulated = EmulatedDevice::new(Config::default()).unwrap();
    emulated.yank(displayd_testkit::emulated::YankedReads::Ones);
    let released = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&released);
    assert!(plug(&kernel, &emulated, 1, move || flag.store(true, SeqCst)).is_err());
    assert!(released.load(SeqCst), "the releases ran when the bind failed");
    assert!(kernel.scheme().device().is_none());
}
