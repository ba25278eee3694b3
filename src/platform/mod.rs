//! displayd as a Redox daemon: pcid's handshake and start-up order, inputd's VT events, the
//! scheme socket and its event loop, and the timeline logger every binary installs. The Linux
//! platform is `crate::linux`.

pub mod event_loop;
pub mod health_probe;
pub mod pcid;
#[cfg(target_os = "redox")]
pub mod redox;
pub mod startup;
pub mod timeline;
