//! The demo (`scripts/demo`): displayd's display scheme on the emulated Bochs device, through
//! unplug, replug and yank, with screenshots of the scanout.

use std::time::Duration;

fn main() {
    displayd::platform::timeline::init(log::LevelFilter::Info);
    let seconds = std::env::var("DISPLAYD_DEMO_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(2.5);
    let out_dir =
        std::env::var_os("DISPLAYD_DEMO_OUT").map_or_else(|| "screenshots".into(), std::path::PathBuf::from);
    let report = match displayd_testkit::demo::demo(Duration::from_secs_f64(seconds), &out_dir) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("demo failed: {error}");
            std::process::exit(1);
        }
    };
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
}
