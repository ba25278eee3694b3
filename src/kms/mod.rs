//! The display object model: one connector, encoder, CRTC and primary plane (Bochs has one output),
//! framebuffers, per-file dumb buffers and per-VT state, plus the DRM ioctls' table, one row per
//! ioctl ([`ioctl`]), kept beside the handlers the rows name; the payloads they serve are
//! [`crate::uapi`]'s wire structs. Pure: no I/O and no `unsafe`;
//! hardware is reached through [`Adapter`], buffer memory through [`Allocator`].
//!
//! Guarantees:
//! * Every client input gets an errno, never a panic, and cannot reach another file's dumb buffers
//!   or destroy another file's framebuffers.
//! * After the device is unplugged, calls that need it fail with ENODEV (before their number or
//!   payload is looked at), except what keeps today's consumers alive: GET_CONNECTOR answers from
//!   the last known state with status "disconnected", DIRTYFB is accepted and dropped, and
//!   releasing calls (DESTROY_DUMB, RM_FB, CLOSE_FB) still free memory. Closing a file always runs
//!   its whole teardown, without touching the device.
//! * Flip-completion events queued before an unplug are still read; reading never blocks.
//! * Per-client state is bounded (see the `MAX_*` limits), and a VT's state lives only while a file
//!   is bound to it or it is on screen.
#![forbid(unsafe_code)]

mod ioctls;
mod props;

pub use ioctls::ioctl;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use zerocopy::IntoBytes;

use crate::device::Adapter;
use crate::uapi::wire::EventVblank;

/// Object ids, numbered as the reference driver numbers them for one display: properties 1–17,
/// then plane, CRTC, encoder, connector. Framebuffers and blobs are numbered after them.
pub mod ids {
    /// The primary plane.
    pub const PLANE: u32 = 18;
    /// The CRTC.
    pub const CRTC: u32 = 19;
    /// The encoder.
    pub const ENCODER: u32 = 20;
    /// The connector.
    pub const CONNECTOR: u32 = 21;
    /// The first id handed to framebuffers and blobs.
    pub const FIRST_DYNAMIC: u32 = 22;
}

/// `MAP_DUMB` offsets: one 256 MiB window per handle, as the reference lays them out.
pub const DUMB_WINDOW: u64 = 0x1000_0000;
/// Page size for buffer memory.
pub const PAGE: usize = 4096;
/// At most this many bytes of dumb buffers per open file, so one client cannot exhaust memory.
pub const MAX_DUMB_BYTES_PER_FILE: usize = 1 << 30;
/// At most this many dumb buffers per open file.
pub const MAX_DUMB_BUFFERS_PER_FILE: usize = 256;
/// At most this many framebuffers per open file (closed ones still shown included).
pub const MAX_FRAMEBUFFERS_PER_FILE: usize = 256;
/// The largest VT number a display path may name (`v2/0` to `v2/4096`). Redox VTs are small numbers
/// handed out by inputd; anything past this is refused, so no client can make per-VT state for
/// absurd numbers.
pub const MAX_VT: usize = 4096;

/// Memory that backs a dumb buffer: page-aligned, page-rounded, its own mapping, never reused.
pub trait BufferMemory: Send + Sync {
    /// Address of the first byte in the driver's address space (what `mmap_prep` returns).
    fn address(&self) -> usize;
    /// Length in bytes (a whole number of pages).
    fn len(&self) -> usize;
    /// Whether the buffer is empty (never, for a real buffer).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The bytes, for scanout copies. Clients write them concurrently through their mappings, so
    /// they are only ever copied out (a copy may see a frame half drawn, as a real scanout would).
    fn shared(&self) -> crate::device::mmio::Shared<'_>;
}

/// Makes buffer memory (platform code: anonymous mappings on Linux, `fmap` on Redox).
pub trait Allocator: Send + Sync {
    /// A zeroed buffer of `len` bytes (a multiple of [`PAGE`]); ENOMEM if none can be had.
    fn allocate(&self, len: usize) -> syscall::error::Result<Arc<dyn BufferMemory>>;
}

/// Identifies an open file of the display scheme within one device object.
pub type FileId = u64;

/// A dumb buffer: plain memory a client draws into and a framebuffer wraps.
struct DumbBuffer {
    memory: Arc<dyn BufferMemory>,
}

/// Pixel formats displayd scans out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Xrgb8888,
    Argb8888,
}

impl Format {
    const XRGB8888: u32 = 0x3432_5258;
    const ARGB8888: u32 = 0x3432_5241;

    fn from_fourcc(fourcc: u32) -> Option<Format> {
        match fourcc {
            Format::XRGB8888 => Some(Format::Xrgb8888),
            Format::ARGB8888 => Some(Format::Argb8888),
            _ => None,
        }
    }

    fn fourcc(self) -> u32 {
        match self {
            Format::Xrgb8888 => Format::XRGB8888,
            Format::Argb8888 => Format::ARGB8888,
        }
    }

    fn depth(self) -> u32 {
        match self {
            Format::Xrgb8888 => 24,
            Format::Argb8888 => 32,
        }
    }
}

struct Framebuffer {
    owner: FileId,
    buffer: Arc<DumbBuffer>,
    width: u32,
    height: u32,
    pitch: u32,
    /// Byte offset of the first pixel in the buffer.
    offset: usize,
    format: Format,
    /// CLOSE_FB was called: it lives only while a plane still shows it.
    closed: bool,
}

/// What the primary plane shows on one VT: a framebuffer region at a screen position.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Plane {
    fb: Option<u32>,
    src_x: u32,
    src_y: u32,
    crtc_x: u32,
    crtc_y: u32,
    width: u32,
    height: u32,
}

/// One VT's display configuration, replayed to the hardware when the VT becomes active.
#[derive(Clone, Debug, Default)]
struct Vt {
    /// The CRTC's mode (visible size), if it is on.
    mode: Option<crate::device::edid::Mode>,
    plane: Plane,
    /// Whether the connector is driven by the CRTC.
    connector_attached: bool,
    dpms: u32,
}

struct File {
    vt: usize,
    /// Handle → buffer, and the bytes it was charged against the file's allowance (0 for handles
    /// that re-open a framebuffer's buffer).
    dumb: BTreeMap<u32, (Arc<DumbBuffer>, usize)>,
    next_handle: u32,
    dumb_bytes: usize,
    unique_set: bool,
    /// Flip-completion events not yet read (at most one per CRTC: a second flip is EBUSY).
    events: VecDeque<EventVblank>,
    /// An event was queued since the scheme last asked (so it can signal readiness once per event).
    new_event: bool,
}

struct State {
    next_id: u32,
    edid_blob: Option<u32>,
    framebuffers: BTreeMap<u32, Framebuffer>,
    vts: BTreeMap<usize, Vt>,
    active_vt: Option<usize>,
    files: BTreeMap<FileId, File>,
    next_file: FileId,
    /// Page flips completed on the CRTC (the `sequence` of flip events).
    flips: u32,
}

/// The KMS state of one device object.
///
/// # Invariants
///
/// * Every framebuffer a VT plane names exists in `framebuffers`.
/// * Every dumb handle of a file is below that file's `next_handle`; handles are never reused.
pub struct Kms {
    adapter: Arc<dyn Adapter>,
    /// What GET_UNIQUE reports, e.g. `pci:0000:00:02.0`.
    unique: String,
    allocator: Arc<dyn Allocator>,
    state: Mutex<State>,
    /// When the device was bound: flip events' timestamps count from here.
    bound_at: Instant,
}

impl Kms {
    /// KMS state for a freshly probed device; `unique` names it for GET_UNIQUE (`pci:<address>`).
    pub fn new(adapter: Arc<dyn Adapter>, allocator: Arc<dyn Allocator>, unique: String) -> Kms {
        let mut next_id = ids::FIRST_DYNAMIC;
        let edid_blob = adapter.edid().map(|_| {
            next_id += 1;
            next_id - 1
        });
        Kms {
            adapter,
            unique,
            allocator,
            state: Mutex::new(State {
                next_id,
                edid_blob,
                framebuffers: BTreeMap::new(),
                vts: BTreeMap::new(),
                active_vt: None,
                files: BTreeMap::new(),
                next_file: 1,
                flips: 0,
            }),
            bound_at: Instant::now(),
        }
    }

    /// The adapter behind this state.
    pub fn adapter(&self) -> &Arc<dyn Adapter> {
        &self.adapter
    }

    /// Opens a file bound to `vt` (at most [`MAX_VT`]; the scheme refuses larger numbers).
    pub fn open(&self, vt: usize) -> FileId {
        let mut state = self.lock();
        let id = state.next_file;
        state.next_file += 1;
        state.vts.entry(vt).or_default();
        state.files.insert(
            id,
            File {
                vt,
                dumb: BTreeMap::new(),
                next_handle: 1,
                dumb_bytes: 0,
                unique_set: false,
                events: VecDeque::new(),
                new_event: false,
            },
        );
        id
    }

    /// The whole per-file teardown: its dumb buffers and framebuffers go, and a VT that showed one
    /// of them shows nothing — except framebuffers the file released with CLOSE_FB, which stay on
    /// screen until no plane shows them (so a client can hand the screen over without a flicker).
    /// Never touches the device once it is unplugged.
    pub fn close(&self, file: FileId) {
        let mut state = self.lock();
        let Some(File { vt, .. }) = state.files.remove(&file) else {
            return;
        };
        let owned: Vec<(u32, bool)> = state
            .framebuffers
            .iter()
            .filter(|(_, fb)| fb.owner == file)
            .map(|(&id, fb)| (id, fb.closed))
            .collect();
        for (fb, closed) in owned {
            let shown = state.vts.values().any(|vt| vt.plane.fb == Some(fb));
            if !(closed && shown) {
                self.remove_framebuffer(&mut state, fb);
            }
        }
        Self::forget_unused_vt(&mut state, vt);
    }

    /// Makes `vt` the one on screen and replays its saved state to the hardware.
    pub fn activate(&self, vt: usize) {
        let mut state = self.lock();
        let previous = state.active_vt.replace(vt);
        state.vts.entry(vt).or_default();
        if let Some(previous) = previous.filter(|&p| p != vt) {
            Self::forget_unused_vt(&mut state, previous);
        }
        if let Err(error) = self.replay(&state, vt) {
            log::warn!("kms: replaying VT {vt} failed: {error}");
        }
    }

    /// Frees a VT's saved state once no file is bound to it and it is not on screen, with the
    /// closed framebuffers only it still showed: per-VT state lives exactly as long as something
    /// refers to it, so opening and closing many VTs leaves nothing behind.
    fn forget_unused_vt(state: &mut State, vt: usize) {
        if state.active_vt == Some(vt) || state.files.values().any(|f| f.vt == vt) {
            return;
        }
        let Some(forgotten) = state.vts.remove(&vt) else { return };
        if let Some(fb) = forgotten.plane.fb {
            let closed = state.framebuffers.get(&fb).is_some_and(|fb| fb.closed);
            if closed && !state.vts.values().any(|v| v.plane.fb == Some(fb)) {
                state.framebuffers.remove(&fb);
            }
        }
    }

    /// How many VTs have saved state (for leak checks): those a file is bound to, plus the active one.
    pub fn vt_states(&self) -> usize {
        self.lock().vts.len()
    }

    /// The VT on screen, if any.
    pub fn active_vt(&self) -> Option<usize> {
        self.lock().active_vt
    }

    /// Reads whole flip-completion events (32 bytes each, oldest first) into `buf`: EINVAL if
    /// `buf` cannot hold one, EAGAIN if none is queued. Never blocks, and keeps working after an
    /// unplug, so events queued before it are still delivered.
    pub fn read_events(&self, file: FileId, buf: &mut [u8]) -> syscall::error::Result<usize> {
        use syscall::error::{Error, EAGAIN, EBADF, EINVAL};
        if buf.len() < size_of::<EventVblank>() {
            return Err(Error::new(EINVAL));
        }
        let mut state = self.lock();
        let file = state.files.get_mut(&file).ok_or(Error::new(EBADF))?;
        if file.events.is_empty() {
            return Err(Error::new(EAGAIN));
        }
        let mut read = 0;
        for out in buf.chunks_exact_mut(size_of::<EventVblank>()) {
            let Some(event) = file.events.pop_front() else { break };
            out.copy_from_slice(event.as_bytes());
            read += out.len();
        }
        Ok(read)
    }

    /// Whether `file` has an event to read (its readiness for EVENT_READ).
    pub fn has_events(&self, file: FileId) -> bool {
        self.lock().files.get(&file).is_some_and(|f| !f.events.is_empty())
    }

    /// Whether an event was queued on `file` since the last call (for signalling readiness once
    /// per new event).
    pub fn take_new_event(&self, file: FileId) -> bool {
        self.lock().files.get_mut(&file).is_some_and(|f| std::mem::take(&mut f.new_event))
    }

    /// Queues a flip-completion event for `user_data` on `file`: a `drm_event_vblank` with the
    /// CRTC's flip count as its sequence and the time since the device was bound.
    fn queue_flip_event(&self, state: &mut State, file: FileId, user_data: u64) {
        state.flips = state.flips.wrapping_add(1);
        let since_bind = self.bound_at.elapsed();
        let event = EventVblank {
            r#type: EventVblank::FLIP_COMPLETE.into(),
            length: (size_of::<EventVblank>() as u32).into(),
            user_data: user_data.into(),
            tv_sec: u32::try_from(since_bind.as_secs()).unwrap_or(u32::MAX).into(),
            tv_usec: since_bind.subsec_micros().into(),
            sequence: state.flips.into(),
            crtc_id: ids::CRTC.into(),
        };
        if let Some(file) = state.files.get_mut(&file) {
            file.events.push_back(event);
            file.new_event = true;
        }
    }

    /// How many framebuffers and dumb buffers are alive (for leak checks).
    pub fn live_objects(&self) -> (usize, usize) {
        let state = self.lock();
        (state.framebuffers.len(), state.files.values().map(|f| f.dumb.len()).sum())
    }

    /// The memory behind a file's `MAP_DUMB` offset, and the byte offset within it, for `mmap_prep`:
    /// only the file's own buffers, only inside them.
    pub fn lend(
        &self,
        file: FileId,
        offset: u64,
        len: usize,
    ) -> syscall::error::Result<(Arc<dyn BufferMemory>, usize)> {
        use syscall::error::{Error, EINVAL, ENODEV, ENOENT};
        if self.adapter.is_unplugged() {
            return Err(Error::new(ENODEV));
        }
        let state = self.lock();
        let handle = u32::try_from(offset / DUMB_WINDOW).map_err(|_| Error::new(ENOENT))?;
        let within = (offset % DUMB_WINDOW) as usize;
        let (buffer, _) =
            state.files.get(&file).and_then(|f| f.dumb.get(&handle)).ok_or(Error::new(ENOENT))?;
        let fits = within.checked_add(len).is_some_and(|end| end <= buffer.memory.len());
        if !within.is_multiple_of(PAGE) || len == 0 || !fits {
            return Err(Error::new(EINVAL));
        }
        Ok((Arc::clone(&buffer.memory), within))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A fresh object id. Ids are never reused, and u32::MAX (-1, "keep the current one" in
    /// SET_CRTC) is never handed out: after ~4 billion objects the device refuses with ENOSPC.
    fn allocate_id(state: &mut State) -> syscall::error::Result<u32> {
        let id = state.next_id;
        if id == u32::MAX {
            return Err(syscall::error::Error::new(syscall::error::ENOSPC));
        }
        state.next_id += 1;
        Ok(id)
    }

    /// Removes a framebuffer and takes it off every VT's plane; the active VT then shows nothing.
    fn remove_framebuffer(&self, state: &mut State, fb: u32) {
        state.framebuffers.remove(&fb);
        let active = state.active_vt;
        let mut active_lost_plane = false;
        for (&vt, saved) in state.vts.iter_mut() {
            if saved.plane.fb == Some(fb) {
                saved.plane.fb = None;
                active_lost_plane |= Some(vt) == active;
            }
        }
        if active_lost_plane && !self.adapter.is_unplugged() {
            // The CRTC stays on with its mode; only the plane went away.
            let _ = self.adapter.clear();
        }
    }

    /// Puts a VT's saved configuration on the screen.
    fn replay(&self, state: &State, vt: usize) -> Result<(), crate::device::DeviceError> {
        let saved = &state.vts[&vt];
        let Some(mode) = saved.mode else { return self.adapter.disable() };
        self.adapter.set_mode(mode.hdisplay, mode.vdisplay)?;
        let fb = saved.plane.fb.and_then(|fb| state.framebuffers.get(&fb));
        self.show_plane(fb, &saved.plane, &mode)?;
        self.adapter.blank(saved.dpms != 0)
    }

    /// Shows `plane` (of `fb`, if any) on a screen in `mode`; whatever the plane does not cover is
    /// black, so no earlier content (another VT's, say) stays visible around it.
    fn show_plane(
        &self,
        fb: Option<&Framebuffer>,
        plane: &Plane,
        mode: &crate::device::edid::Mode,
    ) -> Result<(), crate::device::DeviceError> {
        let covers_screen = fb.is_some()
            && (plane.crtc_x, plane.crtc_y) == (0, 0)
            && (plane.width, plane.height) == (mode.hdisplay.into(), mode.vdisplay.into());
        if !covers_screen {
            self.adapter.clear()?;
        }
        match fb {
            Some(fb) => self.present(fb, plane, full(fb)),
            None => Ok(()),
        }
    }

    /// Copies the part of `damage` (framebuffer coordinates) that the plane shows to the screen.
    fn present(
        &self,
        fb: &Framebuffer,
        plane: &Plane,
        damage: crate::device::Rect,
    ) -> Result<(), crate::device::DeviceError> {
        use crate::device::{Rect, Source};
        let left = damage.x.max(plane.src_x);
        let top = damage.y.max(plane.src_y);
        // Saturating: damage and plane come from clients (checked where they were set, but a
        // slip here must clip, not wrap or panic).
        let right = damage.x.saturating_add(damage.width).min(plane.src_x.saturating_add(plane.width));
        let bottom = damage.y.saturating_add(damage.height).min(plane.src_y.saturating_add(plane.height));
        if left >= right || top >= bottom {
            return Ok(());
        }
        let bytes =
            fb.buffer.memory.shared().skip(fb.offset).ok_or(crate::device::DeviceError::OutOfBounds)?;
        let src = Source { bytes, pitch: fb.pitch as usize, x: left, y: top };
        let dst = Rect {
            x: plane.crtc_x.saturating_add(left - plane.src_x),
            y: plane.crtc_y.saturating_add(top - plane.src_y),
            width: right - left,
            height: bottom - top,
        };
        self.adapter.blit(src, dst)
    }
}

/// The whole of a framebuffer, as a damage rectangle.
fn full(fb: &Framebuffer) -> crate::device::Rect {
    crate::device::Rect { x: 0, y: 0, width: fb.width, height: fb.height }
}

#[cfg(test)]
mod tests {
    use super::ioctl;
    use super::*;
    use crate::device::edid::Mode;
    use crate::device::mmio::Shared;
    use crate::device::{DeviceError, Health, Rect, Scanout, Source, Unplug};

    /// An adapter of which these tests need only the answers a framebuffer's life asks for: no
    /// EDID, present, and a size limit.
    struct Headless;

    impl Adapter for Headless {
        fn name(&self) -> &'static str {
            "headless"
        }
        fn description(&self) -> &'static str {
            "no screen"
        }
        fn modes(&self) -> &[Mode] {
            &[]
        }
        fn edid(&self) -> Option<&[u8]> {
            None
        }
        fn max_size(&self) -> (u32, u32) {
            (1024, 1024)
        }
        fn set_mode(&self, width: u16, height: u16) -> Result<Scanout, DeviceError> {
            Ok(Scanout { width, height, pitch: u32::from(width) * 4, offset: 0 })
        }
        fn disable(&self) -> Result<(), DeviceError> {
            Ok(())
        }
        fn clear(&self) -> Result<(), DeviceError> {
            Ok(())
        }
        fn blank(&self, _: bool) -> Result<(), DeviceError> {
            Ok(())
        }
        fn blit(&self, _: Source<'_>, _: Rect) -> Result<(), DeviceError> {
            Ok(())
        }
        fn flip(&self, _: Source<'_>) -> Result<(), DeviceError> {
            Ok(())
        }
        fn is_unplugged(&self) -> bool {
            false
        }
        fn health(&self) -> Health {
            Health::Present
        }
        fn unplug(&self, _: Unplug) -> bool {
            true
        }
    }

    /// Dumb buffers in plain heap memory (nothing maps them here).
    struct Heap;

    impl BufferMemory for Vec<u8> {
        fn address(&self) -> usize {
            self.as_ptr() as usize
        }
        fn len(&self) -> usize {
            Vec::len(self)
        }
        fn shared(&self) -> Shared<'_> {
            Shared::from(&self[..])
        }
    }

    impl Allocator for Heap {
        fn allocate(&self, len: usize) -> syscall::error::Result<Arc<dyn BufferMemory>> {
            Ok(Arc::new(vec![0u8; len]))
        }
    }

    /// ADD_FB of a 64×64 XRGB8888 framebuffer on dumb buffer `handle`.
    fn add_fb(kms: &Kms, file: FileId, handle: u32) -> syscall::error::Result<u32> {
        let mut p = [0u8; 28];
        for (at, value) in [(4, 64), (8, 64), (12, 256), (16, 32), (20, 24), (24, handle)] {
            p[at..at + 4].copy_from_slice(&u32::to_le_bytes(value));
        }
        kms.call(file, ioctl::ADD_FB, &mut p)?;
        Ok(u32::from_le_bytes(p[..4].try_into().unwrap()))
    }

    #[test]
    fn object_ids_run_out_with_enospc_and_never_wrap_onto_live_objects() {
        let kms = Kms::new(Arc::new(Headless), Arc::new(Heap), "pci:0000:00:02.0".into());
        let file = kms.open(3);
        let mut dumb = [0u8; 32];
        for (at, value) in [(0, 64), (4, 64), (8, 32)] {
            dumb[at..at + 4].copy_from_slice(&u32::to_le_bytes(value));
        }
        kms.call(file, ioctl::CREATE_DUMB, &mut dumb).unwrap();
        let handle = u32::from_le_bytes(dumb[16..20].try_into().unwrap());
        let first = add_fb(&kms, file, handle).unwrap();
        // Stands for ~4 billion ADD_FB/RM_FB pairs.
        kms.lock().next_id = u32::MAX - 1;
        assert_eq!(add_fb(&kms, file, handle).unwrap(), u32::MAX - 1);
        assert_eq!(add_fb(&kms, file, handle).unwrap_err().errno, syscall::error::ENOSPC);
        assert_eq!(kms.live_objects().0, 2, "no framebuffer was replaced");
        kms.call(file, ioctl::RM_FB, &mut first.to_le_bytes()).unwrap();
    }
}
