//! The Linux host platform: displayd on the emulated Bochs device, in-process, for the demo and tests.
//!
//! The demo plays a device's whole life with clients drawing throughout: probe and mode set, an
//! orderly unplug mid-stream (the device then leaves its slot, so a stray access would crash the
//! demo), a new device plugged in and drawn on by a fresh client, and a surprise yank that the health
//! probe notices. Old clients keep their handles across all of it; the last close frees everything.
//! Clients call the device directly until the display scheme lands.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

pub mod consumers;
pub mod drm;
pub mod kernel;
pub mod memory;

use crate::device::bochs::{Bochs, DeviceError, Hardware, Health, Options, PciId, Rect, Removal};
use crate::device::emulated::{Config, EmulatedDevice, Image, YankedReads};
use crate::guard::Releases;

/// How QEMU's bochs-display presents itself on PCI.
pub const BOCHS_DISPLAY_PCI: PciId =
    PciId { vendor: 0x1234, device: 0x1111, class: 3, subclass: 0x80, revision: 2 };

/// The device object: what every client handle holds. Dropped at the last reference, after which
/// the managed releases run.
pub struct DeviceObject {
    /// The driver for this device instance.
    pub bochs: Bochs,
    /// Which device instance this is (1 for the first one plugged in, then 2, ...).
    pub instance: u32,
    _releases: Releases,
}

/// Plugs `slot` in as device object number `instance`: maps its BARs, probes it, sets the
/// preferred mode, and registers the releases that run at its last reference.
pub fn bind(slot: &EmulatedDevice, instance: u32) -> Result<Arc<DeviceObject>, DeviceError> {
    let releases = Releases::new();
    releases.add("device object", move || {
        log::info!("device {instance}: last reference gone, device object freed")
    });
    let (vram, mmio) = slot.map_bars();
    let bochs = Bochs::probe(BOCHS_DISPLAY_PCI, Hardware { mmio, vram }, Options::default())?;
    let preferred = bochs.modes()[0];
    bochs.set_mode(preferred.hdisplay, preferred.vdisplay)?;
    Ok(Arc::new(DeviceObject { bochs, instance, _releases: releases }))
}

/// What one client saw.
#[derive(Debug, Default, Clone, Copy)]
pub struct ClientReport {
    /// Frames whose damage reached the device.
    pub frames: u64,
    /// Draws refused because the device was gone (ENODEV).
    pub refused: u64,
}

/// A drawing client: a shadow buffer of the screen, a moving box, one damage flush per frame.
fn run_client(
    name: &'static str,
    device: Arc<DeviceObject>,
    colour: [u8; 3],
    stop: Arc<AtomicBool>,
) -> ClientReport {
    let Some(mode) = device.bochs.scanout() else {
        return ClientReport::default();
    };
    let (width, height) = (u32::from(mode.width), u32::from(mode.height));
    let pitch = width as usize * 4;
    let mut shadow = background(width, height, colour);
    let mut report = ClientReport::default();
    let full = Rect { x: 0, y: 0, width, height };
    let mut damage = full;
    let mut frame = 0u32;
    while !stop.load(SeqCst) {
        match device.bochs.flush(&shadow, pitch, damage) {
            Ok(()) => report.frames += 1,
            Err(DeviceError::Gone) => {
                if report.refused == 0 {
                    log::info!(
                        "{name}: draw refused with ENODEV (device {} gone); handle stays open",
                        device.instance
                    );
                }
                report.refused += 1;
            }
            Err(error) => log::warn!("{name}: flush failed: {error:?}"),
        }
        // Move the box: repaint its old place and its new place, and flush just that damage.
        let size = 96.min(width / 4).min(height / 4);
        let old = moving_box(frame, width, height, size);
        frame += 1;
        let new = moving_box(frame, width, height, size);
        paint_background(&mut shadow, width, old, colour);
        paint(&mut shadow, width, new, [255, 255, 255]);
        damage = union(old, new);
        thread::sleep(Duration::from_millis(4));
    }
    log::info!("{name}: closing its handle on device {} ({} frames drawn)", device.instance, report.frames);
    report
}

fn moving_box(frame: u32, width: u32, height: u32, size: u32) -> Rect {
    let span_x = width - size;
    let span_y = height - size;
    let bounce = |t: u32, span: u32| {
        if (t / span).is_multiple_of(2) {
            t % span
        } else {
            span - t % span
        }
    };
    Rect { x: bounce(frame * 7, span_x), y: bounce(frame * 5, span_y), width: size, height: size }
}

fn union(a: Rect, b: Rect) -> Rect {
    let (x, y) = (a.x.min(b.x), a.y.min(b.y));
    let right = (a.x + a.width).max(b.x + b.width);
    let bottom = (a.y + a.height).max(b.y + b.height);
    Rect { x, y, width: right - x, height: bottom - y }
}

/// A vertical gradient of `colour` with a darker grid, in XRGB8888.
fn background(width: u32, height: u32, colour: [u8; 3]) -> Vec<u8> {
    let mut pixels = vec![0u8; (width * height * 4) as usize];
    paint_background(&mut pixels, width, Rect { x: 0, y: 0, width, height }, colour);
    pixels
}

fn background_pixel(x: u32, y: u32, colour: [u8; 3]) -> [u8; 3] {
    let shade = |c: u8| (u32::from(c) * (256 - (y % 256) / 2) / 256) as u8;
    if x.is_multiple_of(64) || y.is_multiple_of(64) {
        [shade(colour[0]) / 2, shade(colour[1]) / 2, shade(colour[2]) / 2]
    } else {
        [shade(colour[0]), shade(colour[1]), shade(colour[2])]
    }
}

fn paint_background(pixels: &mut [u8], width: u32, rect: Rect, colour: [u8; 3]) {
    for y in rect.y..rect.y + rect.height {
        for x in rect.x..rect.x + rect.width {
            put(pixels, width, x, y, background_pixel(x, y, colour));
        }
    }
}

fn paint(pixels: &mut [u8], width: u32, rect: Rect, rgb: [u8; 3]) {
    for y in rect.y..rect.y + rect.height {
        for x in rect.x..rect.x + rect.width {
            put(pixels, width, x, y, rgb);
        }
    }
}

fn put(pixels: &mut [u8], width: u32, x: u32, y: u32, [r, g, b]: [u8; 3]) {
    let at = ((y * width + x) * 4) as usize;
    pixels[at..at + 4].copy_from_slice(&[b, g, r, 0]);
}

/// Polls the device's ID register; on a vanished device, unplugs it without touching it.
fn run_health_probe(device: Arc<DeviceObject>, stop: Arc<AtomicBool>) {
    while !stop.load(SeqCst) {
        match device.bochs.health() {
            Health::Present => {}
            Health::Vanished(id) => {
                log::info!(
                    "health probe: ID register reads {id:#06x}: device {} has vanished",
                    device.instance
                );
                device.bochs.unplug(Removal::Surprise);
                return;
            }
            Health::Unplugged => return,
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// The demo's outcome.
#[derive(Debug)]
pub struct DemoReport {
    /// The screenshots written, in order.
    pub screenshots: Vec<PathBuf>,
    /// The first device's two clients, then the client of the replugged device.
    pub clients: Vec<ClientReport>,
}

/// Runs the demo, about `duration` long, writing screenshots into `out_dir`.
pub fn demo(duration: Duration, out_dir: &Path) -> std::io::Result<DemoReport> {
    std::fs::create_dir_all(out_dir)?;
    let step = duration / 5;
    let mut screenshots = Vec::new();
    let mut shoot = |slot: &EmulatedDevice, name: &str| -> std::io::Result<()> {
        let path = out_dir.join(name);
        match slot.scanout() {
            Some(image) => image.save_png(&path)?,
            None => no_signal().save_png(&path)?,
        }
        log::info!("screenshot: {}", path.display());
        screenshots.push(path);
        Ok(())
    };

    let slot = EmulatedDevice::new(Config::default())?;
    let first = bind(&slot, 1).map_err(std::io::Error::other)?;
    let stop_first = Arc::new(AtomicBool::new(false));
    let mut clients = vec![{
        let (device, stop) = (Arc::clone(&first), Arc::clone(&stop_first));
        thread::spawn(move || run_client("compositor", device, [40, 90, 160], stop))
    }];
    thread::sleep(step);
    shoot(&slot, "1-before-unplug.png")?;

    log::info!("orderly unplug of device 1 while its client draws");
    first.bochs.unplug(Removal::Orderly);
    slot.remove();
    log::info!("device 1 left its slot: its BARs are revoked, any stray access would crash this demo");
    drop(first);
    thread::sleep(step);
    shoot(&slot, "2-after-unplug.png")?;

    let new_slot = EmulatedDevice::new(Config::default())?;
    let second = bind(&new_slot, 2).map_err(std::io::Error::other)?;
    log::info!(
        "device 2 plugged in and bound as a new device object; device 1's client still holds device 1"
    );
    let stop_second = Arc::new(AtomicBool::new(false));
    {
        let (device, stop) = (Arc::clone(&second), Arc::clone(&stop_second));
        clients.push(thread::spawn(move || run_client("fresh client", device, [60, 140, 70], stop)));
    }
    let probe = {
        let (device, stop) = (Arc::clone(&second), Arc::clone(&stop_second));
        thread::spawn(move || run_health_probe(device, stop))
    };
    thread::sleep(step);
    shoot(&new_slot, "3-after-replug.png")?;

    log::info!("surprise: device 2 is yanked (its registers now read 0x0000), nobody tells the driver");
    new_slot.yank(YankedReads::Zeros);
    thread::sleep(step);
    probe.join().expect("health probe thread");
    new_slot.remove();
    drop(second);

    stop_first.store(true, SeqCst);
    stop_second.store(true, SeqCst);
    let clients = clients.into_iter().map(|c| c.join().expect("client thread")).collect();
    Ok(DemoReport { screenshots, clients })
}

/// What a monitor shows without a signal.
fn no_signal() -> Image {
    Image { width: 640, height: 400, rgb: vec![0; 640 * 400 * 3] }
}

/// Plugs the emulated device in `slot` into the display scheme as device object `instance`: maps
/// its BARs, probes it, builds its KMS state, and binds it for new opens. `on_release` runs when
/// the device object's last reference goes.
pub fn plug(
    kernel: &kernel::Kernel,
    slot: &EmulatedDevice,
    instance: u32,
    on_release: impl FnOnce() + Send + 'static,
) -> Result<Arc<crate::scheme::DeviceObject>, DeviceError> {
    let releases = Releases::new();
    releases.add("device object", on_release);
    let (vram, mmio) = slot.map_bars();
    let bochs = Bochs::probe(BOCHS_DISPLAY_PCI, Hardware { mmio, vram }, Options::default())?;
    let kms =
        crate::kms::Kms::new(Arc::new(bochs), Arc::new(memory::HostAllocator), "pci:0000:00:02.0".into());
    let device = crate::scheme::DeviceObject::new(kms, instance, releases);
    kernel.scheme().bind(Arc::clone(&device));
    Ok(device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_draws_survives_unplug_and_yank_and_draws_again_after_replug() {
        let dir = std::env::temp_dir().join(format!("displayd-demo-{}", std::process::id()));
        let report = demo(Duration::from_millis(400), &dir).unwrap();
        let [before, after, replugged] = &report.screenshots[..] else { panic!("{report:?}") };
        let decode = |path: &Path| {
            let mut reader = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()))
                .read_info()
                .unwrap();
            let mut rgb = vec![0; reader.output_buffer_size().unwrap()];
            let info = reader.next_frame(&mut rgb).unwrap();
            (info.width, info.height, rgb)
        };
        let (w, h, pixels) = decode(before);
        assert_eq!((w, h), (1280, 800));
        assert_eq!(&pixels[3 * (w as usize + 1)..][..3], &background_pixel(1, 1, [40, 90, 160]));
        let (_, _, dark) = decode(after);
        assert!(dark.iter().all(|&b| b == 0), "after the unplug the device shows nothing");
        let (w, _, pixels) = decode(replugged);
        assert_eq!(&pixels[3 * (w as usize + 1)..][..3], &background_pixel(1, 1, [60, 140, 70]));
        let [first, fresh] = report.clients[..] else { panic!("{report:?}") };
        assert!(first.frames > 0 && first.refused > 0, "{first:?}");
        assert!(fresh.frames > 0 && fresh.refused > 0, "the yank was noticed: {fresh:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
