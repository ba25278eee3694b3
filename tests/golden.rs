//! Golden wire vectors: exact payload bytes in and out of the dispatcher for a few ioctls, laid out
//! by hand from the reference's field table (protocol reference §4.4–§4.6), the inputd VtEvent
//! and the readiness byte. A layout change anywhere shows up here as a byte diff.
#![cfg(not(loom))]

use displayd::device::emulated::{Config, EmulatedDevice};
use displayd::kms::codec::ioctl;
use displayd::platform::host::kernel::{Fd, Kernel};
use displayd::platform::host::plug;
use displayd::platform::startup::{decode_vt_events, VtEvent, READY_BYTE};
use displayd::scheme::DisplayScheme;

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
    let slot = EmulatedDevice::new(Config::default()).unwrap();
    plug(&kernel, &slot, 1, || {}).unwrap();
    let fd = kernel.open("v2/3", 1000).unwrap();
    (kernel, slot, fd)
}

#[test]
fn ioctl_payloads_in_and_out_are_byte_exact() {
    let (_kernel, _slot, fd) = setup();
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
    let (_kernel, _slot, fd) = setup();
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
