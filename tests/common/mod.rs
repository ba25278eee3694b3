//! What the end-to-end tests on QEMU share: the QEMU process, QMP, screendumps.
//!
//! Included by path from each such test (`tests/qemu`, `tests/redox`); each uses most of it.
#![allow(dead_code)]

pub mod qmp;
pub mod screen;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Asks `check` every `interval` until it answers `Some` or fails, for at most `timeout`; on the
/// deadline, fails with `waited_for`. Every end-to-end wait goes through here: a condition with a
/// generous deadline, never a fixed sleep.
pub fn poll<T>(
    timeout: Duration,
    interval: Duration,
    waited_for: impl FnOnce() -> String,
    mut check: impl FnMut() -> Result<Option<T>, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check()? {
            return Ok(value);
        }
        if Instant::now() > deadline {
            return Err(waited_for());
        }
        std::thread::sleep(interval);
    }
}

/// A QEMU process, killed when dropped (a TCG guest would otherwise run on forever).
pub struct Qemu(pub Child);

impl Qemu {
    /// Starts `command` (a `qemu-system-x86_64` with its arguments) with no stdin or stdout and its
    /// stderr in `dir/qemu.stderr`, where a failed test's artifacts are.
    pub fn spawn(mut command: Command, dir: &Path) -> Result<Qemu, String> {
        let stderr = std::fs::File::create(dir.join("qemu.stderr")).map_err(|e| e.to_string())?;
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(stderr);
        let child = command.spawn().map_err(|e| format!("qemu-system-x86_64 (scripts/install-deps): {e}"))?;
        Ok(Qemu(child))
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
