//! Where displayd runs: Redox (pcid, inputd, the scheme socket) or a Linux host (the emulated
//! device and an in-process client, for tests and the demo).

pub mod event_loop;
pub mod health_probe;
#[cfg(not(target_os = "redox"))]
pub mod host;
#[cfg(target_os = "linux")]
pub mod linux;
pub mod pcid;
#[cfg(target_os = "redox")]
pub mod redox;
pub mod startup;
pub mod test_pattern;
pub mod timeline;
