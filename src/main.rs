//! The displayd daemon.
//!
//! On Redox it is spawned by pcid-spawner and serves the `display.*` scheme (`tests/redox` boots it
//! so under QEMU). Elsewhere there is no kernel to serve it to: the test kit (`testkit/`) runs the
//! driver in-process, as the demo and as the QEMU Linux guest.

/// displayd serves its scheme on Redox only; on other hosts the test kit runs it in-process.
#[cfg(not(target_os = "redox"))]
fn main() {
    eprintln!(
        "displayd: serves the display scheme on Redox; on Linux, the test kit's `demo` and `guest` run it \
         in-process (scripts/demo)"
    );
    std::process::exit(1);
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
