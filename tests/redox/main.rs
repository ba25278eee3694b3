//! The end-to-end test on Redox (issue #11): displayd spawned by pcid-spawner on a Redox built from
//! pinned sources, drawn on by a client that speaks through the `drm` crate and relibc.
//!
//! `scripts/redox-image` builds the system (the kit in `../shared/redox`, cached under
//! `~/.cache/displayd/redox/<kit hash>`) and the image: a RedoxFS root filesystem with displayd
//! installed where `recipe.toml` installs it and `config/pcid.toml` as its pcid-spawner entry, and
//! the test client (`tests/redox/client`), which init starts once pcid-spawner is done. Four boots under TCG, for `-device bochs-display` and `-vga std`, each
//! removing the device one way while the client draws:
//!
//! 1. The root filesystem's pcid-spawner spawns displayd, which registers `display.bochs.pci-…`, opens its inputd handle
//!    and reports ready; its log reaches the serial console.
//! 2. The client opens an fbcond-like console (pattern 2) and an Orbital-like compositor (pattern 1)
//!    on two VTs; inputd switches to the compositor's VT and every pixel of the screen must be
//!    pattern 1. On the `unplug` boots the host also switches to the console and back (pattern 2,
//!    then 1) and runs the client's benchmark.
//! 3. The stop, while both draw: the administrator's `unplug` on displayd's control path, or
//!    SIGTERM to displayd as at shutdown. Once it is complete the client draws pattern 3, which must
//!    reach neither the screen nor VRAM (read with QMP `pmemsave`): both are looked at after 20 and
//!    after 40 more frames, and VRAM must still hold the last frame from before the stop.
//! 4. The client closes everything: displayd logs that the device object was freed; after the
//!    control-path unplug a new open fails with ENODEV, and after SIGTERM displayd exits 0.
//! 5. Every answer the client got must be one Orbital and fbcond live with (all succeed except the
//!    cursor-size queries: there is no hardware cursor), and the serial log shows no panic, no
//!    fault and no failed service from any process.
//!
//! Artifacts (serial log, screenshots as PNG) stay in `target/tmp/redox-e2e/<boot>/`.
//! `DISPLAYD_REDOX=skip` skips these tests with a message (where the kit cannot be built).

#[path = "../common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use common::qmp::Qmp;
use common::screen::{read_ppm, save_png};
use common::Qemu;
use displayd_testkit::test_pattern::test_pattern;
use serde_json::{json, Value};

/// Generous: a cold TCG boot on a loaded 2-core machine.
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
const STEP_TIMEOUT: Duration = Duration::from_secs(120);

/// The client's line prefix (tests/redox/client).
const CLIENT: &str = "displayd-client: ";

/// QEMU's preferred EDID mode, which both consumers take.
const SIZE: (u32, u32) = (1280, 800);

/// How displayd is told to stop while the client draws: its control path's `unplug`, or SIGTERM.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Stop {
    Control,
    Sigterm,
}

#[test]
fn bochs_display_on_redox_is_unplugged_through_the_control_path() {
    run("bochs-display", Stop::Control);
}

#[test]
fn bochs_display_on_redox_survives_sigterm_under_a_drawing_client() {
    run("bochs-display", Stop::Sigterm);
}

#[test]
fn std_vga_on_redox_is_unplugged_through_the_control_path() {
    run("vga-std", Stop::Control);
}

#[test]
fn std_vga_on_redox_survives_sigterm_under_a_drawing_client() {
    run("vga-std", Stop::Sigterm);
}

fn run(model: &str, stop: Stop) {
    if std::env::var("DISPLAYD_REDOX").is_ok_and(|v| v == "skip") {
        eprintln!("SKIPPED: the Redox end-to-end test ({model}, {stop:?}), because DISPLAYD_REDOX=skip");
        return;
    }
    let image = image().as_ref().unwrap_or_else(|e| panic!("{e}"));
    let name = format!("{model}-{}", if stop == Stop::Control { "unplug" } else { "sigterm" });
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("redox-e2e").join(&name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut machine = Machine::boot(&dir, image, model).unwrap_or_else(|e| panic!("{name}: {e}"));
    if let Err(error) = machine.scenario(stop) {
        let log = machine.serial();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        panic!(
            "{name}: {error}\nartifacts (serial log, screenshots) in {}\nlast serial lines:\n{}",
            dir.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
}

/// The image, built once for all boots of this run.
fn image() -> &'static Result<PathBuf, String> {
    static IMAGE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("redox-image");
        let output = Command::new(root.join("scripts/redox-image"))
            .arg(&out)
            .stderr(Stdio::inherit())
            .output()
            .map_err(|e| format!("scripts/redox-image: {e}"))?;
        if !output.status.success() {
            return Err(format!("scripts/redox-image failed ({})", output.status));
        }
        Ok(PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
    })
}

/// A booted Redox: QEMU, its serial port (both ways) and QMP.
struct Machine {
    dir: PathBuf,
    qemu: Qemu,
    qmp: Qmp,
    serial: UnixStream,
    /// Everything the serial port printed so far (also in `serial.log`).
    log: Arc<Mutex<Vec<u8>>>,
    booted: Instant,
}

impl Machine {
    fn boot(dir: &Path, image: &Path, model: &str) -> Result<Machine, String> {
        let serial_socket = dir.join("serial.sock");
        let qmp_socket = dir.join("qmp.sock");
        let mut command = Command::new("qemu-system-x86_64");
        command
            .args(["-machine", "q35", "-accel", "tcg", "-cpu", "max", "-smp", "1", "-m", "1024"])
            .args(["-display", "none", "-no-reboot", "-net", "none"])
            .args(match model {
                "bochs-display" => ["-vga", "none", "-device", "bochs-display"].as_slice(),
                _ => ["-vga", "std"].as_slice(),
            })
            // The serial port is a socket QEMU waits on, so no early line is lost.
            .arg("-chardev")
            .arg(format!("socket,id=serial,path={},server=on,wait=on", serial_socket.display()))
            .args(["-serial", "chardev:serial"])
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp_socket.display()))
            // Every boot reads the same image; its writes go to a throw-away overlay.
            .arg("-drive")
            .arg(format!("file={},format=raw,snapshot=on", image.display()));
        let booted = Instant::now();
        let qemu = Qemu::spawn(command, dir)?;
        let serial = connect(&serial_socket)?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut file = std::fs::File::create(dir.join("serial.log")).map_err(|e| e.to_string())?;
        let mut reader = serial.try_clone().map_err(|e| e.to_string())?;
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                let _ = file.write_all(&buf[..n]);
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        let qmp = Qmp::connect(&qmp_socket, Duration::from_secs(30))?;
        Ok(Machine { dir: dir.to_path_buf(), qemu, qmp, serial, log, booted })
    }

    fn serial(&self) -> String {
        String::from_utf8_lossy(&self.log.lock().unwrap()).into_owned()
    }

    /// The serial log's complete lines: a line still being written (the guest writes a line in
    /// pieces) must not be taken for the whole of it.
    fn lines(&self) -> String {
        let log = self.log.lock().unwrap();
        let end = log.iter().rposition(|&b| b == b'\n').map_or(0, |at| at + 1);
        String::from_utf8_lossy(&log[..end]).into_owned()
    }

    /// Waits until the serial log has a line containing `text`; returns the rest of that line after
    /// it. Fails early when the client reports a failure or QEMU exits.
    fn wait_for(&mut self, text: &str, timeout: Duration) -> Result<String, String> {
        common::poll(
            timeout,
            Duration::from_millis(50),
            || format!("no `{text}` on the serial port in {timeout:?}"),
            || {
                let log = self.lines();
                if let Some(rest) = log.lines().find_map(|line| line.split_once(text).map(|(_, rest)| rest)) {
                    return Ok(Some(rest.trim_end().to_string()));
                }
                if let Some(failed) = log.lines().find(|line| line.contains(&format!("{CLIENT}FAILED"))) {
                    return Err(format!("the client reported: {failed}"));
                }
                match self.qemu.0.try_wait() {
                    Ok(Some(status)) => Err(format!("QEMU exited ({status}) before `{text}`")),
                    _ => Ok(None),
                }
            },
        )
    }

    /// Types `line` for the client and waits for its answer starting with `answer`.
    fn command(&mut self, line: &str, answer: &str) -> Result<String, String> {
        let count = self.lines().matches(&format!("{CLIENT}{answer}")).count();
        writeln!(self.serial, "{line}").map_err(|e| format!("serial: {e}"))?;
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            // The answer to this command, not an earlier one with the same start.
            let log = self.lines();
            let mut answers = log.lines().filter_map(|l| l.split_once(&format!("{CLIENT}{answer}")));
            if let Some((_, rest)) = answers.nth(count) {
                return Ok(rest.trim_end().to_string());
            }
            if let Some(failed) = log.lines().find(|l| l.contains(&format!("{CLIENT}FAILED"))) {
                return Err(format!("`{line}`: the client reported: {failed}"));
            }
            if Instant::now() > deadline {
                return Err(format!("`{line}`: no `{answer}` from the client in {STEP_TIMEOUT:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Presses Enter until the kernel starts: the BIOS bootloader waits in its video-mode menu.
    fn start_kernel(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + BOOT_TIMEOUT;
        while !self.serial().contains("Redox OS starting") {
            if Instant::now() > deadline {
                return Err(format!("the kernel did not start in {BOOT_TIMEOUT:?}"));
            }
            let keys = json!({ "keys": [{ "type": "qcode", "data": "ret" }] });
            self.qmp.execute("send-key", keys)?;
            std::thread::sleep(Duration::from_millis(500));
        }
        Ok(())
    }

    /// A screendump as RGB rows, kept as `<name>.png`.
    fn screen(&mut self, name: &str) -> Result<(u32, u32, Vec<u8>), String> {
        let ppm = self.dir.join(format!("{name}.ppm"));
        self.qmp.execute("screendump", json!({ "filename": ppm }))?;
        let (width, height, rgb) = read_ppm(&ppm)?;
        save_png(&self.dir.join(format!("{name}.png")), width, height, &rgb)?;
        let _ = std::fs::remove_file(&ppm);
        Ok((width, height, rgb))
    }

    /// Waits until the screen is exactly `pattern` at [`SIZE`] (a VT switch reaches the screen on
    /// its own time); fails with the last difference seen.
    fn wait_screen(&mut self, name: &str, pattern: u32) -> Result<Duration, String> {
        let start = Instant::now();
        loop {
            let (width, height, rgb) = self.screen(name)?;
            let difference = if (width, height) != SIZE {
                format!("the screen is {width}x{height}")
            } else {
                let wrong = pixels(&rgb, width).filter(|&(x, y, p)| p != test_pattern(pattern, x, y)).count();
                if wrong == 0 {
                    return Ok(start.elapsed());
                }
                format!("{wrong} of {} pixels differ", width * height)
            };
            if start.elapsed() > STEP_TIMEOUT {
                return Err(format!("{name}: not pattern {pattern} after {STEP_TIMEOUT:?}: {difference}"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// VRAM's first frame (BAR0 read with `pmemsave`), as RGB rows at [`SIZE`].
    fn vram(&mut self, name: &str) -> Result<Vec<u8>, String> {
        let base = bar0(&self.qmp.execute("query-pci", json!({}))?)?;
        let file = self.dir.join(format!("{name}.vram"));
        let size = SIZE.0 * SIZE.1 * 4;
        self.qmp.execute("pmemsave", json!({ "val": base, "size": size, "filename": file }))?;
        let bytes = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let _ = std::fs::remove_file(&file);
        if bytes.len() != size as usize {
            return Err(format!("pmemsave wrote {} bytes, not {size}", bytes.len()));
        }
        // XRGB8888 at pitch width × 4, as displayd sets the mode.
        Ok(bytes.chunks_exact(4).flat_map(|p| [p[2], p[1], p[0]]).collect())
    }

    fn scenario(&mut self, stop: Stop) -> Result<(), String> {
        self.start_kernel()?;
        let ready = self.wait_for(&format!("{CLIENT}ready: "), BOOT_TIMEOUT)?;
        let to_ready = self.booted.elapsed();
        // "display.bochs.pci-0000-00-01.0 1280x800; fbcond vt 2 pattern 2; orbital vt 3 pattern 1"
        let fields: Vec<&str> = ready.split([' ', ';']).filter(|f| !f.is_empty()).collect();
        let (scheme, size, fbcond_vt, orbital_vt) = match fields[..] {
            [scheme, size, "fbcond", "vt", fbcond, "pattern", "2", "orbital", "vt", orbital, "pattern", "1"] => {
                (scheme.to_string(), size, fbcond.to_string(), orbital.to_string())
            }
            _ => return Err(format!("the client's ready line is {ready:?}")),
        };
        if !scheme.starts_with("display.bochs.pci-") || size != format!("{}x{}", SIZE.0, SIZE.1) {
            return Err(format!("the client's ready line is {ready:?}"));
        }
        // The root filesystem's pcid-spawner, from the entry recipe.toml installs.
        self.wait_for("pcid-spawner: spawn \"/usr/lib/drivers/displayd\"", STEP_TIMEOUT)?;
        self.wait_for(&format!("start: ready as {scheme}"), STEP_TIMEOUT)?;

        self.command(&format!("show {orbital_vt}"), "asked for vt")?;
        let shown = self.wait_screen("1-pattern-1", 1)?;
        let vram = self.vram("1-pattern-1")?;
        let wrong = pixels(&vram, SIZE.0).filter(|&(x, y, p)| p != test_pattern(1, x, y)).count();
        if wrong != 0 {
            return Err(format!("VRAM: {wrong} pixels differ from pattern 1 while the screen shows it"));
        }
        let mut bench = String::new();
        if stop == Stop::Control {
            self.command(&format!("show {fbcond_vt}"), "asked for vt")?;
            self.wait_screen("2-console-pattern-2", 2)?;
            self.command(&format!("show {orbital_vt}"), "asked for vt")?;
            self.wait_screen("3-back-to-pattern-1", 1)?;
            let flipped = self.command("flip 2", "flipped ")?;
            if !flipped.starts_with("2 times; 2 completion events") {
                return Err(format!("page flips: {flipped}"));
            }
            self.wait_screen("4-after-the-flips", 1)?;
            bench = self.command("bench", "bench: ")?;
        }

        let removed = self.command(if stop == Stop::Control { "unplug" } else { "sigterm" }, "removed ")?;
        let first = (self.screen("5-after-stop")?, self.vram("5-after-stop")?);
        self.command("more 40", "drew 40 more")?;
        let second = (self.screen("6-40-frames-later")?, self.vram("6-40-frames-later")?);
        for (name, ((width, _, screen), vram)) in [("after the stop", &first), ("40 frames later", &second)] {
            for (what, rgb, width) in [("screen", screen, *width), ("VRAM", vram, SIZE.0)] {
                let drawn = pixels(rgb, width).filter(|&(x, y, p)| p == test_pattern(3, x, y)).count();
                // A few pixels of any picture match by chance; a frame that got through matches all.
                if drawn * 100 > rgb.len() / 3 {
                    return Err(format!(
                        "{what} {name}: {drawn} pixels show pattern 3, drawn after the stop"
                    ));
                }
            }
        }
        // The stop froze VRAM at the last frame before it, which was pattern 1.
        if first.1 != vram || second.1 != vram {
            return Err("VRAM changed after the stop while the client drew".into());
        }

        let closed = self.command("close", "closed")?;
        let freed = self.wait_for("device object freed", STEP_TIMEOUT)?;
        match stop {
            Stop::Control if !closed.starts_with("; a new open: errno 19;") => {
                return Err(format!("after the unplug a new open must fail with ENODEV: {closed}"));
            }
            Stop::Sigterm => {
                self.wait_for("exiting with status 0", STEP_TIMEOUT)?;
            }
            _ => {}
        }
        check_answers(&closed)?;
        check_log(&self.serial())?;
        eprintln!(
            "{}: client ready {to_ready:.1?} after QEMU started, pattern 1 on screen {shown:.1?} later; \
             {bench}; removed {removed}; {}",
            self.dir.file_name().unwrap_or_default().to_string_lossy(),
            freed.trim()
        );
        let _ = self.qmp.execute("quit", json!({}));
        Ok(())
    }
}

fn connect(path: &Path) -> Result<UnixStream, String> {
    let start = Instant::now();
    loop {
        match UnixStream::connect(path) {
            Ok(stream) => return Ok(stream),
            Err(_) if start.elapsed() < Duration::from_secs(30) => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(error) => return Err(format!("serial socket {}: {error}", path.display())),
        }
    }
}

/// Every pixel of tightly packed RGB rows `width` wide, with its position.
fn pixels(rgb: &[u8], width: u32) -> impl Iterator<Item = (u32, u32, [u8; 3])> + '_ {
    rgb.chunks_exact(3)
        .enumerate()
        .map(move |(i, p)| (i as u32 % width, i as u32 / width, [p[0], p[1], p[2]]))
}

/// BAR0's address of the Bochs adapter (1234:1111) in a `query-pci` answer.
fn bar0(pci: &Value) -> Result<u64, String> {
    let devices =
        pci.as_array().into_iter().flatten().flat_map(|bus| bus["devices"].as_array().into_iter().flatten());
    for device in devices {
        if device["id"]["vendor"] == 0x1234 && device["id"]["device"] == 0x1111 {
            let regions = device["regions"].as_array().into_iter().flatten();
            if let Some(bar) = regions.into_iter().find(|r| r["bar"] == 0) {
                return bar["address"].as_u64().ok_or("BAR0 has no address".into());
            }
        }
    }
    Err("no 1234:1111 function in query-pci".into())
}

/// The client's `answers: CALL=answer*n/... ...`: every call must have succeeded every time,
/// except the cursor-size queries (no hardware cursor: Orbital then draws its own).
fn check_answers(closed: &str) -> Result<(), String> {
    let (_, answers) = closed.split_once("answers: ").ok_or(format!("no answers in {closed:?}"))?;
    let mut calls = 0;
    for entry in answers.split_whitespace() {
        let (call, answers) = entry.split_once('=').ok_or(format!("answer entry {entry:?}"))?;
        calls += 1;
        for answer in answers.split('/') {
            let (answer, _count) = answer.split_once('*').ok_or(format!("answer {answer:?}"))?;
            let allowed = answer == "ok" || (call.starts_with("GET_CAP(CURSOR_") && answer == "errno-22");
            if !allowed {
                return Err(format!("{call} answered {answer}; all answers: {answers}"));
            }
        }
    }
    for call in ["GET_CONNECTOR", "DIRTYFB", "SET_CRTC", "ADD_FB", "CREATE_DUMB"] {
        if !answers.contains(&format!("{call}=")) {
            return Err(format!("the client never called {call}: {answers}"));
        }
    }
    (calls > 0).then_some(()).ok_or("no answers".into())
}

/// The serial log must show no panic, fault or failed service from any process.
fn check_log(log: &str) -> Result<(), String> {
    const SIGNS: [&str; 6] =
        ["panicked", "PANIC", "EXCEPTION", "without notifying readiness", "failed with", "FAILED"];
    for line in log.lines() {
        let words = line.split(|c: char| !c.is_ascii_alphanumeric());
        if SIGNS.iter().any(|sign| line.contains(sign))
            || words.into_iter().any(|w| w == "fault" || w == "Fault")
        {
            return Err(format!("the serial log shows a failure: {line}"));
        }
    }
    Ok(())
}

#[test]
fn the_log_check_catches_panics_faults_and_failed_services_but_not_ordinary_words() {
    assert!(check_log("init: \"pcid\" exited without notifying readiness").is_err());
    assert!(check_log("RELIBC PANIC: panicked at x.rs:1").is_err());
    assert!(check_log("Page fault: 0 at 0").is_err());
    assert!(check_log("using the default mode\nall fine").is_ok());
}

#[test]
fn the_answer_check_allows_only_what_orbital_and_fbcond_live_with() {
    let good =
        "closed; answers: ADD_FB=ok*2 CREATE_DUMB=ok*2 DIRTYFB=ok*90 GET_CAP(CURSOR_WIDTH)=errno-22*1 \
                GET_CONNECTOR=ok*9 SET_CRTC=ok*2";
    assert!(check_answers(good).is_ok());
    assert!(check_answers(&good.replace("DIRTYFB=ok*90", "DIRTYFB=ok*89/errno-19*1")).is_err());
    assert!(check_answers(&good.replace("DIRTYFB=ok*90", "DIRTYFB=ok")).is_err(), "malformed");
    assert!(check_answers(&good.replace(" SET_CRTC=ok*2", "")).is_err(), "a missing call");
}
