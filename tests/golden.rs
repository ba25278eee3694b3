//! Golden wire vectors: exact payload bytes in and out of the dispatcher for a few ioctls, laid out
//! by hand from the reference's field table (protocol reference §4.4–§4.6), the inputd VtEvent
//! and the readiness byte. A layout change anywhere shows up here as a byte diff.
#![cfg(not(loom))]

use displayd::device::Unplug;
use displayd::kms::ioctl;
use displayd::platform::startup::{decode_vt_events, VtEvent, READY_BYTE};
use displayd::scheme::DisplayScheme;
use displayd_testkit::emulated::{Config, EmulatedDevice};
use displayd_testkit::kernel::{Fd, Kernel};
use displayd_testkit::{drm, plug};
use syscall::error::{EAGAIN, EBUSY, EINVAL, ENODEV, ENOENT, ENOSPC, ERANGE};
use syscall::flag::EventFlags;

fn hex(s: &str) -> Vec<u8> {
    let digits: String = s.chars().filter(char::is_ascii_hexdigit).collect();
    (0..digits.len()).step_by(2).map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap()).collect()
}

/// Sends `request` (hex) as ioctl `nr` and returns the payload as edited in place.
fn exchange(fd: &Fd, nr: u64, request: &str) -> Vec<u8> {
    let mut payload = hex(request);
    assert_eq!(fd.call(nr, &mut payload).unwrap(), 0, "success returns 0");
    payload
}

fn setup() -> (Kernel, EmulatedDevice, Fd) {
    let kernel = Kernel::new(DisplayScheme::new("display.bochs")).unwrap();
    let emulated = EmulatedDevice::new(Config::default()).unwrap();
    plug(&kernel, &emulated, 1, || {}).unwrap();
    let fd = kernel.open("v2/3", 1000).unwrap();
    (kernel, emulated, fd)
}

#[test]
fn ioctl_payloads_in_and_out_are_byte_exact() {
    let (_kernel, _emulated, fd) = setup();
    // GET_CAP(DUMB_BUFFER): capability u64, value u64 → 1.
    assert_eq!(
        exchange(&fd, ioctl::GET_CAP, "0100000000000000 0000000000000000"),
        hex("0100000000000000 0100000000000000")
    );
    // MODE_CARD_RES count probe: 4 counts then min/max width/height.
    assert_eq!(
        exchange(&fd, ioctl::MODE_CARD_RES, &"00".repeat(32)),
        hex("00000000 01000000 01000000 01000000 00000000 803e0000 00000000 e02e0000")
    );
    // The second MODE_CARD_RES call carries the arrays inline: crtc 19, connector 21, encoder 20.
    assert_eq!(
        exchange(&fd, ioctl::MODE_CARD_RES, &format!("00000000 01000000 01000000 01000000 {} 00000000 00000000 00000000", "00".repeat(16))),
        hex("00000000 01000000 01000000 01000000 00000000 803e0000 00000000 e02e0000 13000000 15000000 14000000")
    );
    // GET_ENCODER(20): type DAC, no CRTC yet, possible_crtcs 1, possible_clones 1.
    assert_eq!(
        exchange(&fd, ioctl::GET_ENCODER, &format!("14000000{}", "00".repeat(16))),
        hex("14000000 01000000 00000000 01000000 01000000")
    );
    // GET_PLANE_RES with room for one id: plane 18.
    assert_eq!(exchange(&fd, ioctl::GET_PLANE_RES, "01000000 00000000"), hex("01000000 12000000"));
    // CREATE_DUMB 640x480x32: height, width, bpp, flags → handle 1, pitch 2560, size 1228800.
    assert_eq!(
        exchange(
            &fd,
            ioctl::CREATE_DUMB,
            "e0010000 80020000 20000000 00000000 00000000 00000000 0000000000000000"
        ),
        hex("e0010000 80020000 20000000 00000000 01000000 000a0000 00c0120000000000")
    );
    // MAP_DUMB(1): handle, pad, offset u64 → handle << 28.
    assert_eq!(
        exchange(&fd, ioctl::MAP_DUMB, "01000000 00000000 0000000000000000"),
        hex("01000000 00000000 0000001000000000")
    );
    // ADD_FB 640x480, pitch 2560, bpp 32, depth 24, handle 1 → fb id 23 (22 is the EDID blob).
    assert_eq!(
        exchange(&fd, ioctl::ADD_FB, "00000000 80020000 e0010000 000a0000 20000000 18000000 01000000"),
        hex("17000000 80020000 e0010000 000a0000 20000000 18000000 01000000")
    );
    // GET_CONNECTOR(21) probe: counts only, connected, virtual, 530x300 mm from the EDID.
    let probe =
        exchange(&fd, ioctl::GET_CONNECTOR, &format!("{}15000000{}", "00".repeat(16), "00".repeat(28)));
    assert_eq!(
        probe,
        hex("06000000 04000000 01000000 00000000 15000000 0f000000 01000000 01000000 12020000 2c010000 00000000 00000000")
    );
}

#[test]
fn the_preferred_mode_record_is_byte_exact() {
    let (_kernel, _emulated, fd) = setup();
    // One mode and one encoder: the preferred 1280x800 at 60 Hz (synthesised reduced blanking).
    let request = format!(
        "01000000 00000000 01000000 00000000 15000000 {} {} {}",
        "00".repeat(28),
        "00".repeat(4),
        "00".repeat(68)
    );
    let reply = exchange(&fd, ioctl::GET_CONNECTOR, &request);
    let mode = &reply[52..120];
    let u16_at = |at: usize| u16::from_le_bytes([mode[at], mode[at + 1]]);
    let u32_at = |at: usize| u32::from_le_bytes(mode[at..at + 4].try_into().unwrap());
    assert_eq!((u16_at(4), u16_at(6), u16_at(8), u16_at(10)), (1280, 1328, 1360, 1440), "horizontal timing");
    assert_eq!((u16_at(14), u16_at(16), u16_at(18), u16_at(20)), (800, 803, 809, 832), "vertical timing");
    assert_eq!(u32_at(0), 71890, "pixel clock in kHz, a multiple of 10 as EDID stores it");
    assert_eq!((u16_at(12), u16_at(22)), (0, 0), "hskew, vscan");
    assert_eq!((u32_at(24), u32_at(28), u32_at(32)), (60, 0, 72), "vrefresh, flags, type PREFERRED|DRIVER");
    assert_eq!(&mode[36..44], b"1280x800");
    assert!(mode[44..68].iter().all(|&b| b == 0), "name NUL-padded");
}

#[test]
fn inputd_events_and_the_readiness_byte_match_the_reference() {
    assert_eq!(decode_vt_events(&hex("0000000000000000 0300000000000000")), Some(vec![VtEvent::Activate(3)]));
    assert_eq!(READY_BYTE, [0x00]);
}

/// Sends `request` (hex) as ioctl `nr` and returns the errno it is refused with.
fn refused(fd: &Fd, nr: u64, request: &str) -> i32 {
    let mut payload = hex(request);
    fd.call(nr, &mut payload).expect_err("the call must be refused").errno
}

fn le(value: u32) -> String {
    value.to_le_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// A 800x600 XRGB8888 framebuffer on dumb handle 1 (fb 23), shown by a 800x600 mode on VT 3
/// (active); returns the mode record.
fn shown(kernel: &Kernel, fd: &Fd) -> [u8; 68] {
    let connector = drm::get_connector(fd, 21, true).unwrap();
    let mode =
        connector.modes[(0..connector.modes.len()).find(|&i| connector.size(i) == Some((800, 600))).unwrap()];
    let dumb = drm::create_dumb(fd, 800, 600).unwrap();
    assert_eq!(drm::add_fb(fd, 800, 600, dumb.pitch, 24, dumb.handle).unwrap(), 23);
    drm::set_crtc(fd, 19, 23, &[21], Some(&mode)).unwrap();
    kernel.scheme().activate(3);
    mode
}

#[test]
fn page_flip_events_are_linux_drm_event_vblanks_read_whole_one_pending_per_crtc() {
    let (kernel, _emulated, fd) = setup();
    shown(&kernel, &fd);
    let second = drm::add_fb(&fd, 800, 600, 3200, 24, 1).unwrap(); // fb 24, same buffer
    assert_eq!(second, 24);
    assert_eq!(fd.fevent(EventFlags::EVENT_READ).unwrap(), EventFlags::empty(), "nothing to read yet");
    assert_eq!(fd.read(&mut [0; 64]).unwrap_err().errno, EAGAIN, "no event: EAGAIN, never a block");
    // PAGE_FLIP: crtc 19, fb 24, flags EVENT, reserved 0, user_data 0x1122334455667788.
    let request = "13000000 18000000 01000000 00000000 8877665544332211";
    assert_eq!(exchange(&fd, ioctl::PAGE_FLIP, request), hex(request), "nothing written back");
    assert_eq!(kernel.scheme().take_readable(), vec![fd.id()], "one readiness signal for the new event");
    assert_eq!(kernel.scheme().take_readable(), Vec::<usize>::new());
    assert_eq!(fd.fevent(EventFlags::EVENT_READ).unwrap(), EventFlags::EVENT_READ);
    // A second flip while the event is unread is EBUSY, from this file or another on the VT.
    assert_eq!(refused(&fd, ioctl::PAGE_FLIP, "13000000 17000000 00000000 00000000 0000000000000000"), EBUSY);
    let other = kernel.open("v2/3", 1001).unwrap();
    let theirs = drm::create_dumb(&other, 800, 600).unwrap();
    let their_fb = drm::add_fb(&other, 800, 600, theirs.pitch, 24, theirs.handle).unwrap();
    assert_eq!(errno(drm::page_flip(&other, 19, their_fb, 0, 0)), EBUSY);
    assert_eq!(fd.read(&mut [0; 31]).unwrap_err().errno, EINVAL, "a buffer too small for one event");
    let mut event = [0u8; 40];
    assert_eq!(fd.read(&mut event).unwrap(), 32, "whole events only");
    // drm_event_vblank: type FLIP_COMPLETE (2), length 32, user_data, tv_sec, tv_usec, sequence 1,
    // crtc_id 19.
    assert_eq!(&event[..16], &hex("02000000 20000000 8877665544332211")[..]);
    let (tv_sec, tv_usec) = (u32_at(&event, 16), u32_at(&event, 20));
    assert!(tv_sec < 60 && tv_usec < 1_000_000, "counted from the device's bind: {tv_sec}.{tv_usec:06}");
    assert_eq!(&event[24..40], &hex("01000000 13000000 00000000 00000000")[..]);
    assert_eq!(fd.read(&mut event).unwrap_err().errno, EAGAIN);
    assert_eq!(fd.fevent(EventFlags::EVENT_READ).unwrap(), EventFlags::empty());
    // Read: the next flip goes through; its event counts on, and is still delivered after an unplug.
    exchange(&fd, ioctl::PAGE_FLIP, "13000000 17000000 01000000 00000000 0700000000000000");
    kernel.scheme().unplug_bound(Unplug::Orderly);
    let events = drm::read_events(&fd).unwrap();
    assert_eq!((events.len(), events[0].user_data, events[0].sequence, events[0].crtc_id), (1, 7, 2, 19));
    assert!((events[0].tv_sec, events[0].tv_usec) >= (tv_sec, tv_usec), "timestamps never go back");
    assert_eq!(
        fd.read(&mut event).unwrap_err().errno,
        EAGAIN,
        "then EAGAIN: a dead device never blocks a read"
    );
    assert_eq!(refused(&fd, ioctl::PAGE_FLIP, request), ENODEV);
}

#[test]
fn a_handle_is_listed_readable_once_however_many_events_it_got_meanwhile() {
    let (kernel, _emulated, fd) = setup();
    shown(&kernel, &fd);
    assert_eq!(drm::add_fb(&fd, 800, 600, 3200, 24, 1).unwrap(), 24);
    for (fb, user_data) in [(24, 1), (23, 2), (24, 3)] {
        drm::page_flip(&fd, 19, fb, 1, user_data).unwrap();
        assert_eq!(drm::read_events(&fd).unwrap().len(), 1, "flip {user_data}'s event");
    }
    assert_eq!(kernel.scheme().take_readable(), vec![fd.id()], "three events, one entry");
}

#[test]
fn page_flip_refusals_follow_linux() {
    let (kernel, _emulated, fd) = setup();
    let dumb = drm::create_dumb(&fd, 800, 600).unwrap();
    drm::add_fb(&fd, 800, 600, dumb.pitch, 24, dumb.handle).unwrap(); // fb 23

    // CRTC off (no framebuffer on its plane): EBUSY.
    assert_eq!(refused(&fd, ioctl::PAGE_FLIP, "13000000 17000000 00000000 00000000 0000000000000000"), EBUSY);
    shown_again(&kernel, &fd);
    // A framebuffer smaller than the 800x600 viewport: ENOSPC, as Linux's source-coordinate check.
    let small = drm::add_fb(&fd, 400, 600, dumb.pitch, 24, dumb.handle).unwrap(); // fb 24
    assert_eq!(
        refused(&fd, ioctl::PAGE_FLIP, &format!("13000000 {} 00000000 00000000 0000000000000000", le(small))),
        ENOSPC
    );
    // Another pixel format than the one shown (ARGB8888 for XRGB8888): EINVAL.
    let argb = drm::add_fb(&fd, 800, 600, dumb.pitch, 32, dumb.handle).unwrap();
    assert_eq!(
        refused(&fd, ioctl::PAGE_FLIP, &format!("13000000 {} 00000000 00000000 0000000000000000", le(argb))),
        EINVAL
    );
    // Unknown flags and a non-zero reserved field: EINVAL; another CRTC: ENOENT.
    assert_eq!(
        refused(&fd, ioctl::PAGE_FLIP, "13000000 17000000 04000000 00000000 0000000000000000"),
        EINVAL
    );
    assert_eq!(
        refused(&fd, ioctl::PAGE_FLIP, "13000000 17000000 00000000 01000000 0000000000000000"),
        EINVAL
    );
    assert_eq!(
        refused(&fd, ioctl::PAGE_FLIP, "14000000 17000000 00000000 00000000 0000000000000000"),
        ENOENT
    );
}

/// Shows fb 23 (800x600 on handle 1) on VT 3.
fn shown_again(kernel: &Kernel, fd: &Fd) {
    let connector = drm::get_connector(fd, 21, true).unwrap();
    let mode =
        connector.modes[(0..connector.modes.len()).find(|&i| connector.size(i) == Some((800, 600))).unwrap()];
    drm::set_crtc(fd, 19, 23, &[21], Some(&mode)).unwrap();
    kernel.scheme().activate(3);
}

#[test]
fn the_edid_blob_is_128_bytes_per_block_it_declares() {
    let (_kernel, _emulated, fd) = setup();
    // GET_PROP_BLOB(22) length probe: the base block, no extensions.
    assert_eq!(exchange(&fd, ioctl::GET_PROP_BLOB, "16000000 00000000"), hex("16000000 80000000"));
    let kernel = Kernel::new(DisplayScheme::new("display.bochs")).unwrap();
    let emulated = EmulatedDevice::new(Config { edid_extensions: 1, ..Config::default() }).unwrap();
    plug(&kernel, &emulated, 1, || {}).unwrap();
    let fd = kernel.open("v2/3", 1000).unwrap();
    assert_eq!(exchange(&fd, ioctl::GET_PROP_BLOB, "16000000 00000000"), hex("16000000 00010000"));
    let blob = exchange(&fd, ioctl::GET_PROP_BLOB, &format!("16000000 00010000 {}", "00".repeat(256)));
    assert_eq!((blob[8 + 126], blob[8 + 128]), (1, 0x02), "one extension, a CTA block");
}

#[test]
fn get_fb_answers_the_callers_own_handle_every_time_and_0_to_others() {
    let (kernel, _emulated, fd) = setup();
    let dumb = drm::create_dumb(&fd, 640, 480).unwrap();
    drm::add_fb(&fd, 640, 480, dumb.pitch, 24, dumb.handle).unwrap(); // fb 23 on handle 1
    for _ in 0..1000 {
        // GET_FB(23): width, height, pitch, bpp 32, depth 24, handle 1.
        assert_eq!(
            exchange(&fd, ioctl::GET_FB, &format!("17000000{}", "00".repeat(24))),
            hex("17000000 80020000 e0010000 000a0000 20000000 18000000 01000000")
        );
        // GET_FB2(23): XRGB8888, handles [1, 0, 0, 0], pitches [2560, ...], offsets and modifiers 0.
        let reply = exchange(&fd, ioctl::GET_FB2, &format!("17000000{}", "00".repeat(100)));
        assert_eq!(
            &reply[..40],
            &hex("17000000 80020000 e0010000 58523234 00000000 01000000 00000000 00000000 00000000 000a0000")
                [..]
        );
        assert!(reply[40..].iter().all(|&b| b == 0));
    }
    let other = kernel.open("v2/3", 1001).unwrap();
    assert_eq!(
        exchange(&other, ioctl::GET_FB, &format!("17000000{}", "00".repeat(24))),
        hex("17000000 80020000 e0010000 000a0000 20000000 18000000 00000000")
    );
    drm::create_dumb(&fd, 640, 480).expect("no handle was charged by the polls");
}

#[test]
fn after_an_unplug_enodev_comes_before_any_payload_check_and_the_policy_calls_keep_their_answers() {
    let (kernel, _emulated, fd) = setup();
    let dumb = drm::create_dumb(&fd, 800, 600).unwrap();
    drm::add_fb(&fd, 800, 600, dumb.pitch, 24, dumb.handle).unwrap(); // fb 23

    // Before: an unknown number and malformed payloads are EINVAL.
    assert_eq!(refused(&fd, 0x42, "00000000"), EINVAL);
    assert_eq!(refused(&fd, ioctl::GET_CAP, "0100000000000000 00000000000000"), EINVAL);
    kernel.scheme().unplug_bound(Unplug::Orderly);
    // After: ENODEV first, whatever the number or payload.
    assert_eq!(refused(&fd, 0x42, "00000000"), ENODEV);
    assert_eq!(refused(&fd, ioctl::GET_CAP, "0100000000000000 00000000000000"), ENODEV);
    assert_eq!(refused(&fd, ioctl::SET_CRTC, "01000000"), ENODEV);
    assert_eq!(refused(&fd, ioctl::MODE_CARD_RES, &"00".repeat(32)), ENODEV);
    let mut no_number = hex("00000000");
    assert_eq!(kernel_call_without_number(&kernel, &fd, &mut no_number), ENODEV);
    // The policy calls answer as before: DIRTYFB accepted (and a malformed one still EINVAL),
    // GET_CONNECTOR disconnected, the releasing calls free.
    assert_eq!(
        exchange(&fd, ioctl::DIRTYFB, "17000000 00000000 00000000 00000000"),
        hex("17000000 00000000 00000000 00000000")
    );
    assert_eq!(refused(&fd, ioctl::DIRTYFB, "17000000 00000000 00000000 01000000"), EINVAL);
    let probe =
        exchange(&fd, ioctl::GET_CONNECTOR, &format!("{}15000000{}", "00".repeat(16), "00".repeat(28)));
    assert_eq!(u32_at(&probe, 28), 2, "disconnected");
    assert_eq!(exchange(&fd, ioctl::CLOSE_FB, "17000000 00000000"), hex("17000000 00000000"));
    assert_eq!(exchange(&fd, ioctl::DESTROY_DUMB, "01000000"), hex("01000000"));
    assert_eq!(refused(&fd, ioctl::RM_FB, "17000000"), ENOENT, "closed already: gone for clients");
}

/// A `call` whose metadata carries no ioctl number at all.
fn kernel_call_without_number(kernel: &Kernel, fd: &Fd, payload: &mut [u8]) -> i32 {
    let ctx = displayd_testkit::kernel::caller(1000);
    kernel.scheme().call(fd.id(), payload, &[], &ctx).unwrap_err().errno
}

#[test]
fn add_fb2_checks_unused_planes_and_modifiers_as_linux_does() {
    let (_kernel, _emulated, fd) = setup();
    drm::create_dumb(&fd, 64, 64).unwrap(); // handle 1, pitch 256

    // ADD_FB2 64x64 XRGB8888 on handle 1, pitch 256; `flags`, and one extra field set at `at`.
    let add_fb2 = |flags: u32, at: usize, value: u64| {
        let mut p = vec![0u8; 104];
        for (offset, v) in [(4, 64u32), (8, 64), (12, 0x3432_5258), (16, flags), (20, 1), (36, 256)] {
            p[offset..offset + 4].copy_from_slice(&v.to_le_bytes());
        }
        let width = if at >= 72 { 8 } else { 4 };
        p[at..at + width].copy_from_slice(&value.to_le_bytes()[..width]);
        fd.call(ioctl::ADD_FB2, &mut p).map(|_| u32_at(&p, 0)).map_err(|e| e.errno)
    };
    const MODIFIERS: u32 = 2;
    // Without DRM_MODE_FB_MODIFIERS, old clients' leftovers in unused planes are ignored...
    for at in [24, 40, 56] {
        assert!(add_fb2(0, at, 1).is_ok(), "plane 1 field at {at}, no flag");
    }
    // ...with it they are refused: handles, pitches and offsets of planes 1-3.
    for at in [24, 28, 32, 40, 44, 48, 56, 60, 64] {
        assert_eq!(add_fb2(MODIFIERS, at, 1), Err(EINVAL), "field at {at} with the flag");
    }
    // A non-zero modifier is refused on any plane, with the flag (only linear is scanned out) or
    // without it (a modifier needs the flag).
    for at in [72, 80, 88, 96] {
        assert_eq!(add_fb2(0, at, 1), Err(EINVAL), "modifier at {at}, no flag");
        assert_eq!(add_fb2(MODIFIERS, at, 1), Err(EINVAL), "modifier at {at}, flag");
    }
    assert!(add_fb2(MODIFIERS, 72, 0).is_ok(), "linear with the flag");
    assert_eq!(add_fb2(1, 0, 0), Err(EINVAL), "interlaced");
}

#[test]
fn set_crtc_refusals_follow_linux() {
    let (kernel, _emulated, fd) = setup();
    let mode = shown(&kernel, &fd);
    let mode_hex: String = mode.iter().map(|b| format!("{b:02x}")).collect();
    // SET_CRTC on the wire (drm_mode_crtc without its pointer): count_connectors, crtc_id, fb_id,
    // x, y, gamma_size, mode_valid, the mode record; then the connector ids.
    let set_crtc = |count: u32, fb: u32, x: u32, mode_valid: u32, connectors: &str| {
        format!(
            "{} 13000000 {} {} 00000000 00000000 {} {mode_hex} {connectors}",
            le(count),
            le(fb),
            le(x),
            le(mode_valid)
        )
    };
    let ok = set_crtc(1, 23, 0, 1, "15000000");
    assert_eq!(exchange(&fd, ioctl::SET_CRTC, &ok), hex(&ok));
    assert_eq!(refused(&fd, ioctl::SET_CRTC, &set_crtc(0, 23, 0, 1, "")), EINVAL, "a mode and no connector");
    assert_eq!(
        refused(&fd, ioctl::SET_CRTC, &set_crtc(1, 23, 0, 0, "15000000")),
        EINVAL,
        "a connector and no mode"
    );
    assert_eq!(
        refused(&fd, ioctl::SET_CRTC, &set_crtc(2, 23, 0, 1, "15000000 15000000")),
        EINVAL,
        "more connectors than exist"
    );
    assert_eq!(
        refused(&fd, ioctl::SET_CRTC, &set_crtc(1, 23, 0, 1, "16000000")),
        ENOENT,
        "an unknown connector"
    );
    assert_eq!(
        refused(&fd, ioctl::SET_CRTC, &set_crtc(1, 23, 0x1_0000, 1, "15000000")),
        ERANGE,
        "x past 16 bits"
    );
    assert_eq!(
        refused(&fd, ioctl::SET_CRTC, &set_crtc(1, 23, 1, 1, "15000000")),
        ENOSPC,
        "the viewport leaves the fb"
    );
    let off = set_crtc(0, 0, 0, 0, "");
    assert_eq!(exchange(&fd, ioctl::SET_CRTC, &off), hex(&off), "off: no mode, no connector");
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

fn errno<T>(result: syscall::error::Result<T>) -> i32 {
    result.err().expect("the call must be refused").errno
}
