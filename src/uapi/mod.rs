//! The DRM wire format clients and displayd share: the uapi structs ([`wire`]) and the redox-ioctl
//! payload format that carries them ([`codec`]). Pure data: no hardware access, no state, no
//! `unsafe` (the mode record converts to and from `device::edid::Mode`).
//!
//! The display object model and the handlers that serve these payloads are [`crate::kms`]; the test
//! kit's client encodes its requests from the same structs, so there is one layout, not two.
#![forbid(unsafe_code)]

pub mod codec;
pub mod wire;
