//! The ioctl table, one row per ioctl ([`ioctl::TABLE`]), and the handlers its rows name: each
//! reads its payload through the typed fixed part and arrays its row gives it, checks every id and
//! size the client sent, and answers with an errno rather than a panic.

use std::sync::Arc;

use syscall::error::{Error, Result, EACCES, EBADF, EBUSY, EINVAL, ENODEV, ENOENT, ENOSPC, ENXIO, ERANGE};
use zerocopy::little_endian::{U32, U64};
use zerocopy::FromZeros;

use super::props::{self, object};
use super::{
    full, ids, DumbBuffer, FileId, Format, Framebuffer, Kms, Plane, State, DUMB_WINDOW,
    MAX_DUMB_BUFFERS_PER_FILE, MAX_DUMB_BYTES_PER_FILE, MAX_FRAMEBUFFERS_PER_FILE, PAGE,
};
use crate::device::{DeviceError, Rect};
use crate::uapi::codec::Payload;
use crate::uapi::wire::{
    cap, client_cap, CardRes, CloseFb, ConnectorSetProperty, CreateDumb, Crtc, CrtcPageFlip, DestroyDumb,
    FbCmd, FbCmd2, FbDirtyCmd, GetBlob, GetCap, GetConnector, GetEncoder, GetPlane, GetPlaneRes, GetProperty,
    MapDumb, ModeInfo, ObjGetProperties, PropertyEnum, RmFb, SetClientCap, SetPlane, SetVersion, Unique,
    Version,
};
use ioctl::AfterUnplug;

/// The DRM ioctls the display scheme serves: one row each, holding the number (`nr`,
/// metadata\[0\]), the fixed part (a [`crate::uapi::wire`] struct, which brings the arrays that follow
/// it), the handler and what the ioctl does once the device is unplugged. A new ioctl is one more
/// row, with its handler (and its struct, if no existing one fits).
pub mod ioctl {
    use syscall::error::Result;

    use super::super::{FileId, Kms};
    use super::Call;
    use crate::uapi::codec::Payload;
    use crate::uapi::wire::*;

    /// What an ioctl does once the device is unplugged.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum AfterUnplug {
        /// ENODEV before its number or payload is looked at, as Linux's `drm_dev_enter` comes first.
        Enodev,
        /// Served: it keeps today's consumers alive (GET_CONNECTOR, DIRTYFB) or only frees memory.
        Served,
    }

    /// One row of [`TABLE`].
    pub struct Ioctl {
        /// The DRM ioctl number.
        pub nr: u64,
        /// Bytes in its fixed part.
        pub fixed: usize,
        /// What it does once the device is unplugged.
        pub after_unplug: AfterUnplug,
        /// Checks the payload against the row's fixed part and arrays, then runs its handler.
        pub(in crate::kms) serve: fn(&Kms, FileId, &mut [u8]) -> Result<()>,
    }

    /// The row for ioctl `nr`, or `None` for one the scheme does not know.
    pub fn find(nr: u64) -> Option<&'static Ioctl> {
        TABLE.binary_search_by_key(&nr, |row| row.nr).ok().map(|at| &TABLE[at])
    }

    macro_rules! table {
        ($(
            $(#[$doc:meta])*
            $name:ident = $nr:literal, $fixed:ty, $handler:path, $after_unplug:ident;
        )*) => {
            $($(#[$doc])* pub const $name: u64 = $nr;)*

            /// Every ioctl served, in ascending number order (for [`find`]'s binary search).
            pub static TABLE: &[Ioctl] = &[$(Ioctl {
                nr: $name,
                fixed: size_of::<$fixed>(),
                after_unplug: AfterUnplug::$after_unplug,
                serve: |kms, file, bytes| {
                    let mut payload = Payload::<$fixed>::parse(bytes)?;
                    kms.with_call(file, |call| $handler(call, &mut payload))
                },
            }),*];
        };
    }

    table! {
        /// DRM_IOCTL_VERSION.
        VERSION = 0x00, Version, Call::version, Enodev;
        /// DRM_IOCTL_GET_UNIQUE.
        GET_UNIQUE = 0x01, Unique, Call::get_unique, Enodev;
        /// DRM_IOCTL_SET_VERSION.
        SET_VERSION = 0x07, SetVersion, Call::set_version, Enodev;
        /// DRM_IOCTL_GET_CAP.
        GET_CAP = 0x0c, GetCap, Call::get_cap, Enodev;
        /// DRM_IOCTL_SET_CLIENT_CAP.
        SET_CLIENT_CAP = 0x0d, SetClientCap, Call::set_client_cap, Enodev;
        /// DRM_IOCTL_MODE_GETRESOURCES.
        MODE_CARD_RES = 0xa0, CardRes, Call::card_res, Enodev;
        /// DRM_IOCTL_MODE_GETCRTC.
        GET_CRTC = 0xa1, Crtc, Call::get_crtc, Enodev;
        /// DRM_IOCTL_MODE_SETCRTC.
        SET_CRTC = 0xa2, Crtc, Call::set_crtc, Enodev;
        /// DRM_IOCTL_MODE_CURSOR.
        CURSOR = 0xa3, Cursor, Call::cursor, Enodev;
        /// DRM_IOCTL_MODE_GETENCODER.
        GET_ENCODER = 0xa6, GetEncoder, Call::get_encoder, Enodev;
        /// DRM_IOCTL_MODE_GETCONNECTOR.
        GET_CONNECTOR = 0xa7, GetConnector, Call::get_connector, Served;
        /// DRM_IOCTL_MODE_GETPROPERTY.
        GET_PROPERTY = 0xaa, GetProperty, Call::get_property, Enodev;
        /// DRM_IOCTL_MODE_SETPROPERTY.
        SET_PROPERTY = 0xab, ConnectorSetProperty, Call::set_property, Enodev;
        /// DRM_IOCTL_MODE_GETPROPBLOB.
        GET_PROP_BLOB = 0xac, GetBlob, Call::get_prop_blob, Enodev;
        /// DRM_IOCTL_MODE_GETFB.
        GET_FB = 0xad, FbCmd, Call::get_fb, Enodev;
        /// DRM_IOCTL_MODE_ADDFB.
        ADD_FB = 0xae, FbCmd, Call::add_fb, Enodev;
        /// DRM_IOCTL_MODE_RMFB.
        RM_FB = 0xaf, RmFb, Call::rm_fb, Served;
        /// DRM_IOCTL_MODE_PAGE_FLIP.
        PAGE_FLIP = 0xb0, CrtcPageFlip, Call::page_flip, Enodev;
        /// DRM_IOCTL_MODE_DIRTYFB.
        DIRTYFB = 0xb1, FbDirtyCmd, Call::dirty_fb, Served;
        /// DRM_IOCTL_MODE_CREATE_DUMB.
        CREATE_DUMB = 0xb2, CreateDumb, Call::create_dumb, Enodev;
        /// DRM_IOCTL_MODE_MAP_DUMB.
        MAP_DUMB = 0xb3, MapDumb, Call::map_dumb, Enodev;
        /// DRM_IOCTL_MODE_DESTROY_DUMB.
        DESTROY_DUMB = 0xb4, DestroyDumb, Call::destroy_dumb, Served;
        /// DRM_IOCTL_MODE_GETPLANERESOURCES.
        GET_PLANE_RES = 0xb5, GetPlaneRes, Call::get_plane_res, Enodev;
        /// DRM_IOCTL_MODE_GETPLANE.
        GET_PLANE = 0xb6, GetPlane, Call::get_plane, Enodev;
        /// DRM_IOCTL_MODE_SETPLANE.
        SET_PLANE = 0xb7, SetPlane, Call::set_plane, Enodev;
        /// DRM_IOCTL_MODE_ADDFB2.
        ADD_FB2 = 0xb8, FbCmd2, Call::add_fb2, Enodev;
        /// DRM_IOCTL_MODE_OBJ_GETPROPERTIES.
        OBJ_GET_PROPERTIES = 0xb9, ObjGetProperties, Call::obj_get_properties, Enodev;
        /// DRM_IOCTL_MODE_CURSOR2.
        CURSOR2 = 0xbb, Cursor2, Call::cursor, Enodev;
        /// DRM_IOCTL_MODE_GETFB2.
        GET_FB2 = 0xce, FbCmd2, Call::get_fb2, Enodev;
        /// DRM_IOCTL_MODE_CLOSEFB.
        CLOSE_FB = 0xd0, CloseFb, Call::close_fb, Served;
    }
}

fn fail<T>(errno: i32) -> Result<T> {
    Err(Error::new(errno))
}

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

impl Kms {
    /// Serves one ioctl (`nr` = metadata\[0\]) on `file`, editing `payload` in place. Once the
    /// device is unplugged, every ioctl whose row says [`AfterUnplug::Enodev`] answers ENODEV before
    /// anything else is looked at (unknown numbers and malformed payloads included), as Linux's
    /// `drm_dev_enter` comes first.
    pub fn call(&self, file: FileId, nr: u64, payload: &mut [u8]) -> Result<usize> {
        let row = ioctl::find(nr);
        if self.adapter.is_unplugged() && row.is_none_or(|row| row.after_unplug == AfterUnplug::Enodev) {
            return fail(ENODEV);
        }
        let row = row.ok_or(Error::new(EINVAL))?;
        (row.serve)(self, file, payload).map(|()| 0)
    }

    /// Runs `handler` with the state locked, for `file` (EBADF if it is not open): the part of every
    /// row's `serve` after its payload checked out.
    pub(super) fn with_call(
        &self,
        file: FileId,
        handler: impl FnOnce(&mut Call<'_>) -> Result<()>,
    ) -> Result<()> {
        let mut state = self.lock();
        if !state.files.contains_key(&file) {
            return fail(EBADF);
        }
        handler(&mut Call { kms: self, state: &mut state, file })
    }
}

/// One call in progress: the state (locked) and the calling file.
pub(super) struct Call<'a> {
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

    fn version(&mut self, p: &mut Payload<'_, Version>) -> Result<()> {
        let fixed = p.fixed();
        fixed.version_major = 1.into();
        fixed.version_minor = 4.into();
        fixed.version_patchlevel = 0.into();
        p.put(Version::NAME, self.kms.adapter.name().bytes())?;
        p.put(Version::DATE, *b"0")?;
        p.put(Version::DESC, self.kms.adapter.description().bytes())
    }

    fn get_unique(&mut self, p: &mut Payload<'_, Unique>) -> Result<()> {
        let unique = if self.state.files[&self.file].unique_set { self.kms.unique.as_bytes() } else { b"" };
        p.put(Unique::UNIQUE, unique.iter().copied())
    }

    /// Accepts what libdrm sends (1.4, or -1 for "any") and what Redox clients send (0.4).
    fn set_version(&mut self, p: &mut Payload<'_, SetVersion>) -> Result<()> {
        let acceptable =
            |major: i32, minor: i32| major == -1 || ((0..=1).contains(&major) && (0..=4).contains(&minor));
        let asked = p.fixed();
        if !acceptable(asked.drm_di_major.get(), asked.drm_di_minor.get())
            || !acceptable(asked.drm_dd_major.get(), asked.drm_dd_minor.get())
        {
            return fail(EINVAL);
        }
        *p.fixed() = SetVersion {
            drm_di_major: 1.into(),
            drm_di_minor: 4.into(),
            drm_dd_major: 1.into(),
            drm_dd_minor: 4.into(),
        };
        if let Some(file) = self.state.files.get_mut(&self.file) {
            file.unique_set = true;
        }
        Ok(())
    }

    fn get_cap(&mut self, p: &mut Payload<'_, GetCap>) -> Result<()> {
        let fixed = p.fixed();
        let value: u64 = match fixed.capability.get() {
            cap::DUMB_BUFFER => 1,
            cap::DUMB_PREFERRED_DEPTH => 24,
            // Dumb buffers are ordinary cached RAM: reading them back is cheap, no shadow needed.
            cap::DUMB_PREFER_SHADOW => 0,
            _ => return fail(EINVAL),
        };
        fixed.value = value.into();
        Ok(())
    }

    fn set_client_cap(&mut self, p: &mut Payload<'_, SetClientCap>) -> Result<()> {
        let fixed = p.fixed();
        match (fixed.capability.get(), fixed.value.get()) {
            (client_cap::CURSOR_PLANE_HOTSPOT, _) | (client_cap::UNIVERSAL_PLANES, 0 | 1) => Ok(()),
            _ => fail(EINVAL),
        }
    }

    fn card_res(&mut self, p: &mut Payload<'_, CardRes>) -> Result<()> {
        let fbs: Vec<U32> = self
            .state
            .framebuffers
            .iter()
            .filter(|(_, fb)| fb.owner == self.file && !fb.closed)
            .map(|(&id, _)| id.into())
            .collect();
        p.put(CardRes::FBS, fbs)?;
        p.put(CardRes::CRTCS, [U32::new(ids::CRTC)])?;
        p.put(CardRes::CONNECTORS, [U32::new(ids::CONNECTOR)])?;
        p.put(CardRes::ENCODERS, [U32::new(ids::ENCODER)])?;
        let (max_w, max_h) = self.kms.adapter.max_size();
        let fixed = p.fixed();
        fixed.min_width = 0.into();
        fixed.max_width = max_w.into();
        fixed.min_height = 0.into();
        fixed.max_height = max_h.into();
        Ok(())
    }

    fn get_crtc(&mut self, p: &mut Payload<'_, Crtc>) -> Result<()> {
        if p.fixed().crtc_id.get() != ids::CRTC {
            return fail(ENOENT);
        }
        let saved = self.saved().clone();
        let fixed = p.fixed();
        fixed.fb_id = saved.plane.fb.unwrap_or(0).into();
        fixed.x = saved.plane.src_x.into();
        fixed.y = saved.plane.src_y.into();
        fixed.gamma_size = 0.into();
        fixed.mode_valid = u32::from(saved.mode.is_some()).into();
        fixed.mode = saved.mode.as_ref().map_or_else(ModeInfo::new_zeroed, ModeInfo::from);
        Ok(())
    }

    /// Sets (or, without a mode, turns off) the CRTC, checking in Linux's order: position (ERANGE),
    /// CRTC (ENOENT), framebuffer (EINVAL for -1 with none on the plane, ENOENT), mode (EINVAL),
    /// viewport (ENOSPC), then the connectors: a mode needs one, connectors need a mode (EINVAL),
    /// and each must exist (ENOENT).
    fn set_crtc(&mut self, p: &mut Payload<'_, Crtc>) -> Result<()> {
        let request = *p.fixed();
        let (x, y) = (request.x.get(), request.y.get());
        if x > 0xffff || y > 0xffff {
            return fail(ERANGE);
        }
        if request.crtc_id.get() != ids::CRTC {
            return fail(ENOENT);
        }
        let connectors = p.elements(Crtc::CONNECTORS)?;
        let check_connectors = |with_mode: bool| {
            if with_mode == connectors.is_empty() || connectors.len() > 1 {
                return fail(EINVAL);
            }
            match connectors.iter().all(|&c| c.get() == ids::CONNECTOR) {
                true => Ok(()),
                false => fail(ENOENT),
            }
        };
        let attach = !connectors.is_empty();
        let old_fb = self.saved().plane.fb;
        if request.mode_valid.get() == 0 {
            check_connectors(false)?;
            let saved = self.saved();
            saved.mode = None;
            saved.plane = Plane::default();
            saved.connector_attached = false;
            if self.active() {
                self.kms.adapter.disable()?;
            }
            self.reap_if_closed(old_fb);
            return Ok(());
        }
        // A mode needs a framebuffer (as in Linux); -1 keeps the one the plane has.
        let fb_id = match request.fb_id.get() {
            u32::MAX => old_fb.ok_or(Error::new(EINVAL))?,
            0 => return fail(ENOENT),
            id => id,
        };
        self.own_fb(fb_id)?;
        let (width, height) = request.mode.size();
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
            self.kms.adapter.set_mode(width, height)?;
            self.kms.show_plane(Some(fb), &plane, &mode)?;
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

    /// CURSOR and CURSOR2. Bochs has no hardware cursor: the reference answers ENXIO for such
    /// adapters, and clients fall back to drawing the cursor themselves.
    fn cursor<T>(&mut self, _: &mut Payload<'_, T>) -> Result<()> {
        fail(ENXIO)
    }

    fn get_encoder(&mut self, p: &mut Payload<'_, GetEncoder>) -> Result<()> {
        if p.fixed().encoder_id.get() != ids::ENCODER {
            return fail(ENOENT);
        }
        let on = self.saved().mode.is_some();
        let fixed = p.fixed();
        fixed.encoder_type = ENCODER_DAC.into();
        fixed.crtc_id = if on { ids::CRTC } else { 0 }.into();
        fixed.possible_crtcs = 1.into();
        fixed.possible_clones = 1.into();
        Ok(())
    }

    fn get_connector(&mut self, p: &mut Payload<'_, GetConnector>) -> Result<()> {
        if p.fixed().connector_id.get() != ids::CONNECTOR {
            return fail(ENOENT);
        }
        let adapter = &self.kms.adapter;
        let saved = self.saved().clone();
        p.put(GetConnector::ENCODERS, [U32::new(ids::ENCODER)])?;
        p.put(GetConnector::MODES, adapter.modes().iter().map(ModeInfo::from))?;
        let edid_blob = self.state.edid_blob.unwrap_or(0);
        let crtc = if saved.connector_attached { ids::CRTC } else { 0 };
        p.put(GetConnector::PROPS, [props::EDID, props::DPMS, props::TILE, props::CRTC_ID].map(U32::new))?;
        p.put(
            GetConnector::PROP_VALUES,
            [edid_blob.into(), saved.dpms.into(), 0, crtc.into()].map(U64::new),
        )?;
        let (mm_w, mm_h) = adapter.edid().map_or((0, 0), |e| (u32::from(e[21]) * 10, u32::from(e[22]) * 10));
        let fixed = p.fixed();
        fixed.encoder_id = if saved.connector_attached { ids::ENCODER } else { 0 }.into();
        fixed.connector_type = CONNECTOR_VIRTUAL.into();
        fixed.connector_type_id = 1.into();
        fixed.connection = if adapter.is_unplugged() { DISCONNECTED } else { CONNECTED }.into();
        fixed.mm_width = mm_w.into();
        fixed.mm_height = mm_h.into();
        fixed.subpixel = 0.into();
        Ok(())
    }

    fn get_property(&mut self, p: &mut Payload<'_, GetProperty>) -> Result<()> {
        let property = props::property(p.fixed().prop_id.get()).ok_or(Error::new(ENOENT))?;
        let fixed = p.fixed();
        fixed.flags = property.flags.into();
        fixed.name = name_field(property.name);
        let values: Vec<U64> = if property.flags & props::RANGE != 0 || property.enums.is_empty() {
            property.values.iter().map(|&v| v.into()).collect()
        } else {
            property.enums.iter().map(|&(v, _)| v.into()).collect()
        };
        p.put(GetProperty::VALUES, values)?;
        p.put(
            GetProperty::ENUMS,
            property
                .enums
                .iter()
                .map(|&(value, name)| PropertyEnum { value: value.into(), name: name_field(name) }),
        )
    }

    /// Only DPMS on the connector can be set (the legacy way to blank).
    fn set_property(&mut self, p: &mut Payload<'_, ConnectorSetProperty>) -> Result<()> {
        let fixed = p.fixed();
        let (value, property, connector) = (fixed.value.get(), fixed.prop_id.get(), fixed.connector_id.get());
        if property != props::DPMS || connector != ids::CONNECTOR || value > 3 {
            return fail(EINVAL);
        }
        self.saved().dpms = value as u32;
        if self.active() {
            self.kms.adapter.blank(value != 0)?;
        }
        Ok(())
    }

    fn get_prop_blob(&mut self, p: &mut Payload<'_, GetBlob>) -> Result<()> {
        match (self.state.edid_blob, self.kms.adapter.edid()) {
            (Some(id), Some(edid)) if id == p.fixed().blob_id.get() => {
                p.put(GetBlob::DATA, edid.iter().copied())
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

    fn get_fb(&mut self, p: &mut Payload<'_, FbCmd>) -> Result<()> {
        let id = p.fixed().fb_id.get();
        let handle = self.handle_for(id)?;
        let fb = &self.state.framebuffers[&id];
        let fixed = p.fixed();
        fixed.width = fb.width.into();
        fixed.height = fb.height.into();
        fixed.pitch = fb.pitch.into();
        fixed.bpp = 32.into();
        fixed.depth = fb.format.depth().into();
        fixed.handle = handle.into();
        Ok(())
    }

    fn get_fb2(&mut self, p: &mut Payload<'_, FbCmd2>) -> Result<()> {
        let id = p.fixed().fb_id.get();
        let handle = self.handle_for(id)?;
        let fb = &self.state.framebuffers[&id];
        let fixed = p.fixed();
        fixed.width = fb.width.into();
        fixed.height = fb.height.into();
        fixed.pixel_format = fb.format.fourcc().into();
        // One plane: the other three report nothing.
        fixed.handles = [handle, 0, 0, 0].map(U32::new);
        fixed.pitches = [fb.pitch, 0, 0, 0].map(U32::new);
        fixed.offsets = [fb.offset as u32, 0, 0, 0].map(U32::new);
        fixed.modifier = [U64::ZERO; 4];
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

    fn add_fb(&mut self, p: &mut Payload<'_, FbCmd>) -> Result<()> {
        let request = *p.fixed();
        let format = match (request.bpp.get(), request.depth.get()) {
            (32, 24) => Format::Xrgb8888,
            (32, 32) => Format::Argb8888,
            _ => return fail(EINVAL),
        };
        let buffer = self.own_dumb(request.handle.get())?;
        let geometry = [request.width, request.height, request.pitch].map(U32::get);
        let fb = self.wrap(buffer, geometry, 0, format)?;
        p.fixed().fb_id = self.add_framebuffer(fb)?.into();
        Ok(())
    }

    /// ADD_FB2 of a single-plane format, checked as Linux's `framebuffer_check` does: no flags but
    /// DRM_MODE_FB_MODIFIERS, no modifier but linear (0) on any plane (a non-zero one without the
    /// flag is refused too), and with the flag, no handle, pitch or offset on the unused planes
    /// (without it, old clients' uncleared fields there are ignored).
    fn add_fb2(&mut self, p: &mut Payload<'_, FbCmd2>) -> Result<()> {
        let request = *p.fixed();
        let format = Format::from_fourcc(request.pixel_format.get()).ok_or(Error::new(EINVAL))?;
        let flags = request.flags.get();
        let modifiers = request.modifier.iter().any(|m| m.get() != 0);
        let unused_planes_set = [request.handles, request.pitches, request.offsets]
            .iter()
            .any(|per_plane| per_plane[1..].iter().any(|v| v.get() != 0));
        if flags & !FB_MODIFIERS != 0 || modifiers || (flags & FB_MODIFIERS != 0 && unused_planes_set) {
            return fail(EINVAL);
        }
        let buffer = self.own_dumb(request.handles[0].get())?;
        let geometry = [request.width, request.height, request.pitches[0]].map(U32::get);
        let fb = self.wrap(buffer, geometry, request.offsets[0].get() as usize, format)?;
        p.fixed().fb_id = self.add_framebuffer(fb)?.into();
        Ok(())
    }

    /// A framebuffer this file may destroy (its own; closed ones are gone for this purpose).
    fn destroyable(&self, id: u32) -> Result<()> {
        self.own_fb(id).map(drop)
    }

    fn rm_fb(&mut self, p: &mut Payload<'_, RmFb>) -> Result<()> {
        let id = p.fixed().fb_id.get();
        self.destroyable(id)?;
        self.kms.remove_framebuffer(self.state, id);
        Ok(())
    }

    fn close_fb(&mut self, p: &mut Payload<'_, CloseFb>) -> Result<()> {
        let id = p.fixed().fb_id.get();
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
    fn page_flip(&mut self, p: &mut Payload<'_, CrtcPageFlip>) -> Result<()> {
        let request = *p.fixed();
        let (crtc, id, flags) = (request.crtc_id.get(), request.fb_id.get(), request.flags.get());
        let (reserved, user_data) = (request.reserved.get(), request.user_data.get());
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
                let bytes = fb.buffer.memory.shared().skip(fb.offset).ok_or(DeviceError::OutOfBounds)?;
                let src =
                    crate::device::Source { bytes, pitch: fb.pitch as usize, x: plane.src_x, y: plane.src_y };
                self.kms.adapter.flip(src)
            } else {
                self.kms.present(fb, &plane, full(fb))
            };
            result?;
        }
        self.saved().plane = plane;
        self.reap_if_closed(saved.plane.fb.filter(|&old| old != id));
        if flags & PAGE_FLIP_EVENT != 0 {
            self.kms.queue_flip_event(self.state, self.file, user_data);
        }
        Ok(())
    }

    fn dirty_fb(&mut self, p: &mut Payload<'_, FbDirtyCmd>) -> Result<()> {
        if self.kms.adapter.is_unplugged() {
            return Ok(()); // accepted and dropped: fbcond and fbbootlogd panic on an error here
        }
        let id = p.fixed().fb_id.get();
        let fb = self.state.framebuffers.get(&id).filter(|fb| !fb.closed).ok_or(Error::new(ENOENT))?;
        let whole = full(fb);
        let clips = p.elements(FbDirtyCmd::CLIPS)?;
        let damage = if clips.is_empty() {
            Some(whole)
        } else {
            clips
                .iter()
                .filter_map(|clip| {
                    let (x1, y1) = (u32::from(clip.x1.get()), u32::from(clip.y1.get()));
                    let x2 = u32::from(clip.x2.get()).min(whole.width);
                    let y2 = u32::from(clip.y2.get()).min(whole.height);
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
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }

    fn create_dumb(&mut self, p: &mut Payload<'_, CreateDumb>) -> Result<()> {
        let request = *p.fixed();
        let (height, width) = (request.height.get(), request.width.get());
        let (max_w, max_h) = self.kms.adapter.max_size();
        if request.bpp.get() != 32
            || request.flags.get() != 0
            || !(1..=max_w).contains(&width)
            || !(1..=max_h).contains(&height)
        {
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
        let fixed = p.fixed();
        fixed.handle = handle.into();
        fixed.pitch = pitch.into();
        fixed.size = (len as u64).into();
        Ok(())
    }

    fn map_dumb(&mut self, p: &mut Payload<'_, MapDumb>) -> Result<()> {
        let handle = p.fixed().handle.get();
        self.own_dumb(handle)?;
        p.fixed().offset = (u64::from(handle) * DUMB_WINDOW).into();
        Ok(())
    }

    fn destroy_dumb(&mut self, p: &mut Payload<'_, DestroyDumb>) -> Result<()> {
        let file = self.state.files.get_mut(&self.file).ok_or(Error::new(EBADF))?;
        let (_, charged) = file.dumb.remove(&p.fixed().handle.get()).ok_or(Error::new(ENOENT))?;
        file.dumb_bytes -= charged;
        Ok(())
    }

    fn get_plane_res(&mut self, p: &mut Payload<'_, GetPlaneRes>) -> Result<()> {
        p.put(GetPlaneRes::PLANES, [U32::new(ids::PLANE)])
    }

    fn get_plane(&mut self, p: &mut Payload<'_, GetPlane>) -> Result<()> {
        if p.fixed().plane_id.get() != ids::PLANE {
            return fail(ENOENT);
        }
        let plane = self.saved().plane;
        let fixed = p.fixed();
        fixed.crtc_id = if plane.fb.is_some() { ids::CRTC } else { 0 }.into();
        fixed.fb_id = plane.fb.unwrap_or(0).into();
        fixed.possible_crtcs = 1.into();
        fixed.gamma_size = 0.into();
        p.put(GetPlane::FORMATS, [Format::XRGB8888, Format::ARGB8888].map(U32::new))
    }

    /// Places a framebuffer region on the screen. No scaling: the source size (16.16 fixed point,
    /// whole pixels only) must equal the destination size, which must lie within the mode.
    fn set_plane(&mut self, p: &mut Payload<'_, SetPlane>) -> Result<()> {
        let request = *p.fixed();
        if request.plane_id.get() != ids::PLANE || request.crtc_id.get() != ids::CRTC {
            return fail(ENOENT);
        }
        let old_fb = self.saved().plane.fb;
        let id = request.fb_id.get();
        if id == 0 {
            let has_mode = self.saved().mode.is_some();
            self.saved().plane.fb = None;
            if self.active() && has_mode {
                // The CRTC stays on; only the plane goes.
                self.kms.adapter.clear()?;
            }
            self.reap_if_closed(old_fb);
            return Ok(());
        }
        let (crtc_x, crtc_y) = (request.crtc_x.get(), request.crtc_y.get());
        let (crtc_w, crtc_h) = (request.crtc_w.get(), request.crtc_h.get());
        let [src_x, src_y, src_w, src_h] =
            [request.src_x, request.src_y, request.src_w, request.src_h].map(U32::get);
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
            self.kms.show_plane(Some(fb), &plane, &mode)?;
        }
        self.saved().plane = plane;
        if old_fb != Some(id) {
            self.reap_if_closed(old_fb);
        }
        Ok(())
    }

    fn obj_get_properties(&mut self, p: &mut Payload<'_, ObjGetProperties>) -> Result<()> {
        let id = p.fixed().obj_id.get();
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
        p.put(ObjGetProperties::PROPS, props.into_iter().map(U32::new))?;
        p.put(ObjGetProperties::PROP_VALUES, values.into_iter().map(U64::new))?;
        p.fixed().obj_type = kind.into();
        Ok(())
    }
}

/// A NUL-padded 32-byte name field (every name here is shorter).
fn name_field(name: &str) -> [u8; 32] {
    let mut field = [0u8; 32];
    for (out, byte) in field.iter_mut().zip(name.bytes()) {
        *out = byte;
    }
    field
}

#[cfg(test)]
mod tests {
    use super::ioctl;

    #[test]
    fn fixed_parts_match_the_reference_table() {
        let fixed = |nr| ioctl::find(nr).unwrap().fixed;
        assert_eq!(fixed(ioctl::VERSION), 40);
        assert_eq!(fixed(ioctl::SET_CRTC), 28 + 68);
        assert_eq!(fixed(ioctl::GET_CONNECTOR), 48);
        assert_eq!(fixed(ioctl::GET_PROPERTY), 48);
        assert_eq!(fixed(ioctl::ADD_FB2), 104);
        assert_eq!(fixed(ioctl::OBJ_GET_PROPERTIES), 12);
        assert_eq!(fixed(ioctl::CURSOR2), 36);
        assert!(ioctl::find(0x42).is_none());
    }

    #[test]
    fn the_table_is_sorted_by_number_once_each() {
        assert!(ioctl::TABLE.windows(2).all(|pair| pair[0].nr < pair[1].nr), "find() binary-searches it");
        assert!(ioctl::TABLE.iter().all(|row| ioctl::find(row.nr).is_some_and(|found| found.nr == row.nr)));
    }
}
