//! The ioctl handlers: each reads its payload through the codec, checks every id and size the client
//! sent, and answers with an errno rather than a panic.

use std::sync::Arc;

use syscall::error::{Error, Result, EACCES, EBADF, EBUSY, EINVAL, ENODEV, ENOENT, ENOSPC, ENXIO, ERANGE};

use super::codec::{ioctl, Payload};
use super::props::{self, object};
use super::{
    full, ids, DumbBuffer, FileId, Format, Framebuffer, Kms, Plane, State, DUMB_WINDOW,
    MAX_DUMB_BUFFERS_PER_FILE, MAX_DUMB_BYTES_PER_FILE, MAX_FRAMEBUFFERS_PER_FILE, PAGE,
};
use crate::device::bochs::{DeviceError, Rect};

fn fail<T>(errno: i32) -> Result<T> {
    Err(Error::new(errno))
}

fn device(error: DeviceError) -> Error {
    Error::new(error.errno())
}

/// Capabilities (GET_CAP).
const CAP_DUMB_BUFFER: u64 = 1;
const CAP_DUMB_PREFERRED_DEPTH: u64 = 3;
const CAP_DUMB_PREFER_SHADOW: u64 = 4;
/// Client capabilities (SET_CLIENT_CAP).
const CLIENT_CAP_UNIVERSAL_PLANES: u64 = 2;
const CLIENT_CAP_CURSOR_PLANE_HOTSPOT: u64 = 6;
/// PAGE_FLIP flags: queue a completion event; flip without waiting for vblank.
const PAGE_FLIP_EVENT: u32 = 1;
const PAGE_FLIP_ASYNC: u32 = 2;
/// ADD_FB2 flag: the modifiers field is valid.
const FB_MODIFIERS: u32 = 2;
/// GET_ENCODER type: DAC, as Linux's bochs driver reports.
const ENCODER_DAC: u32 = 1;
/// GET_CONNECTOR type: virtual, as Linux's bochs driver reports.
const CONNECTOR_VIRTUAL: u32 = 15;
/// Connection states as Linux and the drm crate read them.
const CONNECTED: u32 = 1;
const DISCONNECTED: u32 = 2;

/// What keeps today's consumers alive after an unplug, plus the calls that only free memory.
fn allowed_after_unplug(nr: u64) -> bool {
    matches!(nr, ioctl::GET_CONNECTOR | ioctl::DIRTYFB | ioctl::DESTROY_DUMB | ioctl::RM_FB | ioctl::CLOSE_FB)
}

impl Kms {
    /// Serves one ioctl (`nr` = metadata\[0\]) on `file`, editing `payload` in place. Once the
    /// device is unplugged, every ioctl outside the unplug policy answers ENODEV before anything
    /// else is looked at (unknown numbers and malformed payloads included), as Linux's
    /// `drm_dev_enter` comes first.
    pub fn call(&self, file: FileId, nr: u64, payload: &mut [u8]) -> Result<usize> {
        if self.adapter.is_unplugged() && !allowed_after_unplug(nr) {
            return fail(ENODEV);
        }
        let layout = ioctl::layout(nr).ok_or(Error::new(EINVAL))?;
        let mut p = Payload::parse(payload, layout)?;
        let mut state = self.lock();
        if !state.files.contains_key(&file) {
            return fail(EBADF);
        }
        let mut call = Call { kms: self, state: &mut state, file };
        match nr {
            ioctl::VERSION => call.version(&mut p),
            ioctl::GET_UNIQUE => call.get_unique(&mut p),
            ioctl::SET_VERSION => call.set_version(&mut p),
            ioctl::GET_CAP => call.get_cap(&mut p),
            ioctl::SET_CLIENT_CAP => call.set_client_cap(&mut p),
            ioctl::MODE_CARD_RES => call.card_res(&mut p),
            ioctl::GET_CRTC => call.get_crtc(&mut p),
            ioctl::SET_CRTC => call.set_crtc(&mut p),
            // Bochs has no hardware cursor: the reference answers ENXIO for such adapters, and
            // clients fall back to drawing the cursor themselves.
            ioctl::CURSOR | ioctl::CURSOR2 => fail(ENXIO),
            ioctl::GET_ENCODER => call.get_encoder(&mut p),
            ioctl::GET_CONNECTOR => call.get_connector(&mut p),
            ioctl::GET_PROPERTY => call.get_property(&mut p),
            ioctl::SET_PROPERTY => call.set_property(&mut p),
            ioctl::GET_PROP_BLOB => call.get_prop_blob(&mut p),
            ioctl::GET_FB => call.get_fb(&mut p),
            ioctl::ADD_FB => call.add_fb(&mut p),
            ioctl::RM_FB => call.rm_fb(&mut p),
            ioctl::CLOSE_FB => call.close_fb(&mut p),
            ioctl::PAGE_FLIP => call.page_flip(&mut p),
            ioctl::DIRTYFB => call.dirty_fb(&mut p),
            ioctl::CREATE_DUMB => call.create_dumb(&mut p),
            ioctl::MAP_DUMB => call.map_dumb(&mut p),
            ioctl::DESTROY_DUMB => call.destroy_dumb(&mut p),
            ioctl::GET_PLANE_RES => {
                p.put_u32s(0, &[ids::PLANE]);
                Ok(())
            }
            ioctl::GET_PLANE => call.get_plane(&mut p),
            ioctl::SET_PLANE => call.set_plane(&mut p),
            ioctl::ADD_FB2 => call.add_fb2(&mut p),
            ioctl::GET_FB2 => call.get_fb2(&mut p),
            ioctl::OBJ_GET_PROPERTIES => call.obj_get_properties(&mut p),
            _ => fail(EINVAL),
        }
        .map(|()| 0)
    }
}

/// One call in progress: the state (locked) and the calling file.
struct Call<'a> {
    kms: &'a Kms,
    state: &'a mut State,
    file: FileId,
}

impl Call<'_> {
    fn vt(&self) -> usize {
        self.state.files[&self.file].vt
    }

    fn active(&self) -> bool {
        self.state.active_vt == Some(self.vt())
    }

    fn saved(&mut self) -> &mut super::Vt {
        let vt = self.vt();
        self.state.vts.entry(vt).or_default()
    }

    /// A framebuffer this file may use: it exists, is not closed (ENOENT), and is this file's (EACCES).
    fn own_fb(&self, id: u32) -> Result<&Framebuffer> {
        let fb = self.state.framebuffers.get(&id).filter(|fb| !fb.closed).ok_or(Error::new(ENOENT))?;
        if fb.owner != self.file {
            return fail(EACCES);
        }
        Ok(fb)
    }

    /// A new dumb handle on this file for `buffer`, charging `bytes` to the file's allowance.
    fn new_handle(&mut self, buffer: Arc<DumbBuffer>, bytes: usize) -> Result<u32> {
        let file = self.state.files.get_mut(&self.file).ok_or(Error::new(EBADF))?;
        let over_bytes =
            file.dumb_bytes.checked_add(bytes).is_none_or(|total| total > MAX_DUMB_BYTES_PER_FILE);
        if file.dumb.len() >= MAX_DUMB_BUFFERS_PER_FILE || over_bytes || file.next_handle == u32::MAX {
            return fail(ENOSPC);
        }
        let handle = file.next_handle;
        file.next_handle += 1;
        file.dumb_bytes += bytes;
        file.dumb.insert(handle, (buffer, bytes));
        Ok(handle)
    }

    fn own_dumb(&self, handle: u32) -> Result<Arc<DumbBuffer>> {
        self.state.files[&self.file].dumb.get(&handle).map(|(b, _)| Arc::clone(b)).ok_or(Error::new(ENOENT))
    }

    fn add_framebuffer(&mut self, fb: Framebuffer) -> Result<u32> {
        let owned = self.state.framebuffers.values().filter(|fb| fb.owner == self.file).count();
        if owned >= MAX_FRAMEBUFFERS_PER_FILE {
            return fail(ENOSPC);
        }
        let id = Kms::allocate_id(self.state)?;
        self.state.framebuffers.insert(id, fb);
        Ok(id)
    }

    /// Drops a closed framebuffer once no VT shows it any more.
    fn reap_if_closed(&mut self, fb: Option<u32>) {
        let Some(id) = fb else { return };
        let closed = self.state.framebuffers.get(&id).is_some_and(|fb| fb.closed);
        if closed && !self.state.vts.values().any(|vt| vt.plane.fb == Some(id)) {
            self.state.framebuffers.remove(&id);
        }
    }

    fn version(&mut self, p: &mut Payload<'_>) -> Result<()> {
        p.set_i32(0, 1);
        p.set_i32(4, 4);
        p.set_i32(8, 0);
        p.put_bytes(0, self.kms.adapter.name().as_bytes());
        p.put_bytes(1, b"0");
        p.put_bytes(2, self.kms.adapter.description().as_bytes());
        Ok(())
    }

    fn get_unique(&mut self, p: &mut Payload<'_>) -> Result<()> {
        let unique = if self.state.files[&self.file].unique_set { self.kms.unique.as_bytes() } else { b"" };
        p.put_bytes(0, unique);
        Ok(())
    }

    /// Accepts what libdrm sends (1.4, or -1 for "any") and what Redox clients send (0.4).
    fn set_version(&mut self, p: &mut Payload<'_>) -> Result<()> {
        let acceptable =
            |major: i32, minor: i32| major == -1 || ((0..=1).contains(&major) && (0..=4).contains(&minor));
        if !acceptable(p.i32(0), p.i32(4)) || !acceptable(p.i32(8), p.i32(12)) {
            return fail(EINVAL);
        }
        for (at, value) in [(0, 1), (4, 4), (8, 1), (12, 4)] {
            p.set_i32(at, value);
        }
        if let Some(file) = self.state.files.get_mut(&self.file) {
            file.unique_set = true;
        }
        Ok(())
    }

    fn get_cap(&mut self, p: &mut Payload<'_>) -> Result<()> {
        let value = match p.u64(0) {
            CAP_DUMB_BUFFER => 1,
            CAP_DUMB_PREFERRED_DEPTH => 24,
            // Dumb buffers are ordinary cached RAM: reading them back is cheap, no shadow needed.
            CAP_DUMB_PREFER_SHADOW => 0,
            _ => return fail(EINVAL),
        };
        p.set_u64(8, value);
        Ok(())
    }

    fn set_client_cap(&mut self, p: &mut Payload<'_>) -> Result<()> {
        match (p.u64(0), p.u64(8)) {
            (CLIENT_CAP_CURSOR_PLANE_HOTSPOT, _) | (CLIENT_CAP_UNIVERSAL_PLANES, 0 | 1) => Ok(()),
            _ => fail(EINVAL),
        }
    }

    fn card_res(&mut self, p: &mut Payload<'_>) -> Result<()> {
        let fbs: Vec<u32> = self
            .state
            .framebuffers
            .iter()
            .filter(|(_, fb)| fb.owner == self.file && !fb.closed)
            .map(|(&id, _)| id)
            .collect();
        p.put_u32s(0, &fbs);
        p.put_u32s(1, &[ids::CRTC]);
        p.put_u32s(2, &[ids::CONNECTOR]);
        p.put_u32s(3, &[ids::ENCODER]);
        let (max_w, max_h) = self.kms.adapter.max_size();
        for (at, value) in [(16, 0), (20, max_w), (24, 0), (28, max_h)] {
            p.set_u32(at, value);
        }
        Ok(())
    }

    fn get_crtc(&mut self, p: &mut Payload<'_>) -> Result<()> {
        if p.u32(4) != ids::CRTC {
            return fail(ENOENT);
        }
        let saved = self.saved().clone();
        p.set_u32(8, saved.plane.fb.unwrap_or(0));
        p.set_u32(12, saved.plane.src_x);
        p.set_u32(16, saved.plane.src_y);
        p.set_u32(20, 0);
        p.set_u32(24, u32::from(saved.mode.is_some()));
        match saved.mode {
            Some(mode) => props::encode_mode(p.fixed_bytes(28, 68), &mode),
            None => p.fixed_bytes(28, 68).fill(0),
        }
        Ok(())
    }

    /// Sets (or, without a mode, turns off) the CRTC, checking in Linux's order: position (ERANGE),
    /// CRTC (ENOENT), framebuffer (EINVAL for -1 with none on the plane, ENOENT), mode (EINVAL),
    /// viewport (ENOSPC), then the connectors: a mode needs one, connectors need a mode (EINVAL),
    /// and each must exist (ENOENT).
    fn set_crtc(&mut self, p: &mut Payload<'_>) -> Result<()> {
        let (x, y) = (p.u32(12), p.u32(16));
        if x > 0xffff || y > 0xffff {
            return fail(ERANGE);
        }
        if p.u32(4) != ids::CRTC {
            return fail(ENOENT);
        }
        let connectors = p.u32s(0);
        let check_connectors = |with_mode: bool| {
            if with_mode == connectors.is_empty() || connectors.len() > 1 {
                return fail(EINVAL);
            }
            match connectors.iter().all(|&c| c == ids::CONNECTOR) {
                true => Ok(()),
                false => fail(ENOENT),
            }
        };
        let attach = !connectors.is_empty();
        let old_fb = self.saved().plane.fb;
        if p.u32(24) == 0 {
            check_connectors(false)?;
            let saved = self.saved();
            saved.mode = None;
            saved.plane = Plane::default();
            saved.connector_attached = false;
            if self.active() {
                self.kms.adapter.disable().map_err(device)?;
            }
            self.reap_if_closed(old_fb);
            return Ok(());
        }
        // A mode needs a framebuffer (as in Linux); -1 keeps the one the plane has.
        let fb_id = match p.u32(8) {
            u32::MAX => old_fb.ok_or(Error::new(EINVAL))?,
            0 => return fail(ENOENT),
            id => id,
        };
        self.own_fb(fb_id)?;
        let (width, height) = props::decode_size(p.fixed_bytes(28, 68));
        let mode = *self
            .kms
            .adapter
            .modes()
            .iter()
            .find(|m| (m.hdisplay, m.vdisplay) == (width, height))
            .ok_or(Error::new(EINVAL))?;
        let plane = Plane {
            fb: Some(fb_id),
            src_x: x,
            src_y: y,
            crtc_x: 0,
            crtc_y: 0,
            width: width.into(),
            height: height.into(),
        };
        let fb = self.own_fb(fb_id)?;
        let covers = x.checked_add(plane.width).is_some_and(|r| r <= fb.width)
            && y.checked_add(plane.height).is_some_and(|b| b <= fb.height);
        if !covers {
            return fail(ENOSPC);
        }
        check_connectors(true)?;
        if self.active() {
            self.kms.adapter.set_mode(width, height).map_err(device)?;
            self.kms.show_plane(Some(fb), &plane, &mode).map_err(device)?;
        }
        let saved = self.saved();
        saved.mode = Some(mode);
        saved.plane = plane;
        saved.connector_attached |= attach;
        if old_fb != plane.fb {
            self.reap_if_closed(old_fb);
        }
        Ok(())
    }

    fn get_encoder(&mut self, p: &mut Payload<'_>) -> Result<()> {
        if p.u32(0) != ids::ENCODER {
            return fail(ENOENT);
        }
        let on = self.saved().mode.is_some();
        p.set_u32(4, ENCODER_DAC);
        p.set_u32(8, if on { ids::CRTC } else { 0 });
        p.set_u32(12, 1);
        p.set_u32(16, 1);
        Ok(())
    }

    fn get_connector(&mut self, p: &mut Payload<'_>) -> Result<()> {
        if p.u32(16) != ids::CONNECTOR {
            return fail(ENOENT);
        }
        let adapter = &self.kms.adapter;
        let saved = self.saved().clone();
        p.put_u32s(0, &[ids::ENCODER]);
        p.put(1, adapter.modes(), props::encode_mode)?;
        let edid_blob = self.state.edid_blob.unwrap_or(0);
        let crtc = if saved.connector_attached { ids::CRTC } else { 0 };
        p.put_u32s(2, &[props::EDID, props::DPMS, props::TILE, props::CRTC_ID]);
        p.put_u64s(3, &[edid_blob.into(), saved.dpms.into(), 0, crtc.into()]);
        p.set_u32(12, if saved.connector_attached { ids::ENCODER } else { 0 });
        p.set_u32(20, CONNECTOR_VIRTUAL);
        p.set_u32(24, 1);
        p.set_u32(28, if adapter.is_unplugged() { DISCONNECTED } else { CONNECTED });
        let (mm_w, mm_h) = adapter.edid().map_or((0, 0), |e| (u32::from(e[21]) * 10, u32::from(e[22]) * 10));
        p.set_u32(32, mm_w);
        p.set_u32(36, mm_h);
        p.set_u32(40, 0);
        Ok(())
    }

    fn get_property(&mut self, p: &mut Payload<'_>) -> Result<()> {
        let property = props::property(p.u32(0)).ok_or(Error::new(ENOENT))?;
        p.set_u32(4, property.flags);
        let name = p.fixed_bytes(8, 32);
        name.fill(0);
        name[..property.name.len()].copy_from_slice(property.name.as_bytes());
        let values: &[u64] = if property.flags & props::RANGE != 0 || property.enums.is_empty() {
            property.values
        } else {
            &property.enums.iter().map(|&(v, _)| v).collect::<Vec<_>>()
        };
        p.put_u64s(0, values);
        p.put(1, property.enums, |out, &(value, name)| {
            out.fill(0);
            out[..8].copy_from_slice(&value.to_le_bytes());
            out[8..8 + name.len()].copy_from_slice(name.as_bytes());
        })
    }

    /// Only DPMS on the connector can be set (the legacy way to blank).
    fn set_property(&mut self, p: &mut Payload<'_>) -> Result<()> {
        let (value, property, object) = (p.u64(0), p.u32(8), p.u32(12));
        if property != props::DPMS || object != ids::CONNECTOR || value > 3 {
            return fail(EINVAL);
        }
        self.saved().dpms = value as u32;
        if self.active() {
            self.kms.adapter.blank(value != 0).map_err(device)?;
        }
        Ok(())
    }

    fn get_prop_blob(&mut self, p: &mut Payload<'_>) -> Result<()> {
        match (self.state.edid_blob, self.kms.adapter.edid()) {
            (Some(id), Some(edid)) if id == p.u32(0) => {
                p.put_bytes(0, edid);
                Ok(())
            }
            _ => fail(ENOENT),
        }
    }

    /// The handle GET_FB and GET_FB2 report: the caller's own existing handle to the framebuffer's
    /// buffer (the lowest, if several) when the caller owns the framebuffer, else 0 (as Linux
    /// answers a non-master), so others learn the geometry but can never map the pixels. No handle
    /// is ever made here: relibc routes no GEM_CLOSE, so a client polling GET_FB must not grow.
    fn handle_for(&self, id: u32) -> Result<u32> {
        let fb = self.state.framebuffers.get(&id).ok_or(Error::new(ENOENT))?;
        if fb.owner != self.file {
            return Ok(0);
        }
        let own = self.state.files.get(&self.file).ok_or(Error::new(EBADF))?;
        Ok(own.dumb.iter().find(|(_, (b, _))| Arc::ptr_eq(b, &fb.buffer)).map_or(0, |(&handle, _)| handle))
    }

    fn get_fb(&mut self, p: &mut Payload<'_>) -> Result<()> {
        let id = p.u32(0);
        let handle = self.handle_for(id)?;
        let fb = &self.state.framebuffers[&id];
        for (at, value) in
            [(4, fb.width), (8, fb.height), (12, fb.pitch), (16, 32), (20, fb.format.depth()), (24, handle)]
        {
            p.set_u32(at, value);
        }
        Ok(())
    }

    fn get_fb2(&mut self, p: &mut Payload<'_>) -> Result<()> {
        let id = p.u32(0);
        let handle = self.handle_for(id)?;
        let fb = &self.state.framebuffers[&id];
        let (width, height, format, pitch, offset) =
            (fb.width, fb.height, fb.format.fourcc(), fb.pitch, fb.offset);
        p.set_u32(4, width);
        p.set_u32(8, height);
        p.set_u32(12, format);
        for plane in 0..4 {
            let first = plane == 0;
            p.set_u32(20 + 4 * plane, if first { handle } else { 0 });
            p.set_u32(36 + 4 * plane, if first { pitch } else { 0 });
            p.set_u32(52 + 4 * plane, if first { offset as u32 } else { 0 });
            p.set_u64(72 + 8 * plane, 0);
        }
        Ok(())
    }

    /// Checks that a `width`×`height` image with `pitch` at `offset` lies inside `buffer`.
    fn wrap(
        &self,
        buffer: Arc<DumbBuffer>,
        geometry: [u32; 3],
        offset: usize,
        format: Format,
    ) -> Result<Framebuffer> {
        let [width, height, pitch] = geometry;
        let (max_w, max_h) = self.kms.adapter.max_size();
        let fits = width >= 1
            && height >= 1
            && width <= max_w
            && height <= max_h
            && offset.is_multiple_of(4)
            && u64::from(pitch) >= u64::from(width) * 4
            && (offset as u64 + u64::from(pitch) * u64::from(height - 1) + u64::from(width) * 4)
                <= buffer.memory.len() as u64;
        if !fits {
            return fail(EINVAL);
        }
        Ok(Framebuffer { owner: self.file, buffer, width, height, pitch, offset, format, closed: false })
    }

    fn add_fb(&mut self, p: &mut Payload<'_>) -> Result<()> {
        let format = match (p.u32(16), p.u32(20)) {
            (32, 24) => Format::Xrgb8888,
            (32, 32) => Format::Argb8888,
            _ => return fail(EINVAL),
        };
        let buffer = self.own_dumb(p.u32(24))?;
        let fb = self.wrap(buffer, [p.u32(4), p.u32(8), p.u32(12)], 0, format)?;
        let id = self.add_framebuffer(fb)?;
        p.set_u32(0, id);
        Ok(())
    }

    /// ADD_FB2 of a single-plane format, checked as Linux's `framebuffer_check` does: no flags but
    /// DRM_MODE_FB_MODIFIERS, no modifier but linear (0) on any plane (a non-zero one without the
    /// flag is refused too), and with the flag, no handle, pitch or offset on the unused planes
    /// (without it, old clients' uncleared fields there are ignored).
    fn add_fb2(&mut self, p: &mut Payload<'_>) -> Result<()> {
        let format = Format::from_fourcc(p.u32(12)).ok_or(Error::new(EINVAL))?;
        let flags = p.u32(16);
        let modifiers = (0..4).any(|plane| p.u64(72 + 8 * plane) != 0);
        let unused_planes_set =
            (1..4).any(|plane| [20, 36, 52].iter().any(|&field| p.u32(field + 4 * plane) != 0));
        if flags & !FB_MODIFIERS != 0 || modifiers || (flags & FB_MODIFIERS != 0 && unused_planes_set) {
            return fail(EINVAL);
        }
        let buffer = self.own_dumb(p.u32(20))?;
        let fb = self.wrap(buffer, [p.u32(4), p.u32(8), p.u32(36)], p.u32(52) as usize, format)?;
        let id = self.add_framebuffer(fb)?;
        p.set_u32(0, id);
        Ok(())
    }

    /// A framebuffer this file may destroy (its own; closed ones are gone for this purpose).
    fn destroyable(&self, id: u32) -> Result<()> {
        self.own_fb(id).map(drop)
    }

    fn rm_fb(&mut self, p: &mut Payload<'_>) -> Result<()> {
        let id = p.u32(0);
        self.destroyable(id)?;
        self.kms.remove_framebuffer(self.state, id);
        Ok(())
    }

    fn close_fb(&mut self, p: &mut Payload<'_>) -> Result<()> {
        let id = p.u32(0);
        self.destroyable(id)?;
        if let Some(fb) = self.state.framebuffers.get_mut(&id) {
            fb.closed = true;
        }
        self.reap_if_closed(Some(id));
        Ok(())
    }

    /// Shows another framebuffer in one go: a tear-free flip when the plane covers the screen, else
    /// one copy. The flip completes at once; with DRM_MODE_PAGE_FLIP_EVENT a `drm_event_vblank`
    /// is queued on the file for `read`. Checked in Linux's order: flags and the reserved field
    /// (EINVAL), CRTC (ENOENT), a plane with a framebuffer to flip from (EBUSY), the new framebuffer
    /// (ENOENT, EACCES for another file's), its size against the plane's source (ENOSPC), its
    /// format (EINVAL), and no flip pending on the CRTC (EBUSY while any file on this VT has not
    /// read its completion event).
    fn page_flip(&mut self, p: &mut Payload<'_>) -> Result<()> {
        let (crtc, id, flags, reserved, user_data) = (p.u32(0), p.u32(4), p.u32(8), p.u32(12), p.u64(16));
        if flags & !(PAGE_FLIP_EVENT | PAGE_FLIP_ASYNC) != 0 || reserved != 0 {
            return fail(EINVAL);
        }
        if crtc != ids::CRTC {
            return fail(ENOENT);
        }
        let saved = self.saved().clone();
        let (Some(mode), Some(old_id)) = (saved.mode, saved.plane.fb) else { return fail(EBUSY) };
        let fb = self.own_fb(id)?;
        let plane = Plane { fb: Some(id), ..saved.plane };
        let covers = plane.src_x.checked_add(plane.width).is_some_and(|r| r <= fb.width)
            && plane.src_y.checked_add(plane.height).is_some_and(|b| b <= fb.height);
        if !covers {
            return fail(ENOSPC);
        }
        if self.state.framebuffers.get(&old_id).is_some_and(|old| old.format != fb.format) {
            return fail(EINVAL);
        }
        let vt = self.vt();
        if self.state.files.values().any(|f| f.vt == vt && !f.events.is_empty()) {
            return fail(EBUSY);
        }
        if self.active() {
            let whole_screen = (plane.crtc_x, plane.crtc_y) == (0, 0)
                && (plane.width, plane.height) == (mode.hdisplay.into(), mode.vdisplay.into());
            let result = if whole_screen {
                let bytes = fb
                    .buffer
                    .memory
                    .shared()
                    .skip(fb.offset)
                    .ok_or(DeviceError::OutOfBounds)
                    .map_err(device)?;
                let src = crate::device::bochs::Source {
                    bytes,
                    pitch: fb.pitch as usize,
                    x: plane.src_x,
                    y: plane.src_y,
                };
                self.kms.adapter.flip(src)
            } else {
                self.kms.present(fb, &plane, full(fb))
            };
            result.map_err(device)?;
        }
        self.saved().plane = plane;
        self.reap_if_closed(saved.plane.fb.filter(|&old| old != id));
        if flags & PAGE_FLIP_EVENT != 0 {
            self.kms.queue_flip_event(self.state, self.file, user_data);
        }
        Ok(())
    }

    fn dirty_fb(&mut self, p: &mut Payload<'_>) -> Result<()> {
        if self.kms.adapter.is_unplugged() {
            return Ok(()); // accepted and dropped: fbcond and fbbootlogd panic on an error here
        }
        let id = p.u32(0);
        let fb = self.state.framebuffers.get(&id).filter(|fb| !fb.closed).ok_or(Error::new(ENOENT))?;
        let whole = full(fb);
        let damage = if p.count(0) == 0 {
            Some(whole)
        } else {
            (0..p.count(0))
                .filter_map(|i| {
                    let c = p.element(0, i);
                    let at = |j: usize| u32::from(u16::from_le_bytes([c[j], c[j + 1]]));
                    let (x1, y1) = (at(0), at(2));
                    let (x2, y2) = (at(4).min(whole.width), at(6).min(whole.height));
                    // `then`, not `then_some`: the sizes may only be computed once the check holds.
                    (x1 < x2 && y1 < y2).then(|| Rect { x: x1, y: y1, width: x2 - x1, height: y2 - y1 })
                })
                .reduce(Rect::union)
        };
        let Some(active) = self.state.active_vt else { return Ok(()) };
        let plane = self.state.vts.get(&active).map(|vt| vt.plane).unwrap_or_default();
        if let (Some(damage), true) = (damage, plane.fb == Some(id)) {
            match self.kms.present(fb, &plane, damage) {
                // Unplugged between the check above and the copy: still accepted and dropped.
                Err(DeviceError::Gone) | Ok(()) => {}
                Err(error) => return Err(device(error)),
            }
        }
        Ok(())
    }

    fn create_dumb(&mut self, p: &mut Payload<'_>) -> Result<()> {
        let (height, width, bpp, flags) = (p.u32(0), p.u32(4), p.u32(8), p.u32(12));
        let (max_w, max_h) = self.kms.adapter.max_size();
        if bpp != 32 || flags != 0 || !(1..=max_w).contains(&width) || !(1..=max_h).contains(&height) {
            return fail(EINVAL);
        }
        let pitch = width * 4;
        let bytes = u64::from(pitch) * u64::from(height);
        if bytes >= DUMB_WINDOW {
            return fail(EINVAL);
        }
        let len = (bytes as usize).div_ceil(PAGE) * PAGE;
        let memory = self.kms.allocator.allocate(len)?;
        let handle = self.new_handle(Arc::new(DumbBuffer { memory }), len)?;
        p.set_u32(16, handle);
        p.set_u32(20, pitch);
        p.set_u64(24, len as u64);
        Ok(())
    }

    fn map_dumb(&mut self, p: &mut Payload<'_>) -> Result<()> {
        let handle = p.u32(0);
        self.own_dumb(handle)?;
        p.set_u64(8, u64::from(handle) * DUMB_WINDOW);
        Ok(())
    }

    fn destroy_dumb(&mut self, p: &mut Payload<'_>) -> Result<()> {
        let file = self.state.files.get_mut(&self.file).ok_or(Error::new(EBADF))?;
        let (_, charged) = file.dumb.remove(&p.u32(0)).ok_or(Error::new(ENOENT))?;
        file.dumb_bytes -= charged;
        Ok(())
    }

    fn get_plane(&mut self, p: &mut Payload<'_>) -> Result<()> {
        if p.u32(0) != ids::PLANE {
            return fail(ENOENT);
        }
        let plane = self.saved().plane;
        p.set_u32(4, if plane.fb.is_some() { ids::CRTC } else { 0 });
        p.set_u32(8, plane.fb.unwrap_or(0));
        p.set_u32(12, 1);
        p.set_u32(16, 0);
        p.put_u32s(0, &[Format::XRGB8888, Format::ARGB8888]);
        Ok(())
    }

    /// Places a framebuffer region on the screen. No scaling: the source size (16.16 fixed point,
    /// whole pixels only) must equal the destination size, which must lie within the mode.
    fn set_plane(&mut self, p: &mut Payload<'_>) -> Result<()> {
        if p.u32(0) != ids::PLANE || p.u32(4) != ids::CRTC {
            return fail(ENOENT);
        }
        let old_fb = self.saved().plane.fb;
        let id = p.u32(8);
        if id == 0 {
            let has_mode = self.saved().mode.is_some();
            self.saved().plane.fb = None;
            if self.active() && has_mode {
                // The CRTC stays on; only the plane goes.
                self.kms.adapter.clear().map_err(device)?;
            }
            self.reap_if_closed(old_fb);
            return Ok(());
        }
        let (crtc_x, crtc_y, crtc_w, crtc_h) = (p.i32(16), p.i32(20), p.u32(24), p.u32(28));
        let (src_x, src_y, src_h, src_w) = (p.u32(32), p.u32(36), p.u32(40), p.u32(44));
        let whole_pixels = [src_x, src_y, src_w, src_h].iter().all(|v| v & 0xffff == 0);
        if !whole_pixels || src_w >> 16 != crtc_w || src_h >> 16 != crtc_h || crtc_x < 0 || crtc_y < 0 {
            return fail(EINVAL);
        }
        let mode = self.saved().mode.ok_or(Error::new(EINVAL))?;
        let plane = Plane {
            fb: Some(id),
            src_x: src_x >> 16,
            src_y: src_y >> 16,
            crtc_x: crtc_x as u32,
            crtc_y: crtc_y as u32,
            width: crtc_w,
            height: crtc_h,
        };
        let on_screen = plane.crtc_x.checked_add(crtc_w).is_some_and(|r| r <= mode.hdisplay.into())
            && plane.crtc_y.checked_add(crtc_h).is_some_and(|b| b <= mode.vdisplay.into());
        let fb = self.own_fb(id)?;
        let in_fb = plane.src_x.checked_add(crtc_w).is_some_and(|r| r <= fb.width)
            && plane.src_y.checked_add(crtc_h).is_some_and(|b| b <= fb.height);
        if !on_screen || !in_fb {
            return fail(EINVAL);
        }
        if self.active() {
            self.kms.show_plane(Some(fb), &plane, &mode).map_err(device)?;
        }
        self.saved().plane = plane;
        if old_fb != Some(id) {
            self.reap_if_closed(old_fb);
        }
        Ok(())
    }

    fn obj_get_properties(&mut self, p: &mut Payload<'_>) -> Result<()> {
        let id = p.u32(4);
        let saved = self.saved().clone();
        let plane = saved.plane;
        let crtc_of = |on: bool| u64::from(if on { ids::CRTC } else { 0 });
        let (kind, props, values): (u32, Vec<u32>, Vec<u64>) = match id {
            ids::CRTC => (object::CRTC, vec![props::ACTIVE], vec![u64::from(saved.mode.is_some())]),
            ids::CONNECTOR => (
                object::CONNECTOR,
                vec![props::EDID, props::DPMS, props::TILE, props::CRTC_ID],
                vec![
                    self.state.edid_blob.unwrap_or(0).into(),
                    saved.dpms.into(),
                    0,
                    crtc_of(saved.connector_attached),
                ],
            ),
            ids::PLANE => {
                let mut props = vec![props::TYPE, props::FB_ID, props::CRTC_ID];
                props.extend(props::GEOMETRY);
                let (x, y, w, h) = (plane.crtc_x, plane.crtc_y, plane.width, plane.height);
                let mut values = vec![1, plane.fb.unwrap_or(0).into(), crtc_of(plane.fb.is_some())];
                values.extend([x, y, w, h].map(u64::from));
                values.extend([plane.src_x, plane.src_y, w, h].map(|v| u64::from(v) << 16));
                (object::PLANE, props, values)
            }
            ids::ENCODER => (object::ENCODER, vec![], vec![]),
            id if props::property(id).is_some() => (object::PROPERTY, vec![], vec![]),
            id if Some(id) == self.state.edid_blob => (object::BLOB, vec![], vec![]),
            id if self.state.framebuffers.get(&id).is_some_and(|fb| !fb.closed) => {
                (object::FB, vec![], vec![])
            }
            _ => return fail(ENOENT),
        };
        p.put_u32s(0, &props);
        p.put_u64s(1, &values);
        p.set_u32(8, kind);
        Ok(())
    }
}
