//! An in-process stand-in for the Redox kernel between clients and the display scheme.
//!
//! It calls the scheme's request methods (the `&self` methods `SchemeSync` forwards to on Redox)
//! with real redox-scheme `CallerCtx` values, the way the kernel's scheme dispatch would: `openat` on the root, `call` with the exact payload and
//! `metadata = [nr, 0, 0]`, `mmap_prep` for a mapping (keeping the lent memory referenced for as
//! long as the mapping lives, as the kernel keeps the frames), `munmap` when it goes, and `on_close`
//! only once the file and every mapping of it are gone.
//!
//! Calls are dispatched concurrently, as a kernel would from many client threads: no lock is held
//! across a call (the scheme serves `&self`), so one client's call, another's and an unplug from a
//! test or the health probe really overlap.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use redox_scheme::{CallerCtx, OpenResult, Request, RequestKind};
use syscall::error::{Error, Result, EINVAL};
use syscall::flag::{MapFlags, MunmapFlags};
use syscall::schemev2::NewFdFlags;

use displayd::kms::BufferMemory;
use displayd::scheme::DisplayScheme;

/// The kernel side: the scheme and its root handle.
#[derive(Clone)]
pub struct Kernel {
    scheme: Arc<DisplayScheme>,
    root: usize,
}

/// The context a request from user `uid` carries.
pub fn caller(uid: u32) -> CallerCtx {
    let RequestKind::Call(call) = Request::default().kind() else {
        unreachable!("an empty request is a call")
    };
    let mut ctx = call.caller();
    ctx.uid = uid;
    ctx.gid = uid;
    ctx.pid = 1;
    ctx
}

impl Kernel {
    /// Registers `scheme` (takes its root handle).
    pub fn new(scheme: DisplayScheme) -> Result<Kernel> {
        let root = scheme.scheme_root()?;
        Ok(Kernel { scheme: Arc::new(scheme), root })
    }

    /// The scheme, for the driver side (bind, unplug, activate).
    pub fn scheme(&self) -> &DisplayScheme {
        &self.scheme
    }

    /// Opens `path` under the scheme as user `uid`.
    pub fn open(&self, path: &str, uid: u32) -> Result<Fd> {
        let opened = self.scheme().openat(self.root, path, 0, 0, &caller(uid))?;
        match opened {
            OpenResult::ThisScheme { number, flags } => Ok(Fd(Arc::new(OpenFile {
                kernel: self.clone(),
                id: number,
                uid,
                offset: flags.contains(NewFdFlags::POSITIONED).then_some(AtomicU64::new(0)),
            }))),
            _ => Err(Error::new(EINVAL)),
        }
    }
}

/// An open file description; `on_close` reaches the scheme when its last reference (the fd or a
/// mapping) goes.
struct OpenFile {
    kernel: Kernel,
    id: usize,
    uid: u32,
    /// The file offset, kept only for handles the scheme opened `POSITIONED`. Redox's kernel passes
    /// every other handle's reads and writes offset `u64::MAX` (`sys_read`), and so does this one.
    offset: Option<AtomicU64>,
}

impl OpenFile {
    /// The offset a read or write of `len` bytes at the file position starts at.
    fn position(&self) -> u64 {
        self.offset.as_ref().map_or(u64::MAX, |offset| offset.load(Relaxed))
    }

    fn advance(&self, by: usize) {
        if let Some(offset) = &self.offset {
            offset.fetch_add(by as u64, Relaxed);
        }
    }
}

impl Drop for OpenFile {
    fn drop(&mut self) {
        self.kernel.scheme().on_close(self.id);
    }
}

/// A client's file descriptor. Dropping it closes it (once no mapping is left).
pub struct Fd(Arc<OpenFile>);

impl Fd {
    /// `ioctl`: a `call` with metadata `[nr, 0, 0]`, the payload edited in place.
    pub fn call(&self, nr: u64, payload: &mut [u8]) -> Result<usize> {
        self.0.kernel.scheme().call(self.0.id, payload, &[nr, 0, 0], &caller(self.0.uid))
    }

    /// `fpath`.
    pub fn path(&self) -> Result<String> {
        let mut buf = [0u8; 256];
        let len = self.0.kernel.scheme().fpath(self.0.id, &mut buf, &caller(self.0.uid))?;
        Ok(String::from_utf8_lossy(&buf[..len]).into_owned())
    }

    /// `fstat`'s `st_dev`.
    pub fn st_dev(&self) -> Result<u64> {
        let mut stat = syscall::Stat::default();
        self.0.kernel.scheme().fstat(self.0.id, &mut stat, &caller(self.0.uid))?;
        Ok(stat.st_dev)
    }

    /// `read` at the file position, which it advances.
    pub fn read(&self, buf: &mut [u8]) -> Result<usize> {
        let read = self.0.kernel.scheme().read(self.0.id, buf, self.0.position(), 0, &caller(self.0.uid))?;
        self.0.advance(read);
        Ok(read)
    }

    /// `pread`: a read at `offset`, leaving the file position alone.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        self.0.kernel.scheme().read(self.0.id, buf, offset, 0, &caller(self.0.uid))
    }

    /// `fevent`: subscribing for `flags`, the readiness the scheme reports right away.
    pub fn fevent(&self, flags: syscall::flag::EventFlags) -> Result<syscall::flag::EventFlags> {
        self.0.kernel.scheme().fevent(self.0.id, flags, &caller(self.0.uid))
    }

    /// The scheme's handle id behind this fd (what `post_fevent` names).
    pub fn id(&self) -> usize {
        self.0.id
    }

    /// `write` at the file position, which it advances.
    pub fn write(&self, buf: &[u8]) -> Result<usize> {
        let written =
            self.0.kernel.scheme().write(self.0.id, buf, self.0.position(), 0, &caller(self.0.uid))?;
        self.0.advance(written);
        Ok(written)
    }

    /// `mmap(MAP_SHARED)` of `len` bytes at `offset`: the scheme's `mmap_prep` picks the memory.
    pub fn mmap(&self, offset: u64, len: usize) -> Result<ClientMapping> {
        let scheme = self.0.kernel.scheme();
        let address = scheme.mmap_prep(self.0.id, offset, len, MapFlags::MAP_SHARED, &caller(self.0.uid))?;
        if address % displayd::kms::PAGE != 0 {
            return Err(Error::new(EINVAL)); // the kernel refuses an unaligned answer
        }
        let (memory, within) = scheme.lend(self.0.id, offset, len)?;
        debug_assert_eq!(memory.address() + within, address);
        Ok(ClientMapping { file: Arc::clone(&self.0), memory, within, offset, len })
    }
}

/// A client's mapping of a dumb buffer. It keeps the memory alive (as the kernel keeps the frames)
/// and the file open; dropping it sends `munmap`.
pub struct ClientMapping {
    file: Arc<OpenFile>,
    memory: Arc<dyn BufferMemory>,
    within: usize,
    offset: u64,
    len: usize,
}

impl ClientMapping {
    /// Writes pixels into the mapping (what a client's stores do: atomic words, since the driver
    /// reads them from another thread of this process); `false` if out of bounds.
    pub fn write(&self, at: usize, data: &[u8]) -> bool {
        at.checked_add(data.len()).is_some_and(|end| end <= self.len)
            && self.memory.shared().write(self.within + at, data)
    }

    /// Reads the mapping back.
    pub fn read(&self, at: usize, len: usize) -> Option<Vec<u8>> {
        at.checked_add(len).filter(|&end| end <= self.len)?;
        let mut out = vec![0; len];
        self.memory.shared().read(self.within + at, &mut out).then_some(out)
    }

    /// Bytes in the mapping.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never: mmap refuses zero lengths).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for ClientMapping {
    fn drop(&mut self) {
        let file = &self.file;
        let _ = file.kernel.scheme().munmap(
            file.id,
            self.offset,
            self.len,
            MunmapFlags::empty(),
            &caller(file.uid),
        );
    }
}
