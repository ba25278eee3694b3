//! What the benches share: reading criterion's own estimates back to print ratio tables.

/// Criterion's mean estimate, in nanoseconds, for one benchmark of this run (`None` when the run
/// took no samples, as in `cargo bench -- --test`).
pub fn criterion_mean_ns(group: &str, name: &str) -> Option<f64> {
    let path = format!("target/criterion/{group}/{name}/new/estimates.json");
    let text = std::fs::read_to_string(&path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["mean"]["point_estimate"].as_f64()
}

/// Whether this run measures (`cargo bench`) rather than only checks that the benches run.
pub fn measuring() -> bool {
    !std::env::args().any(|arg| arg == "--test" || arg == "--list")
}
