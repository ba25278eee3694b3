//! displayd as a Redox daemon: pcid's handshake and start-up order, inputd's VT events, the
//! scheme socket and its event loop, the health probe's thread, and the timeline logger the Linux
//! binaries install (the Redox daemon logs through `redox_log`). The Linux platform is
//! `crate::linux`.

pub mod event_loop;
pub mod health_probe;
pub mod pcid;
#[cfg(target_os = "redox")]
pub mod redox;
pub mod startup;
pub mod timeline;
