//! The Linux host platform: runs displayd's lifetime model in-process, for the demo and the tests.
//!
//! Today it demonstrates the lifetime core on a stand-in register file: clients keep drawing through
//! guarded sections while an orderly unplug drains them, their handles keep the device object alive
//! after the hardware is gone, and the last close runs the managed releases. The emulated Bochs
//! device and the in-process scheme client replace the stand-in as they land.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::guard::{Releases, Revocable};

/// Stands in for the Bochs register file and VRAM until the emulated device lands.
struct StandInHardware {
    frames_scanned_out: AtomicU64,
}

impl Drop for StandInHardware {
    fn drop(&mut self) {
        log::info!("hardware dropped: mappings released, no thread can reach them any more");
    }
}

/// The device object: what every handle holds. Field order is drop order: the hardware (if still
/// bound) goes before the managed releases run.
struct DeviceObject {
    hardware: Revocable<StandInHardware>,
    _releases: Releases,
}

/// What one client saw during the demo.
#[derive(Debug, Default)]
struct ClientReport {
    frames_drawn: u64,
    refused_after_unplug: u64,
}

/// Runs the demo for about `duration` and returns a one-paragraph summary.
pub fn demo(duration: Duration) -> String {
    log::info!(
        "probe: stand-in device bound (the emulated Bochs device replaces it in a later step)"
    );
    let releases = Releases::new();
    for name in ["scheme registration", "per-VT state", "mode list"] {
        releases.add(name, move || {
            log::info!("last reference gone: released {name}")
        });
    }
    let device = Arc::new(DeviceObject {
        hardware: Revocable::new(StandInHardware {
            frames_scanned_out: AtomicU64::new(0),
        }),
        _releases: releases,
    });

    let started = Instant::now();
    let clients: Vec<_> = (0..2)
        .map(|id| {
            let handle = Arc::clone(&device);
            thread::spawn(move || run_client(id, handle, started, duration))
        })
        .collect();

    thread::sleep(duration / 3);
    log::info!(
        "unplug (orderly) started while {} clients draw",
        clients.len()
    );
    let unplug_began = Instant::now();
    let did_work = device.hardware.revoke();
    log::info!(
        "unplug done in {:.1} µs: every section drained, hardware gone (this call did the work: {did_work})",
        unplug_began.elapsed().as_secs_f64() * 1e6
    );
    drop(device);
    log::info!(
        "driver's own reference dropped; the open client handles keep the device object alive"
    );

    let reports: Vec<ClientReport> = clients
        .into_iter()
        .map(|c| c.join().expect("client thread"))
        .collect();
    let drawn: u64 = reports.iter().map(|r| r.frames_drawn).sum();
    let refused: u64 = reports.iter().map(|r| r.refused_after_unplug).sum();
    format!(
        "{} clients drew {drawn} frames through guarded sections; after the unplug {refused} draws were \
         refused cleanly (ENODEV), none touched the hardware, and the last close released everything.",
        reports.len()
    )
}

/// One client: draws a frame every millisecond until `duration` has passed, then closes its handle.
fn run_client(
    id: usize,
    handle: Arc<DeviceObject>,
    started: Instant,
    duration: Duration,
) -> ClientReport {
    let mut report = ClientReport::default();
    while started.elapsed() < duration {
        match handle.hardware.try_access() {
            Some(hw) => {
                // A flush: the section spans the whole copy into VRAM.
                thread::sleep(Duration::from_micros(200));
                hw.frames_scanned_out.fetch_add(1, Relaxed);
                report.frames_drawn += 1;
            }
            None => {
                if report.refused_after_unplug == 0 {
                    log::info!("client {id}: first draw after unplug refused with ENODEV; handle stays open");
                }
                report.refused_after_unplug += 1;
            }
        }
        thread::sleep(Duration::from_millis(1));
    }
    log::info!(
        "client {id}: closing its handle ({} frames drawn)",
        report.frames_drawn
    );
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_draws_then_refuses_then_releases() {
        let summary = demo(Duration::from_millis(150));
        assert!(summary.starts_with("2 clients drew "), "{summary}");
        let drawn: u64 = summary.split_whitespace().nth(3).unwrap().parse().unwrap();
        assert!(drawn > 0, "{summary}");
        assert!(
            !summary.contains("unplug 0 draws"),
            "no draw was refused after the unplug: {summary}"
        );
    }
}
