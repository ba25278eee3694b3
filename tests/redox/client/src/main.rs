//! displayd's test client on Redox: an fbcond-like console on one VT and an Orbital-like
//! compositor on another, both speaking to displayd only through the `drm` crate 0.15 (what Orbital
//! uses), so every ioctl goes through relibc's DRM shim and the kernel's scheme calls.
//!
//! Started by init once pcid-spawner has spawned displayd. It opens both displays the way fbcond and
//! Orbital do (inputd consumer, `fpath`, `v2/<vt>`), runs their start-up sequences, draws test
//! pattern 2 (console) and 1 (compositor), and reports `ready`. It then obeys one-line commands the
//! host types on the serial port (read from `/scheme/debug`) and reports each result as a line
//! starting with `displayd-client:` (see `tests/redox/main.rs`, which steers it):
//!
//! * `show <vt>`: asks inputd to switch to that VT.
//! * `flip <n>`: `n` page flips with completion events, each awaited as a compositor does: a wake
//!   of its event queue on the display handle, then the drm crate's `receive_events`.
//! * `bench`: the compositor's full-frame loop and a 256×256 DIRTYFB, each next to the plain copy
//!   of the same bytes in the same boot.
//! * `unplug` / `sigterm`: draws pattern 1 on both displays and, mid-stream, removes the device
//!   (writes `unplug` to displayd's control path, or sends displayd SIGTERM as shutdown does); once
//!   the stop is complete, draws 20 frames of pattern 3, which must never reach the screen.
//! * `more <n>`: draws `n` more frames of pattern 3.
//! * `close`: closes everything; after a control-path unplug, a new open must then fail.
//!
//! Every answer displayd gives is counted per call and reported (`answers: ...`), so the host can
//! check that no answer would make Orbital or fbcond crash.

#[path = "../../../../testkit/src/test_pattern.rs"]
mod test_pattern;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::hint::black_box;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::time::{Duration, Instant};

use drm::buffer::{Buffer, DrmFourcc};
use drm::control::dumbbuffer::DumbMapping;
use drm::control::{connector, crtc, framebuffer, ClipRect, Device as _, Event, PageFlipFlags};
use drm::{ClientCapability, Device as _, DriverCapability};

/// Every line the host reads starts with this.
const MARK: &str = "displayd-client:";

/// Frames drawn after a stop before the host's first look.
const FRAMES_AFTER_REMOVAL: u32 = 20;

/// How long the client waits for something the system does on its own (inputd registering the
/// display, displayd finishing a SIGTERM unplug).
const DEADLINE: Duration = Duration::from_secs(120);

fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{MARK} {line}");
    let _ = out.flush();
}

/// How often each call got each answer (`ok` or `errno-N`).
#[derive(Default)]
struct Answers(BTreeMap<&'static str, BTreeMap<String, u32>>);

impl Answers {
    fn note<T>(&mut self, call: &'static str, result: io::Result<T>) -> io::Result<T> {
        let answer = match &result {
            Ok(_) => "ok".to_string(),
            Err(error) => format!("errno-{}", error.raw_os_error().unwrap_or(-1)),
        };
        *self.0.entry(call).or_default().entry(answer).or_default() += 1;
        result
    }

    /// `CALL=answer*count/answer*count CALL=...`
    fn summary(&self) -> String {
        let calls = self.0.iter().map(|(call, answers)| {
            let answers: Vec<String> = answers.iter().map(|(answer, n)| format!("{answer}*{n}")).collect();
            format!("{call}={}", answers.join("/"))
        });
        calls.collect::<Vec<_>>().join(" ")
    }
}

/// A display handle as the drm crate wants it.
struct Card(File);

impl AsFd for Card {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl drm::Device for Card {}
impl drm::control::Device for Card {}

/// The dumb buffer as a framebuffer source (the mapping borrows the drm crate's own type).
struct Scanout {
    size: (u32, u32),
    pitch: u32,
    handle: drm::buffer::Handle,
}

impl Buffer for Scanout {
    fn size(&self) -> (u32, u32) {
        self.size
    }
    fn format(&self) -> DrmFourcc {
        DrmFourcc::Xrgb8888
    }
    fn pitch(&self) -> u32 {
        self.pitch
    }
    fn handle(&self) -> drm::buffer::Handle {
        self.handle
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Role {
    Fbcond,
    Orbital,
}

/// One consumer's display: its VT, its handle and its mapped scanout buffer.
struct Display {
    role: Role,
    vt: usize,
    /// `/scheme/<display scheme>`.
    scheme: String,
    connector: connector::Handle,
    crtc: crtc::Handle,
    fb: framebuffer::Handle,
    size: (u32, u32),
    pitch: u32,
    // Field order is drop order: unmap, close the display, then leave the VT.
    map: DumbMapping<'static>,
    card: Card,
    _consumer: File,
}

/// Waits until `attempt` answers, up to [`DEADLINE`].
fn wait_for<T>(what: &str, mut attempt: impl FnMut() -> Option<T>) -> Result<T, String> {
    let start = Instant::now();
    loop {
        if let Some(value) = attempt() {
            return Ok(value);
        }
        if start.elapsed() > DEADLINE {
            return Err(format!("{what}: nothing after {DEADLINE:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn err(what: &str) -> impl Fn(io::Error) -> String + '_ {
    move |error| format!("{what}: {error}")
}

impl Display {
    /// Opens a new VT's display as `role` does and draws `pattern` on it.
    fn open(role: Role, answers: &mut Answers) -> Result<Display, String> {
        let consumer = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/scheme/input/consumer")
            .map_err(err("/scheme/input/consumer"))?;
        // inputd names the display once one has registered with it: `/scheme/<display>/<vt>`.
        let path = wait_for("inputd's display", || {
            let mut buf = [0u8; 256];
            let len = libredox::call::fpath(consumer.as_raw_fd() as usize, &mut buf).ok()?;
            Some(String::from_utf8_lossy(&buf[..len]).into_owned())
        })?;
        let (scheme, vt) = path.rsplit_once('/').ok_or(format!("fpath {path}"))?;
        let vt: usize = vt.parse().map_err(|_| format!("fpath {path}"))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(format!("{scheme}/v2/{vt}"))
            .map_err(err("opening the display"))?;
        let card = Card(file);

        let dumb =
            answers.note("GET_CAP(DUMB_BUFFER)", card.get_driver_capability(DriverCapability::DumbBuffer));
        if dumb.map_err(err("GET_CAP"))? != 1 {
            return Err("no dumb buffers".into());
        }
        if role == Role::Orbital {
            let hotspot = card.set_client_capability(ClientCapability::CursorPlaneHotspot, true);
            answers.note("SET_CLIENT_CAP(CURSOR_PLANE_HOTSPOT)", hotspot).map_err(err("SET_CLIENT_CAP"))?;
            // Without a hardware cursor Orbital draws its own: either answer is fine.
            let _ = answers
                .note("GET_CAP(CURSOR_HEIGHT)", card.get_driver_capability(DriverCapability::CursorHeight));
            let _ = answers
                .note("GET_CAP(CURSOR_WIDTH)", card.get_driver_capability(DriverCapability::CursorWidth));
        }
        let resources = answers.note("MODE_CARD_RES", card.resource_handles()).map_err(err("resources"))?;
        let mut connected = None;
        for &handle in resources.connectors() {
            let info =
                answers.note("GET_CONNECTOR", card.get_connector(handle, true)).map_err(err("connector"))?;
            if info.state() == connector::State::Connected {
                connected = Some(info);
                break;
            }
        }
        let info = connected.ok_or("no connected connector")?;
        let mode = *info.modes().first().ok_or("no modes")?;
        let encoder = info.current_encoder().or(info.encoders().first().copied()).ok_or("no encoder")?;
        let encoder = answers.note("GET_ENCODER", card.get_encoder(encoder)).map_err(err("encoder"))?;
        let crtc: crtc::Handle =
            *resources.filter_crtcs(encoder.possible_crtcs()).first().ok_or("no CRTC for the encoder")?;
        let (width, height) = mode.size();
        let size = (u32::from(width), u32::from(height));
        let dumb = card.create_dumb_buffer(size, DrmFourcc::Xrgb8888, 32);
        let dumb = answers.note("CREATE_DUMB", dumb).map_err(err("CREATE_DUMB"))?;
        let scanout = Scanout { size, pitch: dumb.pitch(), handle: dumb.handle() };
        // The mapping lives as long as the display; the buffer record it borrows, as long as the
        // process (a handful per run).
        let dumb = Box::leak(Box::new(dumb));
        let map = answers.note("MAP_DUMB+mmap", card.map_dumb_buffer(dumb)).map_err(err("map"))?;
        let _ = answers.note(
            "GET_CAP(DUMB_PREFER_SHADOW)",
            card.get_driver_capability(DriverCapability::DumbPreferShadow),
        );
        let fb = answers.note("ADD_FB", card.add_framebuffer(&scanout, 32, 32)).map_err(err("ADD_FB"))?;
        let set = card.set_crtc(crtc, Some(fb), (0, 0), &[info.handle()], Some(mode));
        answers.note("SET_CRTC", set).map_err(err("SET_CRTC"))?;
        Ok(Display {
            role,
            vt,
            scheme: scheme.to_string(),
            connector: info.handle(),
            crtc,
            fb,
            size,
            pitch: scanout.pitch,
            map,
            card,
            _consumer: consumer,
        })
    }

    /// One frame as the consumer draws it: the size poll, the whole `frame` into the mapping, and
    /// DIRTYFB over all of it. Errors are only counted: the real consumers would log them (or have
    /// crashed, which the host's check of the answers catches).
    fn frame(&mut self, frame: &[u8], answers: &mut Answers) {
        let _ = answers.note("GET_CONNECTOR", self.card.get_connector(self.connector, false));
        self.copy(frame);
        let clip = ClipRect::new(0, 0, self.size.0 as u16, self.size.1 as u16);
        let _ = answers.note("DIRTYFB", self.card.dirty_framebuffer(self.fb, &[clip]));
    }

    /// Copies a tightly packed frame into the mapping, row by row at its pitch.
    fn copy(&mut self, frame: &[u8]) {
        let row = self.size.0 as usize * 4;
        let map = self.map.as_mut();
        for (y, line) in frame.chunks_exact(row).enumerate() {
            let at = y * self.pitch as usize;
            map[at..at + row].copy_from_slice(line);
        }
    }

    fn name(&self) -> &'static str {
        match self.role {
            Role::Fbcond => "fbcond",
            Role::Orbital => "orbital",
        }
    }
}

/// Asks inputd to show `vt` (what `inputd -A <vt>` does: a 16-byte activate record).
fn activate(vt: usize) -> io::Result<()> {
    let mut control = File::open("/scheme/input/control")?;
    let mut record = [0u8; 16];
    record[..8].copy_from_slice(&1usize.to_ne_bytes());
    record[8..].copy_from_slice(&vt.to_ne_bytes());
    control.write_all(&record)
}

/// Lines the host types on the serial port.
struct Commands {
    debug: File,
    pending: Vec<u8>,
}

impl Commands {
    fn next(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.pending.iter().position(|&b| b == b'\n' || b == b'\r') {
                let line: Vec<u8> = self.pending.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line).trim().to_string();
                if !line.is_empty() {
                    return Some(line);
                }
                continue;
            }
            let mut buf = [0u8; 64];
            match self.debug.read(&mut buf) {
                Ok(0) => std::thread::sleep(Duration::from_millis(20)),
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                Err(error) => {
                    say(&format!("FAILED: reading /scheme/debug: {error}"));
                    return None;
                }
            }
        }
    }
}

/// How displayd is told to stop: its control path's `unplug`, or SIGTERM.
#[derive(Clone, Copy, PartialEq)]
enum Stop {
    Control,
    Sigterm,
}

struct Client {
    fbcond: Display,
    orbital: Display,
    answers: Answers,
    /// Frames by pattern number, tightly packed at the displays' size.
    patterns: BTreeMap<u32, Vec<u8>>,
    stop: Option<Stop>,
}

impl Client {
    fn start() -> Result<Client, String> {
        let mut answers = Answers::default();
        let fbcond = Display::open(Role::Fbcond, &mut answers)?;
        let orbital = Display::open(Role::Orbital, &mut answers)?;
        if fbcond.size != orbital.size {
            return Err("the two displays got different modes".into());
        }
        let (width, height) = orbital.size;
        let patterns = (1..=3).map(|n| (n, test_pattern::pattern_frame(n, width, height))).collect();
        let mut client = Client { fbcond, orbital, answers, patterns, stop: None };
        client.draw(Role::Fbcond, 2);
        client.draw(Role::Orbital, 1);
        Ok(client)
    }

    fn draw(&mut self, role: Role, pattern: u32) {
        let display = if role == Role::Fbcond { &mut self.fbcond } else { &mut self.orbital };
        display.frame(&self.patterns[&pattern], &mut self.answers);
    }

    fn control(&self) -> io::Result<File> {
        OpenOptions::new().read(true).write(true).open(format!("{}/control", self.orbital.scheme))
    }

    /// Removes the device while both displays draw pattern 1, then draws pattern 3.
    ///
    /// One thread: the stop is started between two frames, and for SIGTERM, which displayd
    /// handles on its own time, drawing goes on until the status line says the device is gone.
    /// (A second thread for the stop crashed the client in relibc's `pthread_join` once that
    /// thread had exited.)
    fn remove(&mut self, stop: Stop) -> Result<String, String> {
        let control = self.control().map_err(err("control"))?;
        let pid = status(&control)?
            .rsplit_once("pid ")
            .and_then(|(_, pid)| pid.parse::<usize>().ok())
            .ok_or("no pid in the status line")?;
        let started = Instant::now();
        let mut before = 0;
        let outcome = loop {
            self.draw(Role::Orbital, 1);
            self.draw(Role::Fbcond, 1);
            before += 1;
            match (before, stop) {
                (5, Stop::Control) => {
                    (&control).write_all(b"unplug").map_err(err("writing unplug"))?;
                    break "control write ok".to_string();
                }
                (5, Stop::Sigterm) => libredox::call::kill(pid, libc::SIGTERM as u32)
                    .map_err(|e| format!("SIGTERM to {pid}: {e}"))?,
                (6.., Stop::Sigterm) => {
                    let status = status(&control)?;
                    if status.starts_with("no device") {
                        break format!("SIGTERM sent; status {status:?}");
                    }
                    if started.elapsed() > DEADLINE {
                        return Err(format!("still {status:?} {DEADLINE:?} after SIGTERM"));
                    }
                }
                _ => {}
            }
        };
        for _ in 0..FRAMES_AFTER_REMOVAL {
            self.draw(Role::Orbital, 3);
            self.draw(Role::Fbcond, 3);
        }
        self.stop = Some(stop);
        Ok(format!(
            "removed ({outcome}) after {before} frames; drew {FRAMES_AFTER_REMOVAL} frames of pattern 3 since"
        ))
    }

    /// Closes every handle; after a control-path unplug, a new open must fail.
    fn close(self) -> String {
        let summary = self.answers.summary();
        let scheme = self.orbital.scheme.clone();
        drop(self.fbcond);
        drop(self.orbital);
        let reopen = match self.stop {
            Some(Stop::Control) => match File::open(format!("{scheme}/v2/3")) {
                Ok(_) => "; a new open: ok".to_string(),
                Err(error) => format!("; a new open: errno {}", error.raw_os_error().unwrap_or(-1)),
            },
            // displayd exits at the last close; an open racing its exit may never be answered
            // (README, Redox notes), so none is tried.
            _ => String::new(),
        };
        format!("closed{reopen}; answers: {summary}")
    }

    /// `count` PAGE_FLIPs with `DRM_MODE_PAGE_FLIP_EVENT`, each awaited through an event queue
    /// subscribed to the display handle, then read with `receive_events`.
    fn flip(&mut self, count: u32) -> Result<String, String> {
        let queue = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CREAT)
            .open("/scheme/event")
            .map_err(err("/scheme/event"))?;
        let subscription = syscall::Event {
            id: self.orbital.card.0.as_raw_fd() as usize,
            flags: syscall::EventFlags::EVENT_READ,
            data: 0,
        };
        // SAFETY: `Event` is plain data; its bytes are what the event scheme reads.
        (&queue).write_all(unsafe { as_bytes(&subscription) }).map_err(err("subscribing"))?;
        let mut events = 0;
        for _ in 0..count {
            let flip =
                self.orbital.card.page_flip(self.orbital.crtc, self.orbital.fb, PageFlipFlags::EVENT, None);
            self.answers.note("PAGE_FLIP(EVENT)", flip).map_err(err("PAGE_FLIP"))?;
            let mut woken = syscall::Event::default();
            // SAFETY: as above; the event scheme writes a whole `Event`.
            (&queue).read_exact(unsafe { as_bytes_mut(&mut woken) }).map_err(err("event queue"))?;
            let received = self.answers.note("read(events)", self.orbital.card.receive_events());
            for event in received.map_err(err("receive_events"))? {
                match event {
                    Event::PageFlip(flip) if flip.crtc == self.orbital.crtc => events += 1,
                    _ => return Err("an event that is not this CRTC's flip completion".into()),
                }
            }
        }
        Ok(format!("flipped {count} times; {events} completion events, each after an event-queue wake"))
    }

    /// The compositor's full-frame loop and a 256×256 DIRTYFB, each against the plain copies of
    /// the same bytes, and an empty call.
    fn bench(&mut self) -> String {
        const FRAMES: u32 = 30;
        const CALLS: u32 = 200;
        let frame = self.patterns[&1].clone();
        let started = Instant::now();
        for _ in 0..FRAMES {
            self.orbital.frame(&frame, &mut self.answers);
        }
        let fps = f64::from(FRAMES) / started.elapsed().as_secs_f64();
        // The floor: the compositor's copy into its mapping and the driver's copy into VRAM.
        let (mut a, mut b) = (vec![0u8; frame.len()], vec![0u8; frame.len()]);
        let started = Instant::now();
        for _ in 0..FRAMES {
            a.copy_from_slice(black_box(&frame));
            b.copy_from_slice(black_box(&a));
        }
        black_box((&a, &b));
        let floor_fps = f64::from(FRAMES) / started.elapsed().as_secs_f64();

        let clip = [ClipRect::new(0, 0, 256, 256)];
        let started = Instant::now();
        for _ in 0..CALLS {
            let _ = self.answers.note("DIRTYFB", self.orbital.card.dirty_framebuffer(self.orbital.fb, &clip));
        }
        let dirty_us = started.elapsed().as_secs_f64() * 1e6 / f64::from(CALLS);
        let pitch = self.orbital.pitch as usize;
        let started = Instant::now();
        for _ in 0..CALLS {
            for y in 0..256 {
                b[y * pitch..y * pitch + 1024].copy_from_slice(black_box(&a[y * pitch..y * pitch + 1024]));
            }
        }
        black_box(&b);
        let rows_us = started.elapsed().as_secs_f64() * 1e6 / f64::from(CALLS);

        let started = Instant::now();
        for _ in 0..CALLS {
            let cap = self.orbital.card.get_driver_capability(DriverCapability::DumbBuffer);
            let _ = self.answers.note("GET_CAP(DUMB_BUFFER)", cap);
        }
        let call_us = started.elapsed().as_secs_f64() * 1e6 / f64::from(CALLS);
        let (width, height) = self.orbital.size;
        format!(
            "bench: full frame {width}x{height} {fps:.0} fps, two memcpys {floor_fps:.0} fps, ratio {:.2}; \
             DIRTYFB 256x256 {dirty_us:.0} us, row copy {rows_us:.0} us, ratio {:.2}; empty call {call_us:.0} us",
            fps / floor_fps,
            rows_us / dirty_us
        )
    }
}

/// The bytes of a plain-data value.
///
/// # Safety
/// `T` must be plain data without padding.
unsafe fn as_bytes<T>(value: &T) -> &[u8] {
    // SAFETY: the caller promises plain data; the slice covers exactly `value`.
    unsafe { std::slice::from_raw_parts((value as *const T).cast(), std::mem::size_of::<T>()) }
}

/// The bytes of a plain-data value, to be overwritten.
///
/// # Safety
/// `T` must be plain data for which every byte pattern is valid.
unsafe fn as_bytes_mut<T>(value: &mut T) -> &mut [u8] {
    // SAFETY: the caller promises plain data; the slice covers exactly `value`.
    unsafe { std::slice::from_raw_parts_mut((value as *mut T).cast(), std::mem::size_of::<T>()) }
}

/// displayd's status line, read from the start of its control file.
fn status(control: &File) -> Result<String, String> {
    let mut status = [0u8; 160];
    let len = control.read_at(&mut status, 0).map_err(err("control status"))?;
    Ok(String::from_utf8_lossy(&status[..len]).trim().to_string())
}

fn main() {
    say("started");
    let mut client = match Client::start() {
        Ok(client) => client,
        Err(error) => {
            say(&format!("FAILED: {error}"));
            std::process::exit(1);
        }
    };
    let (width, height) = client.orbital.size;
    say(&format!(
        "ready: {} {}x{}; {} vt {} pattern 2; {} vt {} pattern 1",
        client.orbital.scheme.trim_start_matches("/scheme/"),
        width,
        height,
        client.fbcond.name(),
        client.fbcond.vt,
        client.orbital.name(),
        client.orbital.vt,
    ));
    let debug = match File::open("/scheme/debug") {
        Ok(debug) => debug,
        Err(error) => {
            say(&format!("FAILED: /scheme/debug: {error}"));
            std::process::exit(1);
        }
    };
    let mut commands = Commands { debug, pending: Vec::new() };
    while let Some(command) = commands.next() {
        let words: Vec<&str> = command.split_whitespace().collect();
        let reply = match words[..] {
            ["show", vt] => match vt.parse() {
                Ok(vt) => {
                    activate(vt).map(|()| format!("asked for vt {vt}")).map_err(|e| format!("show: {e}"))
                }
                Err(_) => Err(format!("show: bad vt {vt:?}")),
            },
            ["bench"] => Ok(client.bench()),
            ["flip", n] => match n.parse::<u32>() {
                Ok(n) => client.flip(n),
                Err(_) => Err(format!("flip: bad count {n:?}")),
            },
            ["unplug"] => client.remove(Stop::Control),
            ["sigterm"] => client.remove(Stop::Sigterm),
            ["more", n] => match n.parse::<u32>() {
                Ok(n) => {
                    for _ in 0..n {
                        client.draw(Role::Orbital, 3);
                        client.draw(Role::Fbcond, 3);
                    }
                    Ok(format!("drew {n} more frames of pattern 3"))
                }
                Err(_) => Err(format!("more: bad count {n:?}")),
            },
            ["close"] => {
                say(&client.close());
                return;
            }
            _ => Err(format!("unknown command {command:?}")),
        };
        match reply {
            Ok(line) => say(&line),
            Err(error) => say(&format!("FAILED: {error}")),
        }
    }
}
