//! The displayd daemon.
//!
//! On Redox it is spawned by pcid-spawner and serves the `display.*` scheme (`tests/redox` boots it
//! so under QEMU). On any other host it runs the demo: the display scheme on the
//! emulated Bochs device; on Linux, `displayd guest` drives the machine's real Bochs adapter with
//! in-process clients (what the QEMU end-to-end test boots).

#[cfg(not(target_os = "redox"))]
fn main() {
    displayd::platform::timeline::init(log::LevelFilter::Info);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] => demo(),
        #[cfg(target_os = "linux")]
        ["guest"] => guest(),
        _ => Err(format!("usage: displayd [guest]  (got {args:?})")),
    };
    if let Err(error) = result {
        eprintln!("displayd: {error}");
        std::process::exit(1);
    }
}

/// The demo on the emulated device.
#[cfg(all(not(target_os = "redox"), feature = "demo"))]
fn demo() -> Result<(), String> {
    use std::time::Duration;
    let seconds = std::env::var("DISPLAYD_DEMO_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(2.5);
    let out_dir =
        std::env::var_os("DISPLAYD_DEMO_OUT").map_or_else(|| "screenshots".into(), std::path::PathBuf::from);
    let report = displayd::platform::host::demo::demo(Duration::from_secs_f64(seconds), &out_dir)
        .map_err(|error| format!("demo failed: {error}"))?;
    for (client, seen) in ["compositor (device 1)", "fresh compositor (device 2)"].iter().zip(&report.clients)
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
    Ok(())
}

#[cfg(all(not(target_os = "redox"), not(feature = "demo")))]
fn demo() -> Result<(), String> {
    Err("built without the demo (feature `demo`)".into())
}

/// displayd on the real Bochs function of this Linux machine (the QEMU end-to-end test's guest),
/// until killed.
#[cfg(target_os = "linux")]
fn guest() -> Result<(), String> {
    use displayd::platform::linux::{guest, uevent::UeventSocket};
    let mut events = UeventSocket::open().map_err(|error| format!("uevent socket: {error}"))?;
    let never = std::sync::atomic::AtomicBool::new(false);
    let failures = guest::run(std::path::Path::new("/sys"), &mut events, &never, &mut std::io::stdout())
        .map_err(|error| format!("guest: {error}"))?;
    Err(format!("guest stopped after {failures} failures"))
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
    let status = platform.run();
    log::info!("exiting with status {status}");
    std::process::exit(status);
}

/// Redox daemons log to stderr and to `/scheme/logging/<category>/<subcategory>/<name>.log`.
#[cfg(target_os = "redox")]
fn log_to_stderr_and_the_logging_scheme() {
    use redox_log::{OutputBuilder, RedoxLogger};
    let stderr = OutputBuilder::stderr().with_filter(log::LevelFilter::Info).flush_on_newline(true).build();
    let mut logger = RedoxLogger::new().with_output(stderr).with_process_name("displayd".into());
    match OutputBuilder::in_redox_logging_scheme("graphics", "pci", "displayd.log") {
        Ok(file) => {
            logger =
                logger.with_output(file.with_filter(log::LevelFilter::Debug).flush_on_newline(true).build())
        }
        Err(error) => eprintln!("displayd: no logging scheme ({error}); logging to stderr only"),
    }
    let _ = logger.enable();
}
