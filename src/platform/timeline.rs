//! A `log` backend that stamps each line with the time since start-up, so the lifecycle reads as a
//! timeline (probe, mode set, unplug started/drained/done, last close).

use std::io::Write;
use std::sync::OnceLock;
use std::time::Instant;

struct Timeline {
    started: Instant,
    max_level: log::LevelFilter,
}

static TIMELINE: OnceLock<Timeline> = OnceLock::new();

/// Installs the timeline logger at `max_level` (overridden by `DISPLAYD_LOG`, e.g. `debug`).
/// Later calls keep the first logger.
pub fn init(max_level: log::LevelFilter) {
    let max_level = std::env::var("DISPLAYD_LOG").ok().and_then(|v| v.parse().ok()).unwrap_or(max_level);
    let logger = TIMELINE.get_or_init(|| Timeline { started: Instant::now(), max_level });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(logger.max_level);
    }
}

impl log::Log for Timeline {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= self.max_level
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let elapsed = self.started.elapsed().as_secs_f64() * 1e3;
        // One write per line so that lines from several threads do not interleave.
        let line = format!("[{elapsed:9.3} ms] {:<5} {}\n", record.level(), record.args());
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}
