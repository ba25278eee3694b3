//! Client-side DRM calls, encoded byte for byte as relibc's redox-ioctl shim sends them, with the
//! drm crate's call sequences (count probes first, then the real call). Every payload is built from
//! the server's own wire structs ([`displayd::uapi::wire`]), so client and server share one layout.

use syscall::error::{Error, Result, EINVAL};
use zerocopy::little_endian::U32;
use zerocopy::{FromBytes, FromZeros, IntoBytes};

use crate::kernel::Fd;
use displayd::kms::ioctl;
use displayd::uapi::codec::{Fixed, Payload};
use displayd::uapi::wire::{
    CardRes, ClipRect, CreateDumb, Crtc, CrtcPageFlip, Cursor, DestroyDumb, EventVblank, FbCmd, FbCmd2,
    FbDirtyCmd, GetCap, GetConnector, GetEncoder, MapDumb, ModeInfo, RmFb, SetClientCap,
};

/// Bytes in one `drm_mode_modeinfo`.
pub const MODE_INFO_BYTES: usize = size_of::<ModeInfo>();

/// Sends `fixed` alone as ioctl `nr` and returns it as the server edited it.
fn call<T: Fixed>(fd: &Fd, nr: u64, mut fixed: T) -> Result<T> {
    fd.call(nr, fixed.as_mut_bytes())?;
    Ok(fixed)
}

/// Sends `fixed` as ioctl `nr` with room for every array its count fields announce, filled by
/// `fill` (zeroes where it writes nothing). Returns the fixed part as the server answered it, and
/// the payload with the fixed part as sent: the server reports real totals in the count fields,
/// which may exceed the room (the count-probe convention), while the arrays lie where the sent
/// counts put them, so the returned payload always parses.
fn call_with_arrays<T: Fixed>(
    fd: &Fd,
    nr: u64,
    mut fixed: T,
    fill: impl FnOnce(&mut Payload<'_, T>) -> Result<()>,
) -> Result<(T, Vec<u8>)> {
    let room = T::ARRAYS
        .iter()
        .try_fold(0usize, |room, array| {
            let count = usize::try_from((array.count)(&mut fixed).get()).ok()?;
            room.checked_add(count.checked_mul(array.element)?)
        })
        .ok_or(Error::new(EINVAL))?;
    let mut payload = Vec::with_capacity(size_of::<T>() + room);
    payload.extend_from_slice(fixed.as_bytes());
    payload.resize(size_of::<T>() + room, 0);
    fill(&mut Payload::parse(&mut payload)?)?;
    fd.call(nr, &mut payload)?;
    let (answer, _) = T::read_from_prefix(&payload).map_err(|_| Error::new(EINVAL))?;
    fixed.write_to_prefix(&mut payload).map_err(|_| Error::new(EINVAL))?;
    Ok((answer, payload))
}

/// The `u32`s in `ids`.
fn u32s(ids: &[U32]) -> Vec<u32> {
    ids.iter().map(|id| id.get()).collect()
}

/// GET_CAP.
pub fn get_cap(fd: &Fd, capability: u64) -> Result<u64> {
    let reply = call(fd, ioctl::GET_CAP, GetCap { capability: capability.into(), ..GetCap::new_zeroed() })?;
    Ok(reply.value.get())
}

/// SET_CLIENT_CAP.
pub fn set_client_cap(fd: &Fd, capability: u64, value: u64) -> Result<()> {
    call(fd, ioctl::SET_CLIENT_CAP, SetClientCap { capability: capability.into(), value: value.into() })
        .map(drop)
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
    let probe = call(fd, ioctl::MODE_CARD_RES, CardRes::new_zeroed())?;
    let (_, mut reply) = call_with_arrays(fd, ioctl::MODE_CARD_RES, probe, |_| Ok(()))?;
    let reply = Payload::<CardRes>::parse(&mut reply)?;
    Ok(Resources {
        fbs: u32s(reply.elements(CardRes::FBS)?),
        crtcs: u32s(reply.elements(CardRes::CRTCS)?),
        connectors: u32s(reply.elements(CardRes::CONNECTORS)?),
        encoders: u32s(reply.elements(CardRes::ENCODERS)?),
    })
}

/// What GET_CONNECTOR reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connector {
    /// 1 connected, 2 disconnected.
    pub connection: u32,
    /// The connector's encoders.
    pub encoders: Vec<u32>,
    /// Its modes, as raw records (what SET_CRTC takes back).
    pub modes: Vec<[u8; MODE_INFO_BYTES]>,
}

impl Connector {
    /// The visible size of mode `i`.
    pub fn size(&self, i: usize) -> Option<(u32, u32)> {
        let (width, height) = ModeInfo::read_from_bytes(self.modes.get(i)?).ok()?.size();
        Some((width.into(), height.into()))
    }
}

/// GET_CONNECTOR as the drm crate issues it: with `force`, a probing first call (count_modes 0);
/// without, a first call with one scratch mode; then again with the real counts, while they change.
pub fn get_connector(fd: &Fd, id: u32, force: bool) -> Result<Connector> {
    let (mut modes, mut encoders) = (u32::from(!force), 0u32);
    loop {
        let request = GetConnector {
            count_modes: modes.into(),
            count_encoders: encoders.into(),
            connector_id: id.into(),
            ..GetConnector::new_zeroed()
        };
        let (answer, mut reply) = call_with_arrays(fd, ioctl::GET_CONNECTOR, request, |_| Ok(()))?;
        let real = (answer.count_modes.get(), answer.count_encoders.get());
        if real == (modes, encoders) {
            let reply = Payload::<GetConnector>::parse(&mut reply)?;
            // Raw records: sizes equal, so every conversion succeeds.
            let modes = reply.elements(GetConnector::MODES)?;
            let modes = modes.iter().filter_map(|mode| mode.as_bytes().try_into().ok()).collect();
            let encoders = u32s(reply.elements(GetConnector::ENCODERS)?);
            return Ok(Connector { connection: answer.connection.get(), encoders, modes });
        }
        (modes, encoders) = real;
    }
}

/// GET_ENCODER: (crtc_id, possible_crtcs).
pub fn get_encoder(fd: &Fd, id: u32) -> Result<(u32, u32)> {
    let reply =
        call(fd, ioctl::GET_ENCODER, GetEncoder { encoder_id: id.into(), ..GetEncoder::new_zeroed() })?;
    Ok((reply.crtc_id.get(), reply.possible_crtcs.get()))
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
    let request =
        CreateDumb { height: height.into(), width: width.into(), bpp: 32.into(), ..CreateDumb::new_zeroed() };
    let reply = call(fd, ioctl::CREATE_DUMB, request)?;
    Ok(Dumb { handle: reply.handle.get(), pitch: reply.pitch.get(), size: reply.size.get() })
}

/// MAP_DUMB: the mmap offset.
pub fn map_dumb(fd: &Fd, handle: u32) -> Result<u64> {
    let reply = call(fd, ioctl::MAP_DUMB, MapDumb { handle: handle.into(), ..MapDumb::new_zeroed() })?;
    Ok(reply.offset.get())
}

/// DESTROY_DUMB.
pub fn destroy_dumb(fd: &Fd, handle: u32) -> Result<()> {
    call(fd, ioctl::DESTROY_DUMB, DestroyDumb { handle: handle.into() }).map(drop)
}

/// ADD_FB at 32 bpp with `depth` 24 (XRGB8888) or 32 (ARGB8888).
pub fn add_fb(fd: &Fd, width: u32, height: u32, pitch: u32, depth: u32, handle: u32) -> Result<u32> {
    let request = FbCmd {
        fb_id: 0.into(),
        width: width.into(),
        height: height.into(),
        pitch: pitch.into(),
        bpp: 32.into(),
        depth: depth.into(),
        handle: handle.into(),
    };
    Ok(call(fd, ioctl::ADD_FB, request)?.fb_id.get())
}

/// RM_FB.
pub fn rm_fb(fd: &Fd, fb: u32) -> Result<()> {
    call(fd, ioctl::RM_FB, RmFb { fb_id: fb.into() }).map(drop)
}

/// SET_CRTC with a mode record from GET_CONNECTOR (or none: CRTC off).
pub fn set_crtc(
    fd: &Fd,
    crtc: u32,
    fb: u32,
    connectors: &[u32],
    mode: Option<&[u8; MODE_INFO_BYTES]>,
) -> Result<()> {
    let request = Crtc {
        count_connectors: (connectors.len() as u32).into(),
        crtc_id: crtc.into(),
        fb_id: fb.into(),
        mode_valid: u32::from(mode.is_some()).into(),
        mode: mode
            .and_then(|record| ModeInfo::read_from_bytes(record).ok())
            .unwrap_or_else(ModeInfo::new_zeroed),
        ..Crtc::new_zeroed()
    };
    call_with_arrays(fd, ioctl::SET_CRTC, request, |p| {
        p.put(Crtc::CONNECTORS, connectors.iter().map(|&c| U32::new(c)))
    })
    .map(drop)
}

/// DIRTYFB with clip rectangles (x1, y1, x2, y2).
pub fn dirty_fb(fd: &Fd, fb: u32, clips: &[[u16; 4]]) -> Result<()> {
    let request =
        FbDirtyCmd { fb_id: fb.into(), num_clips: (clips.len() as u32).into(), ..FbDirtyCmd::new_zeroed() };
    call_with_arrays(fd, ioctl::DIRTYFB, request, |p| {
        let clips = clips.iter().map(|&[x1, y1, x2, y2]| ClipRect {
            x1: x1.into(),
            y1: y1.into(),
            x2: x2.into(),
            y2: y2.into(),
        });
        p.put(FbDirtyCmd::CLIPS, clips)
    })
    .map(drop)
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
    let reply = call(fd, ioctl::GET_FB, FbCmd { fb_id: fb.into(), ..FbCmd::new_zeroed() })?;
    Ok(FbInfo {
        width: reply.width.get(),
        height: reply.height.get(),
        pitch: reply.pitch.get(),
        handle: reply.handle.get(),
    })
}

/// GET_FB2 (plane 0).
pub fn get_fb2(fd: &Fd, fb: u32) -> Result<FbInfo> {
    let reply = call(fd, ioctl::GET_FB2, FbCmd2 { fb_id: fb.into(), ..FbCmd2::new_zeroed() })?;
    Ok(FbInfo {
        width: reply.width.get(),
        height: reply.height.get(),
        pitch: reply.pitches[0].get(),
        handle: reply.handles[0].get(),
    })
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
    let whole = len - len % size_of::<EventVblank>();
    let events = <[EventVblank]>::ref_from_bytes(&buf[..whole]).map_err(|_| Error::new(EINVAL))?;
    Ok(events
        .iter()
        .map(|e| VblankEvent {
            kind: e.r#type.get(),
            length: e.length.get(),
            user_data: e.user_data.get(),
            tv_sec: e.tv_sec.get(),
            tv_usec: e.tv_usec.get(),
            sequence: e.sequence.get(),
            crtc_id: e.crtc_id.get(),
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
    let request = CrtcPageFlip {
        crtc_id: crtc.into(),
        fb_id: fb.into(),
        flags: flags.into(),
        reserved: 0.into(),
        user_data: user_data.into(),
    };
    call(fd, ioctl::PAGE_FLIP, request).map(drop)
}

/// CURSOR (the legacy cursor ioctl): `flags` 1 sets the image from `handle` at `width`×`height`.
pub fn cursor(fd: &Fd, crtc: u32, handle: u32, width: u32, height: u32) -> Result<()> {
    let request = Cursor {
        flags: 1.into(),
        crtc_id: crtc.into(),
        width: width.into(),
        height: height.into(),
        handle: handle.into(),
        ..Cursor::new_zeroed()
    };
    call(fd, ioctl::CURSOR, request).map(drop)
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
