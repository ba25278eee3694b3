//! The displayd daemon.
//!
//! On Redox it will be spawned by pcid-spawner and serve the `display.*` scheme (not yet built: see
//! the README's status). On any other host it runs the demo on the in-process platform.

#[cfg(not(target_os = "redox"))]
fn main() {
    use std::time::Duration;
    displayd::platform::timeline::init(log::LevelFilter::Info);
    let seconds = std::env::var("DISPLAYD_DEMO_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.5);
    let summary = displayd::platform::host::demo(Duration::from_secs_f64(seconds));
    println!("{summary}");
}

#[cfg(target_os = "redox")]
fn main() {
    displayd::platform::timeline::init(log::LevelFilter::Info);
    // Exiting before the readiness byte makes pcid-spawner log the failure and move on.
    log::error!(
        "displayd: the Redox platform is not implemented yet; leaving the device to other drivers"
    );
    std::process::exit(1);
}
