//! The `display.*` scheme: redox-scheme `SchemeSync` glue between open handles and device objects.
//!
//! Guarantees:
//! * Every display handle holds its device object (`Arc`), so handles outlive the device: after an
//!   unplug they keep answering as [`crate::kms`] describes, and new opens get ENODEV until a new
//!   device is bound; handles opened before stay on the old device object until closed.
//! * `on_close` always runs the file's whole teardown, and the last close of a device object frees
//!   it and runs its managed releases.
//! * Every request is answered with a value or an errno; none panics on client input.
//! * A display handle's `read` returns its flip-completion events (whole 32-byte
//!   `drm_event_vblank`s; EINVAL for a smaller buffer, EAGAIN when none is queued: it never
//!   blocks), before and after an unplug; `fevent` reports EVENT_READ while one is queued, and
//!   [`DisplayScheme::take_readable`] names the handles that got a new one, for the event loop to
//!   signal.
//! * An unplug names the device object it unplugs ([`DisplayScheme::unplug`]): it unbinds that one
//!   only if it is still the one new opens reach, never a device bound after it.
//! * `control` is the administrator's path (uid 0 only, EACCES for others): reading it gives a
//!   status line (it opens `POSITIONED`, so reads advance), writing `unplug` removes the device in
//!   an orderly way.
//! * Every request works through `&self`, and no lock of the scheme is held across one: the handle
//!   table, the bound device and the list of readable handles each sit under a mutex taken only to
//!   look up, insert or remove, never while a device object serves a call. So calls on other
//!   handles, and an unplug, run while one call is under way (the stand-in kernel on Linux hosts
//!   calls it from many threads; Redox's request loop calls it through `SchemeSync`, which forwards
//!   here). No two of these mutexes are ever held together.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

use redox_scheme::scheme::SchemeSync;
use redox_scheme::{CallerCtx, OpenResult};
use syscall::error::{Error, Result, EACCES, EBADF, EINVAL, ENODEV, ENOENT, EOPNOTSUPP};
use syscall::flag::{EventFlags, MapFlags, MunmapFlags};
use syscall::schemev2::NewFdFlags;
use syscall::Stat;

use crate::device::Unplug;
use crate::device_object::DeviceObject;
use crate::kms::{BufferMemory, FileId, MAX_VT};

/// `st_dev` of every handle: the DRM character-device major, 226.
pub const DRM_DEVICE: u64 = 226 << 8;

#[derive(Clone)]
enum Handle {
    Root,
    Display { device: Arc<DeviceObject>, file: FileId, vt: usize },
    Control,
}

/// The scheme: its handles and the device new opens bind to.
pub struct DisplayScheme {
    name: String,
    device: Mutex<Option<Arc<DeviceObject>>>,
    handles: Mutex<BTreeMap<usize, Handle>>,
    next_id: AtomicUsize,
    /// Handles that got a new event to read since [`DisplayScheme::take_readable`] last ran, each
    /// once (so never more entries than open handles).
    readable: Mutex<Vec<usize>>,
}

/// Locks `mutex`, taking the data of a poisoned one as it is: every update under these locks is a
/// single insert, remove or assignment, so a panic elsewhere cannot leave it half done.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl DisplayScheme {
    /// A scheme registered as `name` (e.g. `display.bochs`), with no device yet.
    pub fn new(name: impl Into<String>) -> DisplayScheme {
        DisplayScheme {
            name: name.into(),
            device: Mutex::new(None),
            handles: Mutex::new(BTreeMap::new()),
            next_id: AtomicUsize::new(1),
            readable: Mutex::new(Vec::new()),
        }
    }

    /// Names the scheme (what fpath reports) once its registered name is known.
    pub fn rename(&mut self, name: impl Into<String>) {
        self.name = name.into();
    }

    /// Binds a new device: later opens reach it; handles already open keep theirs.
    pub fn bind(&self, device: Arc<DeviceObject>) {
        *lock(&self.device) = Some(device);
    }

    /// The device new opens bind to, if any.
    pub fn device(&self) -> Option<Arc<DeviceObject>> {
        lock(&self.device).clone()
    }

    /// Unplugs `device` (orderly or surprise) and, if it is still the bound one, stops binding new
    /// opens to it; a device bound since then stays bound. Returns whether `device` was the bound
    /// one.
    pub fn unplug(&self, device: &Arc<DeviceObject>, kind: Unplug) -> bool {
        // Through the presence guard, with no lock of the scheme held: calls under way on other
        // threads finish their sections, new ones find the device gone.
        device.unplug(kind);
        let bound = {
            let mut bound = lock(&self.device);
            let is_it = bound.as_ref().is_some_and(|d| Arc::ptr_eq(d, device));
            if is_it {
                *bound = None;
            }
            is_it
        };
        log::info!(
            "device {}: {}; {} other references still hold it",
            device.instance,
            if bound { "unbound" } else { "unplugged (no longer the bound device)" },
            Arc::strong_count(device) - 1
        );
        bound
    }

    /// Unplugs the device new opens bind to, if any (the control path, SIGTERM, the scheme's
    /// unmount). Returns `false` if there was none.
    pub fn unplug_bound(&self, kind: Unplug) -> bool {
        let Some(device) = self.device() else { return false };
        self.unplug(&device, kind)
    }

    /// Unbinds the bound device if it has unplugged itself (the driver found it gone in the middle
    /// of a call, see [`crate::device::Adapter::set_mode`] on Bochs), so new opens get ENODEV and the
    /// platform sees no device. Called at every open; the event loop calls it on every wake.
    /// Returns whether it unbound one.
    pub fn unbind_if_unplugged(&self) -> bool {
        match self.device() {
            Some(device) if device.is_unplugged() => self.unplug(&device, Unplug::Surprise),
            _ => false,
        }
    }

    /// inputd switched to `vt`: the bound device shows that VT's state.
    pub fn activate(&self, vt: usize) {
        if let Some(device) = self.device() {
            device.kms.activate(vt);
        }
    }

    /// The handles that became readable (a flip-completion event was queued on them) since the last
    /// call, each once however many events it got: the Redox event loop posts EVENT_READ for each
    /// (`Response::post_fevent`).
    pub fn take_readable(&self) -> Vec<usize> {
        std::mem::take(&mut lock(&self.readable))
    }

    /// How many handles are open (display, control and root).
    pub fn open_handles(&self) -> usize {
        lock(&self.handles).len()
    }

    /// A copy of handle `id` (it holds its device object), EBADF if there is none.
    fn handle(&self, id: usize) -> Result<Handle> {
        lock(&self.handles).get(&id).cloned().ok_or(Error::new(EBADF))
    }

    /// The buffer memory behind a display handle's `MAP_DUMB` offset and the byte offset within it:
    /// what `mmap_prep` lends, and what a kernel keeps referenced while the mapping exists.
    pub fn lend(&self, id: usize, offset: u64, size: usize) -> Result<(Arc<dyn BufferMemory>, usize)> {
        match self.handle(id)? {
            Handle::Display { device, file, .. } => device.kms.lend(file, offset, size),
            _ => Err(Error::new(EINVAL)),
        }
    }

    fn insert(&self, handle: Handle) -> usize {
        let id = self.next_id.fetch_add(1, Relaxed);
        lock(&self.handles).insert(id, handle);
        id
    }

    /// The control path's status line. It names displayd's pid, which an administrator (or the
    /// Redox test) signals to stop it as shutdown does.
    fn status(&self) -> String {
        let pid = std::process::id();
        let device = self.device();
        let displays = lock(&self.handles).values().filter(|h| matches!(h, Handle::Display { .. })).count();
        match device {
            Some(device) => format!(
                "device {} present, {displays} display handles, active vt {}, pid {pid}\n",
                device.instance,
                device.kms.active_vt().map_or_else(|| "none".to_string(), |vt| vt.to_string())
            ),
            None => format!("no device, {displays} display handles, pid {pid}\n"),
        }
    }
}

/// A VT number as a display path names it: canonical decimal (digits only, no sign, no leading
/// zero except `0` itself) from 0 to [`MAX_VT`].
fn parse_vt(text: &str) -> Option<usize> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'))
        && text.len() <= 4;
    text.parse().ok().filter(|&vt| canonical && vt <= MAX_VT)
}

/// The scheme's requests, on `&self` (see the module's guarantees); [`SchemeSync`] forwards to
/// these.
impl DisplayScheme {
    /// The root handle, taken when the scheme is registered.
    pub fn scheme_root(&self) -> Result<usize> {
        Ok(self.insert(Handle::Root))
    }

    /// Opens `control` or `v2/<vt>` under the root handle.
    pub fn openat(
        &self,
        dirfd: usize,
        path: &str,
        _flags: usize,
        _fcntl: u32,
        ctx: &CallerCtx,
    ) -> Result<OpenResult> {
        if !matches!(self.handle(dirfd), Ok(Handle::Root)) {
            return Err(Error::new(EACCES));
        }
        self.unbind_if_unplugged();
        let handle = if path == "control" {
            if ctx.uid != 0 {
                return Err(Error::new(EACCES));
            }
            Handle::Control
        } else if let Some(vt) = path.strip_prefix("v2/") {
            let vt = parse_vt(vt).ok_or(Error::new(EINVAL))?;
            let device = self.device().ok_or(Error::new(ENODEV))?;
            let file = device.kms.open(vt);
            Handle::Display { device, file, vt }
        } else if path.starts_with('v') {
            return Err(Error::new(ENOENT));
        } else {
            return Err(Error::new(EINVAL));
        };
        // The control path is read like a file, so the kernel must track its offset: without
        // POSITIONED, Redox hands the scheme offset u64::MAX on every read.
        let flags =
            if matches!(handle, Handle::Control) { NewFdFlags::POSITIONED } else { NewFdFlags::empty() };
        Ok(OpenResult::ThisScheme { number: self.insert(handle), flags })
    }

    /// The handle's path.
    pub fn fpath(&self, id: usize, buf: &mut [u8], _ctx: &CallerCtx) -> Result<usize> {
        let path = match self.handle(id)? {
            Handle::Root => return Err(Error::new(EOPNOTSUPP)),
            Handle::Display { vt, .. } => format!("/scheme/{}/v2/{vt}", self.name),
            Handle::Control => format!("/scheme/{}/control", self.name),
        };
        let len = path.len().min(buf.len());
        buf[..len].copy_from_slice(&path.as_bytes()[..len]);
        Ok(len)
    }

    /// The handle's `st_dev`, the DRM major.
    pub fn fstat(&self, id: usize, stat: &mut Stat, _ctx: &CallerCtx) -> Result<()> {
        self.handle(id)?;
        stat.st_dev = DRM_DEVICE;
        Ok(())
    }

    /// An ioctl on a display handle: DRM number `metadata[0]`, payload edited in place.
    pub fn call(&self, id: usize, payload: &mut [u8], metadata: &[u64], _ctx: &CallerCtx) -> Result<usize> {
        match self.handle(id)? {
            Handle::Display { device, file, .. } => {
                // No number at all is an unknown one: EINVAL, or ENODEV once unplugged.
                let nr = metadata.first().copied().unwrap_or(u64::MAX);
                let answer = device.kms.call(file, nr, payload);
                if device.kms.take_new_event(file) {
                    // Each handle once: one readiness signal covers every event queued on it, and
                    // the list stays as short as the handle table where nobody drains it (the
                    // Linux hosts' stand-in kernel has no event queue to post to).
                    let mut readable = lock(&self.readable);
                    if !readable.contains(&id) {
                        readable.push(id);
                    }
                }
                answer
            }
            _ => Err(Error::new(EINVAL)),
        }
    }

    /// The address of the buffer memory a `MAP_DUMB` offset names.
    pub fn mmap_prep(
        &self,
        id: usize,
        offset: u64,
        size: usize,
        _flags: MapFlags,
        _ctx: &CallerCtx,
    ) -> Result<usize> {
        let (memory, within) = self.lend(id, offset, size)?;
        // The memory stays mapped in the driver until the buffer is destroyed; the kernel takes its
        // own reference on the frames, so the client's mapping outlives that.
        Ok(memory.address() + within)
    }

    /// A mapping went away (answered, nothing to do: the memory lives with its buffer).
    pub fn munmap(
        &self,
        id: usize,
        _offset: u64,
        _size: usize,
        _flags: MunmapFlags,
        _ctx: &CallerCtx,
    ) -> Result<()> {
        // Always answered: the kernel waits for the reply (and ignores it).
        self.handle(id).map(drop)
    }

    /// Flip-completion events of a display handle, or the control path's status line.
    pub fn read(
        &self,
        id: usize,
        buf: &mut [u8],
        offset: u64,
        _fcntl: u32,
        _ctx: &CallerCtx,
    ) -> Result<usize> {
        match self.handle(id)? {
            Handle::Display { device, file, .. } => device.kms.read_events(file, buf),
            Handle::Control => {
                let status = self.status();
                let start = usize::try_from(offset).unwrap_or(usize::MAX).min(status.len());
                let len = (status.len() - start).min(buf.len());
                buf[..len].copy_from_slice(&status.as_bytes()[start..start + len]);
                Ok(len)
            }
            _ => Err(Error::new(EBADF)),
        }
    }

    /// `unplug` written to the control path.
    pub fn write(&self, id: usize, buf: &[u8], _offset: u64, _fcntl: u32, _ctx: &CallerCtx) -> Result<usize> {
        match self.handle(id)? {
            Handle::Control => match std::str::from_utf8(buf).map(str::trim) {
                Ok("unplug") => {
                    if !self.unplug_bound(Unplug::Orderly) {
                        return Err(Error::new(ENODEV));
                    }
                    Ok(buf.len())
                }
                _ => Err(Error::new(EINVAL)),
            },
            _ => Err(Error::new(EBADF)),
        }
    }

    /// Whether a display handle has an event to read.
    pub fn fevent(&self, id: usize, flags: EventFlags, _ctx: &CallerCtx) -> Result<EventFlags> {
        match self.handle(id)? {
            Handle::Display { device, file, .. } if device.kms.has_events(file) => {
                Ok(flags & EventFlags::EVENT_READ)
            }
            _ => Ok(EventFlags::empty()),
        }
    }

    /// The last reference to handle `id` is gone: its whole teardown.
    pub fn on_close(&self, id: usize) {
        lock(&self.readable).retain(|&r| r != id);
        let handle = lock(&self.handles).remove(&id);
        if let Some(Handle::Display { device, file, .. }) = handle {
            device.kms.close(file);
            // `device` drops here; if this was the last handle, the device object goes with it.
        }
    }
}

/// Redox's request loop serves the scheme through `SchemeSync`: each request forwards to the `&self`
/// method of the same name.
impl SchemeSync for DisplayScheme {
    fn scheme_root(&mut self) -> Result<usize> {
        DisplayScheme::scheme_root(self)
    }
    fn openat(
        &mut self,
        dirfd: usize,
        path: &str,
        flags: usize,
        fcntl: u32,
        ctx: &CallerCtx,
    ) -> Result<OpenResult> {
        DisplayScheme::openat(self, dirfd, path, flags, fcntl, ctx)
    }
    fn fpath(&mut self, id: usize, buf: &mut [u8], ctx: &CallerCtx) -> Result<usize> {
        DisplayScheme::fpath(self, id, buf, ctx)
    }
    fn fstat(&mut self, id: usize, stat: &mut Stat, ctx: &CallerCtx) -> Result<()> {
        DisplayScheme::fstat(self, id, stat, ctx)
    }
    fn call(&mut self, id: usize, payload: &mut [u8], metadata: &[u64], ctx: &CallerCtx) -> Result<usize> {
        DisplayScheme::call(self, id, payload, metadata, ctx)
    }
    fn mmap_prep(
        &mut self,
        id: usize,
        offset: u64,
        size: usize,
        flags: MapFlags,
        ctx: &CallerCtx,
    ) -> Result<usize> {
        DisplayScheme::mmap_prep(self, id, offset, size, flags, ctx)
    }
    fn munmap(
        &mut self,
        id: usize,
        offset: u64,
        size: usize,
        flags: MunmapFlags,
        ctx: &CallerCtx,
    ) -> Result<()> {
        DisplayScheme::munmap(self, id, offset, size, flags, ctx)
    }
    fn read(&mut self, id: usize, buf: &mut [u8], offset: u64, fcntl: u32, ctx: &CallerCtx) -> Result<usize> {
        DisplayScheme::read(self, id, buf, offset, fcntl, ctx)
    }
    fn write(&mut self, id: usize, buf: &[u8], offset: u64, fcntl: u32, ctx: &CallerCtx) -> Result<usize> {
        DisplayScheme::write(self, id, buf, offset, fcntl, ctx)
    }
    fn fevent(&mut self, id: usize, flags: EventFlags, ctx: &CallerCtx) -> Result<EventFlags> {
        DisplayScheme::fevent(self, id, flags, ctx)
    }
    fn on_close(&mut self, id: usize) {
        DisplayScheme::on_close(self, id)
    }
}
