//! Memory mappings on Linux hosts: anonymous memory (the emulated device's VRAM, dumb buffers) and
//! shared file mappings (a real device's sysfs `resource` files).
//!
//! Guarantees: a mapping is page-aligned, a whole number of pages, never reused for anything else,
//! and unmapped exactly once when dropped; anonymous ones are private and zero-filled.
//! [`HostMapping::revoke`] makes every later access fault (how the emulated device "removes" its VRAM).

use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;

/// A mapping made by this process.
///
/// # Invariants
///
/// * `base..base + len` is mapped from creation until drop (readable and writable until revoked).
pub struct HostMapping {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain process memory reached only through raw pointers or atomic words
// (never a plain Rust reference), and revocation is an `mprotect`, which is thread-safe.
unsafe impl Send for HostMapping {}
// SAFETY: as above.
unsafe impl Sync for HostMapping {}

impl HostMapping {
    /// Maps `len` bytes (rounded up to pages) of zeroed memory; `prefault` touches every page now.
    pub fn anonymous(len: usize, prefault: bool) -> std::io::Result<Self> {
        let len = len.div_ceil(4096).max(1) * 4096;
        let populate = if prefault { libc::MAP_POPULATE } else { 0 };
        Self::map(len, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | populate, -1)
    }

    /// Maps the whole of the file at `path`, shared (writes reach the file or the device behind it).
    pub fn of_file(path: &std::path::Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new().read(true).write(true).open(path)?;
        let len =
            usize::try_from(file.metadata()?.len()).map_err(|_| std::io::Error::other("file too large"))?;
        if len == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: empty", path.display()),
            ));
        }
        // The mapping stays valid after the descriptor closes (when `file` drops).
        Self::map(len, libc::MAP_SHARED, std::os::fd::AsRawFd::as_raw_fd(&file))
    }

    fn map(len: usize, flags: libc::c_int, fd: libc::c_int) -> std::io::Result<Self> {
        // SAFETY: a fresh mapping at an address the kernel picks aliases nothing of ours; the result
        // is checked below.
        let base = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, flags, fd, 0)
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let base = NonNull::new(base.cast()).ok_or_else(|| std::io::Error::other("mmap returned null"))?;
        Ok(HostMapping { base, len })
    }

    /// The first byte.
    pub fn base(&self) -> NonNull<u8> {
        self.base
    }

    /// Length in bytes (whole pages).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true: a mapping has at least one page.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Makes every later access fault.
    ///
    /// # Safety
    ///
    /// Nothing may read or write the mapping afterwards, through [`HostMapping::words`],
    /// [`HostMapping::shared`] or a pointer from [`HostMapping::base`]: such
    /// an access faults, which is the point only where a fault is how a bug is reported (the emulated
    /// device's tripwire).
    pub unsafe fn revoke(&self) {
        // SAFETY: the range is this mapping's own; PROT_NONE only changes its permissions.
        let rc = unsafe { libc::mprotect(self.base.as_ptr().cast(), self.len, libc::PROT_NONE) };
        assert_eq!(rc, 0, "mprotect(PROT_NONE) failed: {}", std::io::Error::last_os_error());
    }

    /// The mapping as atomic words, for memory that threads of this process share: every access to
    /// it in this process must then go through these words ([`crate::device::words`]), never through
    /// plain copies of [`HostMapping::base`]. Not for a revoked mapping.
    pub fn words(&self) -> &[AtomicU32] {
        // SAFETY: the mapping is page-aligned and a whole number of pages, so it holds `len / 4`
        // aligned words; it stays mapped while `self` is borrowed; `AtomicU32` has no invalid bit
        // patterns and allows shared mutation, and this method's contract keeps non-atomic accesses
        // away from memory handed out this way.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr().cast::<AtomicU32>(), self.len / 4) }
    }

    /// The whole mapping as a client's dumb buffer, which its threads write concurrently in words
    /// (through [`crate::device::mmio::Shared::write`]). Not for a revoked mapping.
    pub fn shared(&self) -> crate::device::mmio::Shared<'_> {
        crate::device::mmio::Shared::words(self.words())
    }
}

impl Drop for HostMapping {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping, once; nothing refers to it after drop.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}
