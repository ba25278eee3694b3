//! The end-to-end test on QEMU's own Bochs device models (issue #7), one test per model.
//!
//! A Linux guest (Debian's kernel, busybox, and the test kit's `guest`, displayd's Linux platform
//! with in-process clients, built static) boots under TCG with the adapter on a PCIe root port. In
//! it, `guest` binds the adapter through sysfs and an
//! Orbital-like client draws test pattern 1; the host reads the real scanout with QMP `screendump`
//! and compares every pixel. The host then hot-unplugs the adapter with `device_del` while the client
//! draws: displayd must notice, unplug, and keep the client's handle answering. A new adapter is
//! `device_add`ed: displayd binds it as device object 2, a fresh client draws pattern 2, and every
//! pixel is checked again; the first client then closes, late, and device object 1 must be freed.
//! The guest's console must show no failure and no kernel fault.
//!
//! * `bochs-display` leaves no DEVICE_DELETED event in QEMU 7.2 and cannot come back in the same
//!   slot, so removal is complete when it is gone from `/machine/peripheral`, and the new one goes
//!   on the second root port (which reserves 32 MiB of prefetchable window for its VRAM).
//! * `secondary-vga` sends DEVICE_DELETED and comes back in the same slot, at the same addresses:
//!   an old mapping still in use would draw on the new adapter. It also shows nothing until the
//!   VGA attribute controller is unblanked.
//!
//! Needs `qemu-system-x86_64`, a static `/bin/busybox` and a kernel at `DISPLAYD_QEMU_KERNEL`
//! (default `~/.cache/displayd/vmlinuz`); `scripts/install-deps` provides all three. Where QEMU
//! cannot be installed, `DISPLAYD_QEMU=skip` skips these tests with a message; otherwise a missing
//! piece is a failure that names it. Artifacts (console log, screenshots as PNG) stay in
//! `target/tmp/qemu-e2e/<model>/`.

#[path = "../common/mod.rs"]
mod common;
mod initramfs;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use displayd::linux::hotplug::{progress_line, MARK};
use displayd_testkit::test_pattern::test_pattern;
use serde_json::json;

use common::qmp::Qmp;
use common::screen::{read_ppm, save_png};
use common::Qemu;

/// How one device model is unplugged and plugged back.
struct Model {
    driver: &'static str,
    /// The root port the new adapter goes on.
    replug_bus: &'static str,
    /// Whether QEMU announces the removal with DEVICE_DELETED.
    sends_device_deleted: bool,
}

/// The mode QEMU's EDID prefers, which the client takes.
const PREFERRED: &str = "1280x800";

const BOOT_TIMEOUT: Duration = Duration::from_secs(120);
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn bochs_display_is_driven_unplugged_while_drawing_and_replugged_on_another_port() {
    run(Model { driver: "bochs-display", replug_bus: "rp2", sends_device_deleted: false });
}

#[test]
fn secondary_vga_is_driven_unplugged_while_drawing_and_replugged_in_the_same_slot() {
    run(Model { driver: "secondary-vga", replug_bus: "rp1", sends_device_deleted: true });
}

fn run(model: Model) {
    if std::env::var("DISPLAYD_QEMU").is_ok_and(|v| v == "skip") {
        eprintln!("SKIPPED: the QEMU end-to-end test ({}), because DISPLAYD_QEMU=skip", model.driver);
        return;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("qemu-e2e").join(model.driver);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut machine = Machine::boot(&dir, model.driver).unwrap_or_else(|e| panic!("{e}"));
    if let Err(error) = machine.scenario(&model) {
        let log = std::fs::read_to_string(machine.console()).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        panic!(
            "{}: {error}\nartifacts (console log, screenshots) in {}\nlast console lines:\n{}",
            model.driver,
            dir.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
}

/// A running guest and its QMP connection.
struct Machine {
    dir: PathBuf,
    qemu: Qemu,
    qmp: Qmp,
    booted: Instant,
}

impl Machine {
    fn boot(dir: &Path, driver: &str) -> Result<Machine, String> {
        let kernel = kernel()?;
        let initrd = dir.join("initrd.cpio");
        std::fs::write(&initrd, initramfs(guest_binary()?)?).map_err(|e| e.to_string())?;
        let qmp_socket = dir.join("qmp.sock");
        let console = dir.join("console.log");
        let mut command = Command::new("qemu-system-x86_64");
        command
            .args(["-machine", "q35", "-accel", "tcg", "-m", "256M", "-smp", "1"])
            .args(["-display", "none", "-vga", "none", "-nodefaults", "-no-reboot"])
            .arg("-serial")
            .arg(format!("file:{}", console.display()))
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp_socket.display()))
            .arg("-kernel")
            .arg(&kernel)
            .arg("-initrd")
            .arg(&initrd)
            .args(["-append", "console=ttyS0 panic=-1 loglevel=4"])
            .args(["-device", "pcie-root-port,id=rp1,chassis=1,slot=1"])
            .args(["-device", "pcie-root-port,id=rp2,chassis=2,slot=2,pref32-reserve=32M"])
            .args(["-device", &format!("{driver},id=video1,bus=rp1")]);
        let booted = Instant::now();
        let qemu = Qemu::spawn(command, dir)?;
        let qmp = Qmp::connect(&qmp_socket, Duration::from_secs(20))?;
        Ok(Machine { dir: dir.to_path_buf(), qemu, qmp, booted })
    }

    fn console(&self) -> PathBuf {
        self.dir.join("console.log")
    }

    /// Waits for the guest's progress line starting with `MARK` + `line` and returns its rest.
    fn wait_for(&mut self, line: &str, timeout: Duration) -> Result<String, String> {
        let console = self.console();
        let waited_for = || format!("no `{MARK} {line}` on the console in {timeout:?}");
        common::poll(timeout, Duration::from_millis(100), waited_for, || {
            let log = std::fs::read_to_string(&console).unwrap_or_default();
            if let Some(rest) = progress_line(&log, line) {
                return Ok(Some(rest.to_string()));
            }
            if let Some(failed) = progress_line(&log, "FAILED") {
                return Err(format!("the guest reported: FAILED{failed}"));
            }
            match self.qemu.0.try_wait() {
                Ok(Some(status)) => Err(format!("QEMU exited ({status}) before `{line}`")),
                _ => Ok(None),
            }
        })
    }

    /// Screendumps `device`, keeps it as `<name>.png`, and checks that it is `size` (as the guest
    /// reported it, `1280x800`) and that every pixel is `pattern`'s.
    fn check_screen(&mut self, device: &str, name: &str, size: &str, pattern: u32) -> Result<(), String> {
        let ppm = self.dir.join(format!("{name}.ppm"));
        self.qmp.execute("screendump", json!({ "filename": ppm, "device": device }))?;
        let (width, height, rgb) = read_ppm(&ppm)?;
        save_png(&self.dir.join(format!("{name}.png")), width, height, &rgb)?;
        let _ = std::fs::remove_file(&ppm);
        if format!("{width}x{height}") != size {
            return Err(format!("{name}: the screen is {width}x{height}, the guest set {size}"));
        }
        let mut wrong = 0usize;
        let mut first_wrong = None;
        for (i, pixel) in rgb.chunks(3).enumerate() {
            let (x, y) = (i as u32 % width, i as u32 / width);
            if pixel != test_pattern(pattern, x, y) {
                wrong += 1;
                first_wrong.get_or_insert((x, y, pixel.to_vec()));
            }
        }
        match first_wrong {
            None => Ok(()),
            Some((x, y, seen)) => Err(format!(
                "{name}: {wrong} of {} pixels differ from pattern {pattern}; first at ({x}, {y}): {seen:?}, \
                 expected {:?}",
                width * height,
                test_pattern(pattern, x, y)
            )),
        }
    }

    fn scenario(&mut self, model: &Model) -> Result<(), String> {
        let shown = self.wait_for("device 1 shows pattern 1 at ", BOOT_TIMEOUT)?;
        let boot = self.booted.elapsed();
        if shown != PREFERRED {
            return Err(format!("the guest set {shown}, not QEMU's preferred {PREFERRED}"));
        }
        self.check_screen("video1", "1-pattern-1", &shown, 1)?;

        let unplugged = Instant::now();
        self.qmp.execute("device_del", json!({ "id": "video1" }))?;
        let why = self.wait_for("device 1 unplugged (", STEP_TIMEOUT)?;
        let noticed = unplugged.elapsed();
        let deadline = Instant::now() + STEP_TIMEOUT;
        while self.qmp.peripherals()?.iter().any(|id| id == "video1") {
            if Instant::now() > deadline {
                return Err("video1 is still in /machine/peripheral after device_del".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if model.sends_device_deleted {
            self.qmp.wait_event("DEVICE_DELETED", "video1", STEP_TIMEOUT)?;
        }

        let replugged = Instant::now();
        let new_device = format!("{},id=video2,bus={}", model.driver, model.replug_bus);
        self.qmp.execute(
            "device_add",
            json!({ "driver": model.driver, "id": "video2", "bus": model.replug_bus }),
        )?;
        let bound = self.wait_for("bound device 2 at ", STEP_TIMEOUT)?;
        let shown = self.wait_for("device 2 shows pattern 2 at ", STEP_TIMEOUT)?;
        let redrawn = replugged.elapsed();
        self.check_screen("video2", "2-pattern-2", &shown, 2)?;

        // The first client drew on while the new screen held still; had any of it reached the new
        // adapter (secondary-vga is back at the old addresses), this screen would show it.
        let orphan = self.wait_for("client 1 drew ", STEP_TIMEOUT)?;
        let freed = self.wait_for("client 1 closed late; device object 1 freed", STEP_TIMEOUT)?;
        self.check_screen("video2", "3-after-the-late-close", &shown, 2)?;
        let log = std::fs::read_to_string(self.console()).map_err(|e| e.to_string())?;
        const FAULTS: [&str; 9] = [
            "FAILED",
            "BUG:",
            "Oops",
            "general protection",
            "segfault",
            "Kernel panic",
            "traps:",
            "Call Trace",
            "WARNING:",
        ];
        if let Some(line) = log.lines().find(|l| FAULTS.iter().any(|f| l.contains(f))) {
            return Err(format!("the guest log shows a fault: {line}"));
        }
        eprintln!(
            "{}: boot to pattern 1 on screen {boot:.1?} ({shown}); device_del noticed in {noticed:.2?} \
             ({}; device 1 unplugged ({why}); device_add {new_device} to pattern 2 on screen {redrawn:.2?} \
             (bound device 2 at {bound}); client 1 drew {orphan}; device object 1 freed{freed}",
            model.driver,
            if model.sends_device_deleted { "DEVICE_DELETED seen" } else { "gone from qom-list" },
        );
        let _ = self.qmp.execute("quit", json!({}));
        Ok(())
    }
}

/// The guest kernel.
fn kernel() -> Result<PathBuf, String> {
    let path = std::env::var_os("DISPLAYD_QEMU_KERNEL").map(PathBuf::from).unwrap_or_else(|| {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache"));
        cache.join("displayd/vmlinuz")
    });
    match path.exists() {
        true => Ok(path),
        false => Err(format!("no guest kernel at {} (scripts/install-deps unpacks one)", path.display())),
    }
}

/// The test kit's `guest` built static, once per test run.
fn guest_binary() -> Result<&'static Path, String> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let target_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("guest-build");
            let target = "x86_64-unknown-linux-gnu";
            let status = Command::new(env!("CARGO"))
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .args([
                    "build",
                    "--release",
                    "--no-default-features",
                    "--package",
                    "displayd-testkit",
                    "--bin",
                    "guest",
                    "--target",
                    target,
                ])
                .arg("--target-dir")
                .arg(&target_dir)
                .env_remove("CARGO_ENCODED_RUSTFLAGS")
                .env("RUSTFLAGS", "-C target-feature=+crt-static")
                .status()
                .map_err(|e| format!("cargo: {e}"))?;
            match status.success() {
                true => Ok(target_dir.join(target).join("release/guest")),
                false => Err(format!("the static guest build failed ({status})")),
            }
        })
        .as_deref()
        .map_err(Clone::clone)
}

/// busybox, checked to be static (the dynamic build needs a libc the guest does not have).
fn busybox() -> Result<Vec<u8>, String> {
    let path = "/bin/busybox";
    let bytes =
        std::fs::read(path).map_err(|e| format!("{path} (busybox-static, scripts/install-deps): {e}"))?;
    match has_interpreter(&bytes) {
        Some(false) => {}
        Some(true) => return Err(format!("{path} is dynamically linked: install busybox-static")),
        None => return Err(format!("{path} is not an x86-64 ELF program")),
    }
    Ok(bytes)
}

/// Whether `elf` is a 64-bit little-endian ELF file that asks for a dynamic loader (has a PT_INTERP
/// program header); `None` if it is not such a file.
fn has_interpreter(elf: &[u8]) -> Option<bool> {
    const PT_INTERP: u64 = 3;
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let word = |at: usize, len: usize| {
        let bytes = elf.get(at..at.checked_add(len)?)?;
        Some(bytes.iter().rev().fold(0u64, |v, &x| v << 8 | u64::from(x)))
    };
    let table = usize::try_from(word(0x20, 8)?).ok()?;
    let (entry_size, entries) = (word(0x36, 2)? as usize, word(0x38, 2)? as usize);
    for i in 0..entries {
        let at = table.checked_add(i.checked_mul(entry_size)?)?;
        if word(at, 4)? == PT_INTERP {
            return Some(true);
        }
    }
    Some(false)
}

const INIT: &str = "#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/guest
echo \"init: guest exited with status $?\"
/bin/busybox poweroff -f
";

fn initramfs(guest: &Path) -> Result<Vec<u8>, String> {
    let mut archive = initramfs::Archive::default();
    for directory in ["bin", "dev", "proc", "sys"] {
        archive.directory(directory);
    }
    archive.file("bin/busybox", 0o755, &busybox()?);
    let binary = std::fs::read(guest).map_err(|e| format!("{}: {e}", guest.display()))?;
    archive.file("guest", 0o755, &binary);
    archive.file("init", 0o755, INIT.as_bytes());
    Ok(archive.finish())
}

#[test]
fn static_and_dynamic_elf_files_are_told_apart() {
    let own = std::fs::read(std::env::current_exe().unwrap()).unwrap();
    assert_eq!(has_interpreter(&own), Some(true), "this test binary is dynamically linked");
    // A header with two program headers (PT_LOAD, PT_NOTE) and no PT_INTERP: a static program.
    let mut elf = vec![0u8; 64 + 2 * 56];
    elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
    elf[0x20] = 64; // program header table right after the ELF header
    elf[0x36] = 56; // each entry 56 bytes
    elf[0x38] = 2;
    elf[64] = 1;
    elf[64 + 56] = 4;
    assert_eq!(has_interpreter(&elf), Some(false));
    elf[64 + 56] = 3;
    assert_eq!(has_interpreter(&elf), Some(true));
    elf[64 + 56] = 4;
    elf[0x38] = 3; // a third entry past the end of the file
    assert_eq!(has_interpreter(&elf), None);
    assert_eq!(has_interpreter(b"\x7fELF"), None, "truncated");
    assert_eq!(has_interpreter(b"#!/bin/sh\n"), None, "not ELF");
}
