//! The demo: a device's whole life under a drawing compositor, through the real display scheme.
//!
//! An Orbital-like compositor runs Orbital's exact call sequence on VT 3 and draws a moving box with
//! damage flushes. Mid-stream the administrator unplugs the device through the control path; the
//! device then leaves its slot (its BARs are revoked, so a stray access would crash the demo) while
//! the compositor keeps running, its calls answered as the unplug policy says. A new device is
//! plugged in and a fresh compositor draws on it; then that device is yanked, and the health probe
//! notices and unplugs it. The last close frees each device object.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use super::consumers::{Consumer, ConsumerDisplay, ConsumerError};
use super::kernel::Kernel;
use super::plug;
use crate::device::bochs::{Health, Rect, Removal};
use crate::device::emulated::{Config, EmulatedDevice, Image, YankedReads};
use crate::scheme::{DeviceObject, DisplayScheme};

/// What one compositor saw.
#[derive(Debug, Default, Clone, Copy)]
pub struct ClientReport {
    /// Frames drawn while its device was connected.
    pub frames: u64,
    /// Frames drawn after its device went away (answered, dropped, nothing crashed).
    pub frames_after_removal: u64,
}

/// The demo's outcome.
#[derive(Debug)]
pub struct DemoReport {
    /// The screenshots written, in order.
    pub screenshots: Vec<PathBuf>,
    /// The first device's compositor, then the one on the replugged device.
    pub clients: Vec<ClientReport>,
}

/// A compositor: starts like Orbital on `vt`, then draws until `stop`.
fn run_compositor(
    name: &'static str,
    kernel: Kernel,
    vt: usize,
    colour: [u8; 3],
    stop: Arc<AtomicBool>,
) -> Result<ClientReport, ConsumerError> {
    let mut display = ConsumerDisplay::start(&kernel, Consumer::Orbital, vt)?;
    kernel.scheme().activate(vt); // what `inputd -A <vt>` makes inputd send
    let (width, height) = display.size();
    let mut shadow = vec![0u8; (width * height * 4) as usize];
    paint_background(&mut shadow, width, Rect { x: 0, y: 0, width, height }, colour);
    let mut report = ClientReport::default();
    let mut damage = Rect { x: 0, y: 0, width, height };
    let mut frame = 0u32;
    while !stop.load(SeqCst) {
        display.frame((damage.x, damage.y, damage.width, damage.height), &crop(&shadow, width, damage))?;
        if display.connected {
            report.frames += 1;
        } else {
            if report.frames_after_removal == 0 {
                log::info!(
                    "{name}: its display is gone (connector disconnected); still drawing, calls answered"
                );
            }
            report.frames_after_removal += 1;
        }
        let size = 96.min(width / 4).min(height / 4);
        let old = moving_box(frame, width, height, size);
        frame += 1;
        let new = moving_box(frame, width, height, size);
        paint_background(&mut shadow, width, old, colour);
        paint(&mut shadow, width, new, [255, 255, 255]);
        damage = union(old, new);
        thread::sleep(Duration::from_millis(4));
    }
    log::info!(
        "{name}: closing ({} frames, {} after its device went away)",
        report.frames,
        report.frames_after_removal
    );
    Ok(report)
}

fn crop(shadow: &[u8], width: u32, r: Rect) -> Vec<u8> {
    (r.y..r.y + r.height)
        .flat_map(|y| {
            let at = ((y * width + r.x) * 4) as usize;
            shadow[at..at + (r.width * 4) as usize].iter().copied()
        })
        .collect()
}

fn moving_box(frame: u32, width: u32, height: u32, size: u32) -> Rect {
    let bounce = |t: u32, span: u32| if (t / span).is_multiple_of(2) { t % span } else { span - t % span };
    Rect {
        x: bounce(frame * 7, width - size),
        y: bounce(frame * 5, height - size),
        width: size,
        height: size,
    }
}

fn union(a: Rect, b: Rect) -> Rect {
    let (x, y) = (a.x.min(b.x), a.y.min(b.y));
    let right = (a.x + a.width).max(b.x + b.width);
    let bottom = (a.y + a.height).max(b.y + b.height);
    Rect { x, y, width: right - x, height: bottom - y }
}

/// A vertical gradient of `colour` with a darker grid.
fn background_pixel(x: u32, y: u32, colour: [u8; 3]) -> [u8; 3] {
    let shade = |c: u8| (u32::from(c) * (256 - (y % 256) / 2) / 256) as u8;
    let grid = x.is_multiple_of(64) || y.is_multiple_of(64);
    colour.map(|c| if grid { shade(c) / 2 } else { shade(c) })
}

fn paint_background(pixels: &mut [u8], width: u32, r: Rect, colour: [u8; 3]) {
    for y in r.y..r.y + r.height {
        for x in r.x..r.x + r.width {
            put(pixels, width, x, y, background_pixel(x, y, colour));
        }
    }
}

fn paint(pixels: &mut [u8], width: u32, r: Rect, rgb: [u8; 3]) {
    for y in r.y..r.y + r.height {
        for x in r.x..r.x + r.width {
            put(pixels, width, x, y, rgb);
        }
    }
}

fn put(pixels: &mut [u8], width: u32, x: u32, y: u32, [r, g, b]: [u8; 3]) {
    let at = ((y * width + x) * 4) as usize;
    pixels[at..at + 4].copy_from_slice(&[b, g, r, 0]);
}

/// Polls the bound device's ID register; when it vanishes, unplugs it without touching it.
fn run_health_probe(kernel: Kernel, device: Arc<DeviceObject>, stop: Arc<AtomicBool>) {
    while !stop.load(SeqCst) {
        match device.kms.adapter().health() {
            Health::Present => thread::sleep(Duration::from_millis(5)),
            Health::Vanished(id) => {
                log::info!(
                    "health probe: ID register reads {id:#06x}: device {} has vanished",
                    device.instance
                );
                kernel.scheme().unplug(Removal::Surprise);
                return;
            }
            Health::Unplugged => return,
        }
    }
}

/// A scheme error as an I/O error (same errno).
fn os(error: syscall::error::Error) -> std::io::Error {
    std::io::Error::from_raw_os_error(error.errno)
}

/// What a monitor shows without a signal.
fn no_signal() -> Image {
    Image { width: 640, height: 400, rgb: vec![0; 640 * 400 * 3] }
}

/// Runs the demo, about `duration` long, writing screenshots into `out_dir`.
pub fn demo(duration: Duration, out_dir: &Path) -> std::io::Result<DemoReport> {
    std::fs::create_dir_all(out_dir)?;
    let step = duration / 5;
    let mut screenshots = Vec::new();
    let mut shoot = |slot: &EmulatedDevice, name: &str| -> std::io::Result<()> {
        let path = out_dir.join(name);
        slot.scanout().unwrap_or_else(no_signal).save_png(&path)?;
        log::info!("screenshot: {}", path.display());
        screenshots.push(path);
        Ok(())
    };
    let spawn = |name, kernel: &Kernel, colour, stop: &Arc<AtomicBool>| {
        let (kernel, stop) = (kernel.clone(), Arc::clone(stop));
        thread::spawn(move || run_compositor(name, kernel, 3, colour, stop))
    };

    let kernel = Kernel::new(DisplayScheme::new("display.bochs")).map_err(os)?;
    let slot = EmulatedDevice::new(Config::default())?;
    plug(&kernel, &slot, 1, || log::info!("device 1: managed releases ran"))
        .map_err(std::io::Error::other)?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut compositors = vec![spawn("compositor", &kernel, [40, 90, 160], &stop)];
    thread::sleep(step);
    shoot(&slot, "1-before-unplug.png")?;

    log::info!("administrator: `unplug` on the control path while the compositor draws");
    kernel.open("control", 0).and_then(|control| control.write(b"unplug")).map_err(os)?;
    slot.remove();
    log::info!("device 1 left its slot: its BARs are revoked, any stray access would crash this demo");
    thread::sleep(step);
    shoot(&slot, "2-after-unplug.png")?;

    let new_slot = EmulatedDevice::new(Config::default())?;
    let second = plug(&kernel, &new_slot, 2, || log::info!("device 2: managed releases ran"))
        .map_err(std::io::Error::other)?;
    log::info!("device 2 plugged in; the first compositor still holds device 1");
    compositors.push(spawn("fresh compositor", &kernel, [60, 140, 70], &stop));
    let probe = {
        let (kernel, stop) = (kernel.clone(), Arc::clone(&stop));
        thread::spawn(move || run_health_probe(kernel, second, stop))
    };
    thread::sleep(step);
    shoot(&new_slot, "3-after-replug.png")?;

    log::info!("surprise: device 2 is yanked (its registers now read 0x0000), nobody tells the driver");
    new_slot.yank(YankedReads::Zeros);
    thread::sleep(step);
    probe.join().map_err(|_| std::io::Error::other("health probe panicked"))?;
    new_slot.remove();

    stop.store(true, SeqCst);
    let mut clients = Vec::new();
    for compositor in compositors {
        let report = compositor.join().map_err(|_| std::io::Error::other("compositor panicked"))?;
        clients.push(
            report.map_err(|e| std::io::Error::other(format!("a consumer would have crashed: {e:?}")))?,
        );
    }
    Ok(DemoReport { screenshots, clients })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(path: &Path) -> (u32, u32, Vec<u8>) {
        let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
        let mut reader = png::Decoder::new(file).read_info().unwrap();
        let mut rgb = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut rgb).unwrap();
        (info.width, info.height, rgb)
    }

    #[test]
    fn the_demo_draws_survives_unplug_and_yank_and_draws_again_after_replug() {
        let dir = std::env::temp_dir().join(format!("displayd-demo-{}", std::process::id()));
        let report = demo(Duration::from_millis(500), &dir).unwrap();
        let [before, after, replugged] = &report.screenshots[..] else { panic!("{report:?}") };
        let (w, h, pixels) = decode(before);
        assert_eq!((w, h), (1280, 800));
        assert_eq!(&pixels[3 * (w as usize + 1)..][..3], &background_pixel(1, 1, [40, 90, 160]));
        assert!(decode(after).2.iter().all(|&b| b == 0), "after the unplug the device shows nothing");
        let (w, _, pixels) = decode(replugged);
        assert_eq!(&pixels[3 * (w as usize + 1)..][..3], &background_pixel(1, 1, [60, 140, 70]));
        let [first, fresh] = report.clients[..] else { panic!("{report:?}") };
        assert!(first.frames > 0 && first.frames_after_removal > 0, "{first:?}");
        assert!(fresh.frames > 0 && fresh.frames_after_removal > 0, "the yank was noticed: {fresh:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
