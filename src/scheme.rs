//! The `display.*` scheme: redox-scheme `SchemeSync` glue that turns handles into KMS calls,
//! lends dumb buffers through `mmap_prep`, and runs the per-file teardown in `on_close`.
//!
//! Planned (see the README's status).
