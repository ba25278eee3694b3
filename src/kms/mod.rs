//! The display object model and the DRM ioctl payload codec: connectors, CRTCs, planes,
//! framebuffers, dumb buffers and per-VT state. Pure: no I/O and no `unsafe`.
//!
//! Planned (see the README's status); it depends only on [`crate::guard`] and `crate::device`.
