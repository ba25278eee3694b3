//! Client-side DRM calls, encoded byte for byte as relibc's redox-ioctl shim sends them, with the
//! drm crate's call sequences (count probes first, then the real call).

use syscall::error::{Error, Result, EINVAL};

use crate::kernel::Fd;
use displayd::kms::codec::{ioctl, MODE_INFO_BYTES};

/// GET_CAP ids.
pub mod cap {
    /// DRM_CAP_DUMB_BUFFER.
    pub const DUMB_BUFFER: u64 = 1;
    /// DRM_CAP_DUMB_PREFER_SHADOW.
    pub const DUMB_PREFER_SHADOW: u64 = 4;
    /// DRM_CAP_CURSOR_WIDTH.
    pub const CURSOR_WIDTH: u64 = 8;
    /// DRM_CAP_CURSOR_HEIGHT.
    pub const CURSOR_HEIGHT: u64 = 9;
    /// DRM_CLIENT_CAP_CURSOR_PLANE_HOTSPOT.
    pub const CURSOR_PLANE_HOTSPOT: u64 = 6;
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn put(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

fn u32s(bytes: &[u8]) -> Vec<u32> {
    bytes.chunks_exact(4).map(|c| u32_at(c, 0)).collect()
}

/// GET_CAP.
pub fn get_cap(fd: &Fd, capability: u64) -> Result<u64> {
    let mut p = [0u8; 16];
    p[..8].copy_from_slice(&capability.to_le_bytes());
    fd.call(ioctl::GET_CAP, &mut p)?;
    Ok(u64::from_le_bytes(p[8..16].try_into().expect("8 bytes")))
}

/// SET_CLIENT_CAP.
pub fn set_client_cap(fd: &Fd, capability: u64, value: u64) -> Result<()> {
    let mut p = [0u8; 16];
    p[..8].copy_from_slice(&capability.to_le_bytes());
    p[8..].copy_from_slice(&value.to_le_bytes());
    fd.call(ioctl::SET_CLIENT_CAP, &mut p).map(drop)
}

/// The ids MODE_CARD_RES lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// This client's framebuffers.
    pub fbs: Vec<u32>,
    /// CRTCs.
    pub crtcs: Vec<u32>,
    /// Connectors.
    pub connectors: Vec<u32>,
    /// Encoders.
    pub encoders: Vec<u32>,
}

/// MODE_CARD_RES, twice: counts first, then the arrays.
pub fn card_res(fd: &Fd) -> Result<Resources> {
    let mut probe = [0u8; 32];
    fd.call(ioctl::MODE_CARD_RES, &mut probe)?;
    let counts: Vec<usize> = (0..4).map(|i| u32_at(&probe, 4 * i) as usize).collect();
    let mut p = probe.to_vec();
    p.resize(32 + counts.iter().sum::<usize>() * 4, 0);
    fd.call(ioctl::MODE_CARD_RES, &mut p)?;
    let mut at = 32;
    let mut take = |n: usize| {
        let ids = u32s(&p[at..at + 4 * n]);
        at += 4 * n;
        ids
    };
    Ok(Resources {
        fbs: take(counts[0]),
        crtcs: take(counts[1]),
        connectors: take(counts[2]),
        encoders: take(counts[3]),
    })
}

/// What GET_CONNECTOR reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connector {
    /// 1 connected, 2 disconnected.
    pub connection: u32,
    /// The connector's encoders.
    pub encoders: Vec<u32>,
    /// Its modes, as raw 68-byte records (what SET_CRTC takes back).
    pub modes: Vec<[u8; MODE_INFO_BYTES]>,
}

impl Connector {
    /// The visible size of mode `i`.
    pub fn size(&self, i: usize) -> Option<(u32, u32)> {
        let m = self.modes.get(i)?;
        Some((u16::from_le_bytes([m[4], m[5]]).into(), u16::from_le_bytes([m[14], m[15]]).into()))
    }
}

/// GET_CONNECTOR as the drm crate issues it: with `force`, a probing first call (count_modes 0);
/// without, a first call with one scratch mode; then again with the real counts, while they change.
pub fn get_connector(fd: &Fd, id: u32, force: bool) -> Result<Connector> {
    let (mut modes, mut encoders) = (usize::from(!force), 0usize);
    loop {
        let mut p = vec![0u8; 48 + encoders * 4 + modes * MODE_INFO_BYTES];
        put(&mut p, 0, modes as u32);
        put(&mut p, 8, encoders as u32);
        put(&mut p, 16, id);
        fd.call(ioctl::GET_CONNECTOR, &mut p)?;
        let (real_modes, real_encoders) = (u32_at(&p, 0) as usize, u32_at(&p, 8) as usize);
        if (real_modes, real_encoders) == (modes, encoders) {
            let encoder_ids = u32s(&p[48..48 + 4 * encoders]);
            let mode_bytes = &p[48 + 4 * encoders..];
            let modes =
                mode_bytes.chunks_exact(MODE_INFO_BYTES).map(|m| m.try_into().expect("68 bytes")).collect();
            return Ok(Connector { connection: u32_at(&p, 28), encoders: encoder_ids, modes });
        }
        (modes, encoders) = (real_modes, real_encoders);
    }
}

/// GET_ENCODER: (crtc_id, possible_crtcs).
pub fn get_encoder(fd: &Fd, id: u32) -> Result<(u32, u32)> {
    let mut p = [0u8; 20];
    put(&mut p, 0, id);
    fd.call(ioctl::GET_ENCODER, &mut p)?;
    Ok((u32_at(&p, 8), u32_at(&p, 12)))
}

/// A dumb buffer: handle, pitch, size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dumb {
    /// Its handle on the creating fd.
    pub handle: u32,
    /// Bytes per row.
    pub pitch: u32,
    /// Bytes in all.
    pub size: u64,
}

/// CREATE_DUMB at 32 bpp.
pub fn create_dumb(fd: &Fd, width: u32, height: u32) -> Result<Dumb> {
    let mut p = [0u8; 32];
    put(&mut p, 0, height);
    put(&mut p, 4, width);
    put(&mut p, 8, 32);
    fd.call(ioctl::CREATE_DUMB, &mut p)?;
    Ok(Dumb {
        handle: u32_at(&p, 16),
        pitch: u32_at(&p, 20),
        size: u64::from_le_bytes(p[24..32].try_into().expect("8")),
    })
}

/// MAP_DUMB: the mmap offset.
pub fn map_dumb(fd: &Fd, handle: u32) -> Result<u64> {
    let mut p = [0u8; 16];
    put(&mut p, 0, handle);
    fd.call(ioctl::MAP_DUMB, &mut p)?;
    Ok(u64::from_le_bytes(p[8..16].try_into().expect("8 bytes")))
}

/// DESTROY_DUMB.
pub fn destroy_dumb(fd: &Fd, handle: u32) -> Result<()> {
    fd.call(ioctl::DESTROY_DUMB, &mut handle.to_le_bytes()).map(drop)
}

/// ADD_FB at 32 bpp with `depth` 24 (XRGB8888) or 32 (ARGB8888).
pub fn add_fb(fd: &Fd, width: u32, height: u32, pitch: u32, depth: u32, handle: u32) -> Result<u32> {
    let mut p = [0u8; 28];
    for (at, value) in [(4, width), (8, height), (12, pitch), (16, 32), (20, depth), (24, handle)] {
        put(&mut p, at, value);
    }
    fd.call(ioctl::ADD_FB, &mut p)?;
    Ok(u32_at(&p, 0))
}

/// RM_FB.
pub fn rm_fb(fd: &Fd, fb: u32) -> Result<()> {
    fd.call(ioctl::RM_FB, &mut fb.to_le_bytes()).map(drop)
}

/// SET_CRTC with a mode record from GET_CONNECTOR (or none: CRTC off).
pub fn set_crtc(
    fd: &Fd,
    crtc: u32,
    fb: u32,
    connectors: &[u32],
    mode: Option<&[u8; MODE_INFO_BYTES]>,
) -> Result<()> {
    let mut p = vec![0u8; 96 + 4 * connectors.len()];
    put(&mut p, 0, connectors.len() as u32);
    put(&mut p, 4, crtc);
    put(&mut p, 8, fb);
    if let Some(mode) = mode {
        put(&mut p, 24, 1);
        p[28..96].copy_from_slice(mode);
    }
    for (i, c) in connectors.iter().enumerate() {
        put(&mut p, 96 + 4 * i, *c);
    }
    fd.call(ioctl::SET_CRTC, &mut p).map(drop)
}

/// DIRTYFB with clip rectangles (x1, y1, x2, y2).
pub fn dirty_fb(fd: &Fd, fb: u32, clips: &[[u16; 4]]) -> Result<()> {
    let mut p = vec![0u8; 16 + 8 * clips.len()];
    put(&mut p, 0, fb);
    put(&mut p, 12, clips.len() as u32);
    for (i, clip) in clips.iter().enumerate() {
        for (j, v) in clip.iter().enumerate() {
            p[16 + 8 * i + 2 * j..18 + 8 * i + 2 * j].copy_from_slice(&v.to_le_bytes());
        }
    }
    fd.call(ioctl::DIRTYFB, &mut p).map(drop)
}

/// What GET_FB and GET_FB2 report about a framebuffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FbInfo {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes per row.
    pub pitch: u32,
    /// The caller's handle to its buffer, or 0.
    pub handle: u32,
}

/// GET_FB.
pub fn get_fb(fd: &Fd, fb: u32) -> Result<FbInfo> {
    let mut p = [0u8; 28];
    put(&mut p, 0, fb);
    fd.call(ioctl::GET_FB, &mut p)?;
    Ok(FbInfo { width: u32_at(&p, 4), height: u32_at(&p, 8), pitch: u32_at(&p, 12), handle: u32_at(&p, 24) })
}

/// GET_FB2 (plane 0).
pub fn get_fb2(fd: &Fd, fb: u32) -> Result<FbInfo> {
    let mut p = [0u8; 104];
    put(&mut p, 0, fb);
    fd.call(ioctl::GET_FB2, &mut p)?;
    Ok(FbInfo { width: u32_at(&p, 4), height: u32_at(&p, 8), pitch: u32_at(&p, 36), handle: u32_at(&p, 20) })
}

/// One `drm_event_vblank` as `read` returns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VblankEvent {
    /// `drm_event.type` (2: flip complete).
    pub kind: u32,
    /// `drm_event.length` (32).
    pub length: u32,
    /// What the client passed to PAGE_FLIP.
    pub user_data: u64,
    /// Seconds of the timestamp.
    pub tv_sec: u32,
    /// Microseconds of the timestamp.
    pub tv_usec: u32,
    /// The CRTC's flip count.
    pub sequence: u32,
    /// The CRTC.
    pub crtc_id: u32,
}

/// Reads the fd's pending events (as the drm crate's `receive_events` does: one `read` into a
/// 1 KiB buffer) and decodes them.
pub fn read_events(fd: &Fd) -> Result<Vec<VblankEvent>> {
    let mut buf = [0u8; 1024];
    let len = fd.read(&mut buf)?;
    Ok(buf[..len]
        .chunks_exact(32)
        .map(|e| VblankEvent {
            kind: u32_at(e, 0),
            length: u32_at(e, 4),
            user_data: u64::from_le_bytes(e[8..16].try_into().expect("8 bytes")),
            tv_sec: u32_at(e, 16),
            tv_usec: u32_at(e, 20),
            sequence: u32_at(e, 24),
            crtc_id: u32_at(e, 28),
        })
        .collect())
}

/// PAGE_FLIP flags.
pub mod flip {
    /// DRM_MODE_PAGE_FLIP_EVENT: queue a flip-completion event on the fd.
    pub const EVENT: u32 = 1;
    /// DRM_MODE_PAGE_FLIP_ASYNC.
    pub const ASYNC: u32 = 2;
}

/// PAGE_FLIP of `crtc` to `fb` with `flags`; `user_data` comes back in the completion event.
pub fn page_flip(fd: &Fd, crtc: u32, fb: u32, flags: u32, user_data: u64) -> Result<()> {
    let mut p = [0u8; 24];
    put(&mut p, 0, crtc);
    put(&mut p, 4, fb);
    put(&mut p, 8, flags);
    p[16..24].copy_from_slice(&user_data.to_le_bytes());
    fd.call(ioctl::PAGE_FLIP, &mut p).map(drop)
}

/// CURSOR (the legacy cursor ioctl): `flags` 1 sets the image from `handle` at `width`×`height`.
pub fn cursor(fd: &Fd, crtc: u32, handle: u32, width: u32, height: u32) -> Result<()> {
    let mut p = [0u8; 28];
    for (at, value) in [(0, 1), (4, crtc), (16, width), (20, height), (24, handle)] {
        put(&mut p, at, value);
    }
    fd.call(ioctl::CURSOR, &mut p).map(drop)
}

/// The first connector reporting "connected", as `first_display()` in Orbital and fbcond looks for.
pub fn first_connected(fd: &Fd, force: bool) -> Result<(u32, Connector)> {
    let resources = card_res(fd)?;
    for &id in &resources.connectors {
        let connector = get_connector(fd, id, force)?;
        if connector.connection == 1 {
            return Ok((id, connector));
        }
    }
    Err(Error::new(EINVAL))
}
