//! The demo: a device's whole life under a drawing compositor, through the real display scheme.
//!
//! An Orbital-like compositor runs Orbital's exact call sequence on VT 3 and draws windows and a moving
//! ball with damage flushes. Mid-stream the administrator unplugs the device through the control path; the
//! device is then removed (its BARs are revoked, so a stray access would crash the demo) while
//! the compositor keeps running, its calls answered as the unplug policy says. A new device is
//! plugged in and a fresh compositor draws on it; then that device is yanked, and the health probe
//! notices and unplugs it. The last close frees each device object.
//!
//! Each phase lasts at least its share of the demo's length and, whatever the machine's load, until
//! what it shows has happened (frames drawn, the device gone): it waits for that with a generous
//! deadline and fails naming what it saw, never on a fixed sleep.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use orbclient::{Color, Mode, Renderer};

use crate::consumers::{Consumer, ConsumerDisplay, ConsumerError};
use crate::emulated::{Config, EmulatedDevice, Image, YankedReads};
use crate::kernel::Kernel;
use crate::plug;
use displayd::device::{Rect, Unplug};
use displayd::device_object::{Absent, DeviceObject};
use displayd::scheme::DisplayScheme;

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

/// The compositor's frame: a pixel buffer orbclient's `Renderer` draws into, as Orbital's own
/// display buffer is.
struct Canvas {
    width: u32,
    height: u32,
    pixels: Vec<Color>,
    mode: Cell<Mode>,
}

impl Renderer for Canvas {
    fn width(&self) -> u32 {
        self.width
    }
    fn height(&self) -> u32 {
        self.height
    }
    fn data(&self) -> &[Color] {
        &self.pixels
    }
    fn data_mut(&mut self) -> &mut [Color] {
        &mut self.pixels
    }
    fn sync(&mut self) -> bool {
        true
    }
    fn update(&mut self) -> bool {
        true
    }
    fn update_rects(&mut self, _: &[(i32, i32, u32, u32)]) -> bool {
        true
    }
    fn mode(&self) -> &Cell<Mode> {
        &self.mode
    }
}

impl Canvas {
    /// The pixels of `r` as XRGB8888 rows (orbclient's ARGB words, little-endian).
    fn crop(&self, r: Rect) -> Vec<u8> {
        (r.y..r.y + r.height)
            .flat_map(|y| {
                let row = (y * self.width + r.x) as usize;
                self.pixels[row..row + r.width as usize].iter().flat_map(|c| c.data.to_le_bytes())
            })
            .collect()
    }
}

/// The desktop: a wallpaper, three windows with title bars and text, and a ball moving across them.
fn draw_desktop(canvas: &mut Canvas, theme: Color, name: &str, frame: u32) {
    let (w, h) = (canvas.width, canvas.height);
    canvas.set(theme);
    for (i, (title, x, y)) in
        [(name, 60, 60), ("terminal", 420, 180), ("about displayd", 180, 420)].into_iter().enumerate()
    {
        let (ww, wh) = (340u32, 220u32);
        canvas.rect(x + 6, y + 6, ww, wh, Color::rgba(0, 0, 0, 90));
        canvas.rect(x, y, ww, wh, Color::rgb(236, 239, 244));
        canvas.rect(x, y, ww, 26, if i == 0 { Color::rgb(60, 80, 120) } else { Color::rgb(110, 120, 140) });
        for (n, c) in title.chars().enumerate() {
            canvas.char(x + 10 + 8 * n as i32, y + 5, c, Color::rgb(255, 255, 255));
        }
        let body = ["handles outlive the device", "unplug waits out sections", "no section, no register"];
        for (line, text) in body.iter().enumerate() {
            for (n, c) in text.chars().enumerate() {
                canvas.char(x + 12 + 8 * n as i32, y + 40 + 20 * line as i32, c, Color::rgb(30, 30, 40));
            }
        }
    }
    let ball = moving_ball(frame, w, h);
    let r = ball.width as i32 / 2;
    canvas.circle(ball.x as i32 + r, ball.y as i32 + r, -r, Color::rgb(250, 200, 40));
}

const BALL: u32 = 64;

fn moving_ball(frame: u32, width: u32, height: u32) -> Rect {
    let bounce = |t: u32, span: u32| if (t / span).is_multiple_of(2) { t % span } else { span - t % span };
    Rect {
        x: bounce(frame * 7, width - BALL),
        y: bounce(frame * 5, height - BALL),
        width: BALL,
        height: BALL,
    }
}

/// A compositor's frame counts as it draws, for the demo to wait on.
#[derive(Default)]
struct Progress {
    frames: AtomicU64,
    frames_after_removal: AtomicU64,
}

/// A compositor: starts like Orbital on `vt`, then draws until `stop`, flushing only what changed.
fn run_compositor(
    name: &'static str,
    kernel: Kernel,
    theme: Color,
    stop: Arc<AtomicBool>,
    progress: Arc<Progress>,
) -> Result<ClientReport, ConsumerError> {
    let vt = 3;
    let mut display = ConsumerDisplay::start(&kernel, Consumer::Orbital, vt)?;
    kernel.scheme().activate(vt); // what `inputd -A <vt>` makes inputd send
    let (width, height) = display.size();
    let mut canvas = Canvas {
        width,
        height,
        pixels: vec![theme; (width * height) as usize],
        mode: Cell::new(Mode::Blend),
    };
    let mut report = ClientReport::default();
    let mut damage = Rect { x: 0, y: 0, width, height };
    let mut frame = 0u32;
    while !stop.load(SeqCst) {
        draw_desktop(&mut canvas, theme, name, frame);
        display.frame((damage.x, damage.y, damage.width, damage.height), &canvas.crop(damage))?;
        if display.connected {
            report.frames += 1;
            progress.frames.fetch_add(1, SeqCst);
        } else {
            if report.frames_after_removal == 0 {
                log::info!(
                    "{name}: its display is gone (connector disconnected); still drawing, calls answered"
                );
            }
            report.frames_after_removal += 1;
            progress.frames_after_removal.fetch_add(1, SeqCst);
        }
        damage = moving_ball(frame, width, height).union(moving_ball(frame + 1, width, height));
        frame += 1;
        thread::sleep(Duration::from_millis(4)); // pacing, as a compositor waits for its next frame
    }
    log::info!(
        "{name}: closing ({} frames, {} after its device went away)",
        report.frames,
        report.frames_after_removal
    );
    Ok(report)
}

/// Runs the health check on `device` until it finds it gone; then unplugs that device (not
/// whichever is bound by then) as a surprise, without touching it.
fn run_health_probe(kernel: Kernel, device: Arc<DeviceObject>, stop: Arc<AtomicBool>) {
    while !stop.load(SeqCst) {
        match device.check_health() {
            None => thread::sleep(Duration::from_millis(5)),
            Some(gone @ Absent::Vanished(_)) => {
                log::info!("health probe: {gone}: device {} has vanished", device.instance);
                kernel.scheme().unplug(&device, Unplug::Surprise);
                return;
            }
            Some(Absent::AlreadyUnplugged) => return,
        }
    }
}

/// How long a phase may wait for what it shows before the demo gives up: generous, so a machine
/// busy with other work only makes the demo slower, never wrong.
const PHASE_DEADLINE: Duration = Duration::from_secs(120);

/// Waits until `reached` holds and at least `at_least` has passed (the phase's share of the demo's
/// length); fails after [`PHASE_DEADLINE`] with `what` and what `seen` reports.
fn wait_for(
    what: &str,
    at_least: Duration,
    reached: impl Fn() -> bool,
    seen: impl Fn() -> String,
) -> std::io::Result<()> {
    let started = Instant::now();
    loop {
        if reached() && started.elapsed() >= at_least {
            return Ok(());
        }
        if started.elapsed() > PHASE_DEADLINE {
            return Err(std::io::Error::other(format!(
                "demo: {what} did not happen in {PHASE_DEADLINE:?}; saw {}",
                seen()
            )));
        }
        thread::sleep(Duration::from_millis(2));
    }
}

/// Sets its flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, SeqCst);
    }
}

/// A scheme error as an I/O error (same errno).
fn os(error: syscall::error::Error) -> std::io::Error {
    std::io::Error::from_raw_os_error(error.errno)
}

/// The wallpapers of the two compositors, so the screenshots tell the devices apart.
const FIRST_THEME: Color = Color::rgb(40, 90, 160);
const SECOND_THEME: Color = Color::rgb(60, 140, 70);

/// What a monitor shows without a signal.
fn no_signal() -> Image {
    Image { width: 640, height: 400, rgb: vec![0; 640 * 400 * 3] }
}

/// Runs the demo, about `duration` long, writing screenshots into `out_dir`.
pub fn demo(duration: Duration, out_dir: &Path) -> std::io::Result<DemoReport> {
    std::fs::create_dir_all(out_dir)?;
    let step = duration / 5;
    let mut screenshots = Vec::new();
    let mut shoot = |emulated: &EmulatedDevice, name: &str| -> std::io::Result<()> {
        let path = out_dir.join(name);
        emulated.scanout().unwrap_or_else(no_signal).save_png(&path)?;
        log::info!("screenshot: {}", path.display());
        screenshots.push(path);
        Ok(())
    };
    let spawn = |name, kernel: &Kernel, theme, stop: &Arc<AtomicBool>| {
        let (kernel, stop) = (kernel.clone(), Arc::clone(stop));
        let progress = Arc::new(Progress::default());
        let counts = Arc::clone(&progress);
        (thread::spawn(move || run_compositor(name, kernel, theme, stop, counts)), progress)
    };
    let counted = |progress: &Progress| {
        format!(
            "{} frames drawn, {} after the removal",
            progress.frames.load(SeqCst),
            progress.frames_after_removal.load(SeqCst)
        )
    };

    let kernel = Kernel::new(DisplayScheme::new("display.bochs")).map_err(os)?;
    let emulated = EmulatedDevice::new(Config::default())?;
    plug(&kernel, &emulated, 1, || log::info!("device 1: managed releases ran"))
        .map_err(std::io::Error::other)?;
    let stop = Arc::new(AtomicBool::new(false));
    // Whichever way this returns, the compositors and the probe stop.
    let _stop_on_return = StopOnDrop(Arc::clone(&stop));
    let (first, first_progress) = spawn("compositor", &kernel, FIRST_THEME, &stop);
    let mut compositors = vec![first];
    wait_for(
        "the compositor's first frame",
        step,
        || first_progress.frames.load(SeqCst) > 0 || compositors[0].is_finished(),
        || counted(&first_progress),
    )?;
    shoot(&emulated, "1-before-unplug.png")?;

    log::info!("administrator: `unplug` on the control path while the compositor draws");
    kernel.open("control", 0).and_then(|control| control.write(b"unplug")).map_err(os)?;
    emulated.remove();
    log::info!("device 1 removed: its BARs are revoked, any stray access would crash this demo");
    wait_for(
        "a frame drawn by the compositor after the unplug",
        step,
        || first_progress.frames_after_removal.load(SeqCst) > 0 || compositors[0].is_finished(),
        || counted(&first_progress),
    )?;
    shoot(&emulated, "2-after-unplug.png")?;

    let new_emulated = EmulatedDevice::new(Config::default())?;
    let second = plug(&kernel, &new_emulated, 2, || log::info!("device 2: managed releases ran"))
        .map_err(std::io::Error::other)?;
    log::info!("device 2 plugged in; the first compositor still holds device 1");
    let (fresh, fresh_progress) = spawn("fresh compositor", &kernel, SECOND_THEME, &stop);
    compositors.push(fresh);
    let probe = {
        let (kernel, stop) = (kernel.clone(), Arc::clone(&stop));
        thread::spawn(move || run_health_probe(kernel, second, stop))
    };
    wait_for(
        "the fresh compositor's first frame on device 2",
        step,
        || fresh_progress.frames.load(SeqCst) > 0 || compositors[1].is_finished(),
        || counted(&fresh_progress),
    )?;
    shoot(&new_emulated, "3-after-replug.png")?;

    log::info!("surprise: device 2 is yanked (its registers now read 0x0000), nobody tells the driver");
    new_emulated.yank(YankedReads::Zeros);
    wait_for(
        "the health probe's unplug of device 2 and a frame drawn after it",
        step,
        || {
            (probe.is_finished() && fresh_progress.frames_after_removal.load(SeqCst) > 0)
                || compositors[1].is_finished()
        },
        || format!("probe finished: {}; {}", probe.is_finished(), counted(&fresh_progress)),
    )?;
    probe.join().map_err(|_| std::io::Error::other("health probe panicked"))?;
    new_emulated.remove();

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
        assert_eq!(&pixels[3 * (w as usize + 1)..][..3], &[40, 90, 160], "the first wallpaper");
        assert!(decode(after).2.iter().all(|&b| b == 0), "after the unplug the device shows nothing");
        let (w, _, pixels) = decode(replugged);
        assert_eq!(&pixels[3 * (w as usize + 1)..][..3], &[60, 140, 70], "the second device's wallpaper");
        let [first, fresh] = report.clients[..] else { panic!("{report:?}") };
        assert!(first.frames > 0 && first.frames_after_removal > 0, "{first:?}");
        assert!(fresh.frames > 0 && fresh.frames_after_removal > 0, "the yank was noticed: {fresh:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
