//! The displayd daemon.
//!
//! On Redox it is spawned by pcid-spawner and serves the `display.*` scheme (type-checked here; no
//! Redox machine has run it yet). On any other host it runs the demo: the display scheme on the
//! emulated Bochs device.

#[cfg(not(target_os = "redox"))]
fn main() {
    use std::time::Duration;
    displayd::platform::timeline::init(log::LevelFilter::Info);
    let seconds = std::env::var("DISPLAYD_DEMO_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(2.5);
    let out_dir =
        std::env::var_os("DISPLAYD_DEMO_OUT").map_or_else(|| "screenshots".into(), std::path::PathBuf::from);
    match displayd::platform::host::demo::demo(Duration::from_secs_f64(seconds), &out_dir) {
        Ok(report) => {
            for (client, seen) in
                ["compositor (device 1)", "fresh compositor (device 2)"].iter().zip(&report.clients)
            {
                println!(
                    "{client}: {} frames drawn, then {} more after its device went away, none of them an error",
                    seen.frames, seen.frames_after_removal
                );
            }
            println!("screenshots in {}:", out_dir.display());
            for path in &report.screenshots {
                println!("  {}", path.display());
            }
        }
        Err(error) => {
            eprintln!("demo failed: {error}");
            std::process::exit(1);
        }
    }
}

#[cfg(target_os = "redox")]
fn main() {
    use displayd::platform::{redox::Redox, startup};
    log_to_stderr_and_the_logging_scheme();
    // Any failure before readiness exits non-zero: pcid-spawner sees the pipe close and moves on.
    let env = match startup::read_env(|name| std::env::var(name).ok()) {
        Ok(env) => env,
        Err(error) => {
            log::error!("displayd: {error}");
            std::process::exit(1);
        }
    };
    let mut platform = Redox::new(env);
    if let Err(error) = startup::start(&mut platform) {
        log::error!("displayd: {error}");
        std::process::exit(1);
    }
    std::process::exit(platform.run());
}

/// Redox daemons log to stderr and to `/scheme/logging/<category>/<subcategory>/<name>.log`.
#[cfg(target_os = "redox")]
fn log_to_stderr_and_the_logging_scheme() {
    use redox_log::{OutputBuilder, RedoxLogger};
    let stderr = OutputBuilder::stderr().with_filter(log::LevelFilter::Info).flush_on_newline(true).build();
    let mut logger = RedoxLogger::new().with_output(stderr).with_process_name("displayd".into());
    match OutputBuilder::in_redox_logging_scheme("graphics", "pcie", "displayd.log") {
        Ok(file) => {
            logger =
                logger.with_output(file.with_filter(log::LevelFilter::Debug).flush_on_newline(true).build())
        }
        Err(error) => eprintln!("displayd: no logging scheme ({error}); logging to stderr only"),
    }
    let _ = logger.enable();
}
