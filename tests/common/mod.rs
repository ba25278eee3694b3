//! What the end-to-end tests on QEMU share: the QEMU process, QMP, screendumps.
//!
//! Included by path from each such test (`tests/qemu`, `tests/redox`); each uses most of it.
#![allow(dead_code)]

pub mod qmp;
pub mod screen;

use std::process::Child;

/// A QEMU process, killed when dropped (a TCG guest would otherwise run on forever).
pub struct Qemu(pub Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
