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

/// A buffer of `len` bytes of `byte` whose first byte is page-aligned, as dumb buffers and VRAM
/// are: the baselines copy between buffers aligned like the real ones, since a copy between
/// differently aligned buffers is slower (`Vec`'s heap memory starts 16 bytes into a page).
#[allow(dead_code)] // the guard bench copies no buffers
pub struct PageAligned {
    storage: Vec<u8>,
    start: usize,
    len: usize,
}

#[allow(dead_code)]
impl PageAligned {
    /// `len` bytes of `byte`.
    pub fn new(len: usize, byte: u8) -> PageAligned {
        let storage = vec![byte; len + 4096];
        let start = storage.as_ptr().align_offset(4096);
        PageAligned { storage, start, len }
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }

    /// The bytes, writable.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.start + self.len]
    }
}
