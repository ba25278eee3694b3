//! The Bochs driver against the emulated adapter: probe, modes, mode set, flush, pan, blank,
//! the health probe, unplug, and the tripwire that makes a use-after-unplug crash.
#![cfg(not(loom))]

use displayd::device::bochs::{Bochs, Hardware, Options, PciId, QEMU_BOCHS_DISPLAY};
use displayd::device::regs::*;
use displayd::device::{Adapter, DeviceError, Health, Rect, Unplug};
use displayd_testkit::emulated::{Config, EmulatedDevice, YankedReads};

const BOCHS_DISPLAY: PciId = QEMU_BOCHS_DISPLAY;
const STDVGA: PciId = PciId { subclass: 0, ..BOCHS_DISPLAY };

fn device(config: Config) -> EmulatedDevice {
    EmulatedDevice::new(config).expect("emulated VRAM mapping")
}

fn probe(dev: &EmulatedDevice, pci: PciId, options: Options) -> Result<Bochs, DeviceError> {
    let (vram, mmio) = dev.map_bars();
    Bochs::probe(pci, Hardware { mmio, vram }, options)
}

fn sizes(bochs: &Bochs) -> Vec<(u16, u16)> {
    bochs.modes().iter().map(|m| (m.hdisplay, m.vdisplay)).collect()
}

/// Flushes a whole `width`×`height` frame of one colour.
fn fill(bochs: &Bochs, width: u32, height: u32, rgb: [u8; 3]) {
    bochs.flush(&shadow(width, height, rgb), width as usize * 4, Rect { x: 0, y: 0, width, height }).unwrap();
}

/// A shadow buffer filled with one XRGB8888 colour.
fn shadow(width: u32, height: u32, rgb: [u8; 3]) -> Vec<u8> {
    [rgb[2], rgb[1], rgb[0], 0].repeat((width * height) as usize)
}

#[test]
fn probe_reads_modes_from_edid_preferred_first() {
    let dev = device(Config::default());
    let bochs = probe(&dev, BOCHS_DISPLAY, Options::default()).unwrap();
    assert_eq!(sizes(&bochs)[0], (1280, 800));
    assert!(bochs.modes()[0].preferred);
    assert!(sizes(&bochs).contains(&(1920, 1080)));
    assert_eq!(bochs.edid().map(<[u8]>::len), Some(128), "a base block declaring no extensions");
    assert_eq!(bochs.vram_bytes(), 16 << 20);
    assert_eq!(dev.dispi(DISPI_ENABLE), 0, "probe leaves the display alone");
}

#[test]
fn without_edid_the_fallback_list_has_the_configured_preferred_mode() {
    let dev = device(Config { edid_preferred: None, ..Config::default() });
    let bochs = probe(&dev, BOCHS_DISPLAY, Options::default()).unwrap();
    assert_eq!(sizes(&bochs)[0], (1024, 768));
    assert!(bochs.edid().is_none());
    let bochs = probe(&dev, BOCHS_DISPLAY, Options { fallback_preferred: (1920, 1080) }).unwrap();
    assert_eq!(sizes(&bochs)[0], (1920, 1080));
    assert_eq!(sizes(&bochs).iter().filter(|&&s| s == (1920, 1080)).count(), 1, "listed once");
    assert!(sizes(&bochs).iter().all(|&(w, h)| bochs.fits(w, h)), "every offered mode fits 16 MiB");
    assert!(!sizes(&bochs).contains(&(8192, 4608)), "too big for 16 MiB");
}

#[test]
fn probe_refuses_other_devices_and_absent_ones() {
    let dev = device(Config::default());
    let other = PciId { vendor: 0x1af4, device: 0x1050, ..BOCHS_DISPLAY };
    assert_eq!(probe(&dev, other, Options::default()).err(), Some(DeviceError::Unsupported));
    let simics = PciId { vendor: 0x4321, ..BOCHS_DISPLAY };
    assert!(probe(&dev, simics, Options::default()).is_ok());
    dev.yank(YankedReads::Ones);
    assert_eq!(probe(&dev, BOCHS_DISPLAY, Options::default()).err(), Some(DeviceError::BadId(0xffff)));
}

#[test]
fn vram_size_is_the_smaller_of_bar_and_register() {
    let dev = device(Config { vram_bytes: 4 << 20, ..Config::default() });
    let bochs = probe(&dev, BOCHS_DISPLAY, Options::default()).unwrap();
    assert_eq!(bochs.vram_bytes(), 4 << 20);
    // 1024 x 1024 x 4 is exactly 4 MiB: the limit is inclusive.
    assert!(bochs.fits(1024, 1024));
    assert!(!bochs.fits(1024, 1032));
    assert!(!bochs.fits(1020, 768), "width not a multiple of 8");
    assert!(!bochs.fits(56, 64) && !bochs.fits(64, 56), "below 64x64");
    assert_eq!(bochs.set_mode(1024, 1032).err(), Some(DeviceError::ModeRejected));
    assert!(bochs.set_mode(1024, 1024).is_ok());
    assert!(!sizes(&bochs).contains(&(1920, 1080)), "modes beyond VRAM are not offered");
}

#[test]
fn mode_set_programs_the_registers_and_reads_back() {
    let dev = device(Config::default());
    let bochs = probe(&dev, BOCHS_DISPLAY, Options::default()).unwrap();
    let scanout = bochs.set_mode(1024, 768).unwrap();
    assert_eq!((scanout.pitch, scanout.offset), (4096, 0));
    assert_eq!(dev.dispi(DISPI_XRES), 1024);
    assert_eq!(dev.dispi(DISPI_YRES), 768);
    assert_eq!(dev.dispi(DISPI_BPP), 32);
    assert_eq!(dev.dispi(DISPI_ENABLE), ENABLED | LFB_ENABLED);
    assert_eq!(dev.dispi(DISPI_VIRT_WIDTH), 1024);
    assert_eq!(dev.dispi(DISPI_VIRT_HEIGHT), 4096, "16 MiB / 4096-byte lines");
    let image = dev.scanout().expect("a valid mode is shown");
    assert_eq!((image.width, image.height), (1024, 768));
}

#[test]
fn flush_copies_the_damage_rectangle_only() {
    let dev = device(Config::default());
    let bochs = probe(&dev, BOCHS_DISPLAY, Options::default()).unwrap();
    bochs.set_mode(640, 480).unwrap();
    let blue = shadow(640, 480, [0, 0, 255]);
    bochs.flush(&blue, 640 * 4, Rect { x: 0, y: 0, width: 640, height: 480 }).unwrap();
    let red = shadow(640, 480, [255, 0, 0]);
    bochs.flush(&red, 640 * 4, Rect { x: 100, y: 50, width: 256, height: 256 }).unwrap();
    let image = dev.scanout().unwrap();
    assert_eq!(image.pixel(100, 50), [255, 0, 0]);
    assert_eq!(image.pixel(355, 305), [255, 0, 0]);
    assert_eq!(image.pixel(356, 305), [0, 0, 255]);
    assert_eq!(image.pixel(99, 50), [0, 0, 255]);
    let outside = Rect { x: 600, y: 0, width: 41, height: 1 };
    assert_eq!(bochs.flush(&red, 640 * 4, outside), Err(DeviceError::OutOfBounds));
    let overflow = Rect { x: u32::MAX, y: 0, width: 2, height: 1 };
    assert_eq!(bochs.flush(&red, 640 * 4, overflow), Err(DeviceError::OutOfBounds));
    assert_eq!(
        bochs.flush(&red[..64], 640 * 4, Rect { x: 0, y: 0, width: 64, height: 2 }),
        Err(DeviceError::OutOfBounds)
    );
}

#[test]
fn set_base_pans_and_flips_between_frames_in_vram() {
    let dev = device(Config::default());
    let bochs = probe(&dev, BOCHS_DISPLAY, Options::default()).unwrap();
    let scanout = bochs.set_mode(640, 480).unwrap();
    let frame = scanout.pitch as usize * 480;
    fill(&bochs, 640, 480, [0, 255, 0]);
    // Draw the second frame through the first frame's window, then flip to it.
    let flipped = bochs.set_base(frame).unwrap();
    assert_eq!((dev.dispi(DISPI_X_OFFSET), dev.dispi(DISPI_Y_OFFSET)), (0, 480));
    fill(&bochs, 640, 480, [255, 255, 0]);
    assert_eq!(flipped.offset, frame);
    assert_eq!(dev.scanout().unwrap().pixel(0, 0), [255, 255, 0]);
    bochs.set_base(0).unwrap();
    assert_eq!(dev.scanout().unwrap().pixel(639, 479), [0, 255, 0], "the first frame is intact");
    bochs.set_base(8).unwrap();
    assert_eq!((dev.dispi(DISPI_X_OFFSET), dev.dispi(DISPI_Y_OFFSET)), (2, 0), "a pan");
    assert_eq!(bochs.set_base(2), Err(DeviceError::OutOfBounds), "not pixel-aligned");
    assert_eq!(bochs.set_base((16 << 20) - frame + 4), Err(DeviceError::OutOfBounds), "frame past VRAM");
    assert_eq!(bochs.set_base(usize::MAX), Err(DeviceError::OutOfBounds));
}

#[test]
fn a_mode_set_unblanks_vga_outputs_and_blank_toggles_them() {
    // QEMU's secondary-vga has bochs-display's ids and class (0x0380): nothing in PCI config tells
    // that it has VGA ports, and it starts blanked. stdvga is class 0x0300.
    for (pci, model) in [(BOCHS_DISPLAY, "secondary-vga"), (STDVGA, "stdvga")] {
        let dev = device(Config { vga_ports: true, ..Config::default() });
        let bochs = probe(&dev, pci, Options::default()).unwrap();
        assert!(dev.scanout().is_none(), "{model}: nothing before a mode set");
        bochs.set_mode(640, 480).unwrap();
        fill(&bochs, 640, 480, [9, 8, 7]);
        assert_eq!(dev.scanout().unwrap().pixel(5, 5), [9, 8, 7], "{model}: the mode set unblanked it");
        bochs.blank(true).unwrap();
        assert_eq!(dev.scanout().unwrap().pixel(5, 5), [0, 0, 0], "{model}: blanked");
        bochs.blank(false).unwrap();
        assert_eq!(dev.scanout().unwrap().pixel(5, 5), [9, 8, 7], "{model}: unblanked");
    }

    let dev = device(Config::default());
    let bochs = probe(&dev, BOCHS_DISPLAY, Options::default()).unwrap();
    bochs.set_mode(640, 480).unwrap();
    fill(&bochs, 640, 480, [9, 8, 7]);
    bochs.blank(true).unwrap();
    assert_eq!(dev.scanout().unwrap().pixel(5, 5), [9, 8, 7], "bochs-display has no VGA output to blank");
}

#[test]
fn the_emulated_registers_clamp_like_qemu() {
    let dev = device(Config { vram_bytes: 4 << 20, ..Config::default() });
    let (_, mmio) = dev.map_bars();
    let set = |index: usize, value: u16| mmio.try_write16(DISPI + 2 * index, value).unwrap();
    let get = |index: usize| mmio.try_read16(DISPI + 2 * index).unwrap();
    set(DISPI_ENABLE, GETCAPS);
    assert_eq!((get(DISPI_XRES), get(DISPI_YRES), get(DISPI_BPP)), (MAX_XRES, MAX_YRES, 32));
    set(DISPI_ENABLE, 0);
    set(DISPI_BPP, 32);
    set(DISPI_XRES, 2050); // rounded down to a multiple of 8
    set(DISPI_YRES, 2048); // more lines than 4 MiB holds at 8200 bytes each
    set(DISPI_ENABLE, ENABLED | LFB_ENABLED);
    assert_eq!(get(DISPI_XRES), 2048);
    assert_eq!(get(DISPI_VIRT_HEIGHT), ((4 << 20) / (2048 * 4)) as u16);
    assert_eq!(get(DISPI_YRES), get(DISPI_VIRT_HEIGHT));
    assert_eq!(get(DISPI_VIDEO_MEMORY_64K), 64);
    set(DISPI_ID, 0x1234);
    assert_eq!(get(DISPI_ID), ID_LATEST, "only valid IDs are accepted");
}

#[test]
fn the_health_probe_sees_a_yank_and_unplug_then_refuses_everything() {
    for (reads, id) in [(YankedReads::Zeros, 0x0000), (YankedReads::Ones, 0xffff)] {
        let dev = device(Config::default());
        let bochs = probe(&dev, BOCHS_DISPLAY, Options::default()).unwrap();
        bochs.set_mode(640, 480).unwrap();
        assert_eq!(bochs.health(), Health::Present);
        dev.yank(reads);
        assert_eq!(bochs.health(), Health::Vanished(id));
        assert!(bochs.unplug(Unplug::Surprise));
        // From here on any hardware access would abort this test process.
        dev.remove();
        assert_refuses_everything(&bochs);
    }
}

#[test]
fn an_orderly_unplug_disables_scanout_first_and_then_nothing_touches_the_device() {
    let dev = device(Config::default());
    let bochs = probe(&dev, BOCHS_DISPLAY, Options::default()).unwrap();
    bochs.set_mode(800, 600).unwrap();
    assert!(dev.scanout().is_some());
    assert!(bochs.unplug(Unplug::Orderly));
    assert_eq!(dev.dispi(DISPI_ENABLE), 0, "scanout disabled while the device was still there");
    assert!(!bochs.unplug(Unplug::Orderly), "a second unplug does nothing");
    dev.remove();
    assert_refuses_everything(&bochs);
}

fn assert_refuses_everything(bochs: &Bochs) {
    let pixels = shadow(640, 480, [1, 2, 3]);
    assert_eq!(bochs.health(), Health::Unplugged);
    assert_eq!(bochs.set_mode(640, 480), Err(DeviceError::Gone));
    assert_eq!(bochs.set_base(0), Err(DeviceError::Gone));
    assert_eq!(bochs.blank(true), Err(DeviceError::Gone));
    assert_eq!(
        bochs.flush(&pixels, 640 * 4, Rect { x: 0, y: 0, width: 1, height: 1 }),
        Err(DeviceError::Gone)
    );
    assert_eq!(DeviceError::Gone.errno(), syscall::error::ENODEV);
    assert!(bochs.scanout().is_none());
    assert!(!bochs.modes().is_empty(), "the last known modes stay readable");
}

/// The tripwire itself: an access that escapes the guard after removal must kill the process.
/// Each case runs in a child process (this test binary, re-run on one test) and must die.
#[test]
fn an_unguarded_access_after_removal_kills_the_process() {
    use std::os::unix::process::ExitStatusExt;
    for (case, expected_signal) in [("vram", libc_signal::SIGSEGV), ("register", libc_signal::SIGABRT)] {
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "tripwire_child", "--nocapture", "--test-threads=1"])
            .env("DISPLAYD_TRIPWIRE_CASE", case)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.signal(), Some(expected_signal), "{case}: the child survived: {stderr}");
        assert!(stderr.contains("removed; touching it now"), "{case}: the child never reached the access");
        if case == "register" {
            assert!(stderr.contains("use after unplug"), "{stderr}");
        }
    }
}

/// Runs only as the child of the test above.
#[test]
fn tripwire_child() {
    let Ok(case) = std::env::var("DISPLAYD_TRIPWIRE_CASE") else {
        return;
    };
    let dev = device(Config::default());
    // The BARs taken raw, outside any Revocable: exactly what the guard exists to prevent.
    let (mut vram, mmio) = dev.map_bars();
    dev.remove();
    eprintln!("device removed; touching it now");
    match case.as_str() {
        "vram" => {
            vram.fill(0, 4, 0xff);
        }
        _ => {
            mmio.try_read16(DISPI).unwrap();
        }
    }
    eprintln!("survived an access after removal");
}

/// Signal numbers (Linux), so the test needs no libc dependency of its own.
mod libc_signal {
    pub const SIGABRT: i32 = 6;
    pub const SIGSEGV: i32 = 11;
}

#[test]
fn the_scanout_saves_as_a_png_that_reads_back_the_same() {
    let dev = device(Config::default());
    let bochs = probe(&dev, BOCHS_DISPLAY, Options::default()).unwrap();
    bochs.set_mode(640, 480).unwrap();
    fill(&bochs, 640, 480, [10, 20, 30]);
    fill(&bochs, 64, 64, [200, 100, 50]);
    let image = dev.scanout().unwrap();
    let path = std::env::temp_dir().join(format!("displayd-scanout-{}.png", std::process::id()));
    image.save_png(&path).unwrap();
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut rgb = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut rgb).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!((info.width, info.height, info.color_type), (640, 480, png::ColorType::Rgb));
    assert_eq!(&rgb[..info.buffer_size()], &image.rgb[..]);
    assert_eq!(image.pixel(63, 63), [200, 100, 50]);
    assert_eq!(image.pixel(64, 64), [10, 20, 30]);
}

#[test]
fn a_device_whose_vram_holds_no_mode_is_refused_not_a_panic() {
    let dev = device(Config { vram_bytes: 64 << 10, ..Config::default() });
    assert_eq!(probe(&dev, BOCHS_DISPLAY, Options::default()).err(), Some(DeviceError::ModeRejected));
}

#[test]
fn a_mode_set_on_a_yanked_device_unplugs_it_there_and_then() {
    for reads in [YankedReads::Zeros, YankedReads::Ones] {
        let dev = device(Config::default());
        let bochs = probe(&dev, BOCHS_DISPLAY, Options::default()).unwrap();
        bochs.set_mode(640, 480).unwrap();
        dev.yank(reads);
        assert_eq!(bochs.set_mode(800, 600), Err(DeviceError::Gone), "{reads:?}");
        assert!(bochs.is_unplugged(), "unplugged by the failed mode set, before any probe");
        dev.remove();
        assert_refuses_everything(&bochs);
    }
    // A mode the device cannot show is a rejected mode, not a removal.
    let dev = device(Config { vram_bytes: 4 << 20, ..Config::default() });
    let bochs = probe(&dev, BOCHS_DISPLAY, Options::default()).unwrap();
    assert_eq!(bochs.set_mode(1024, 1032), Err(DeviceError::ModeRejected));
    assert!(!bochs.is_unplugged());
}

#[test]
fn the_edid_blob_is_the_base_block_and_the_extensions_it_declares() {
    for (extensions, len) in [(0u8, 128), (1, 256), (2, 384)] {
        let dev = device(Config { edid_extensions: extensions, ..Config::default() });
        let bochs = probe(&dev, BOCHS_DISPLAY, Options::default()).unwrap();
        let edid = bochs.edid().expect("a valid base block");
        assert_eq!((edid.len(), edid[126]), (len, extensions));
        assert_eq!(sizes(&bochs)[0], (1280, 800));
    }
    // More extensions than fit below the VGA ports: served as the base block alone, consistent.
    let dev = device(Config { edid_extensions: 9, ..Config::default() });
    let bochs = probe(&dev, BOCHS_DISPLAY, Options::default()).unwrap();
    let edid = bochs.edid().unwrap();
    assert_eq!((edid.len(), edid[126]), (128, 0));
    assert_eq!(edid.iter().fold(0u8, |s, &b| s.wrapping_add(b)), 0, "checksum fixed");
}
