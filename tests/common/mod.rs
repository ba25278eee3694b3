//! What the end-to-end tests on QEMU share: the QEMU process, QMP, screendumps.
//!
//! Included by path from each such test (`tests/qemu`, `tests/redox`); each uses most of it.
#![allow(dead_code)]

pub mod qmp;
pub mod screen;

use std::process::Child;
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

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
