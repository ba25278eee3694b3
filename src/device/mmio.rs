//! Bounds-checked access to a device's BARs: 8/16/32-bit registers and VRAM.
//!
//! Guarantees:
//! * A register access at a constant offset is checked at compile time against the region's
//!   guaranteed size and the access width's alignment (`read16::<0x500>()`); one at a run-time
//!   offset is checked when it runs (`try_read16(offset)`). Nothing reads or writes outside the BAR.
//! * VRAM copies are row-wise `memcpy`s, bounds-checked once per copy, never per-pixel volatile
//!   writes (those measured at 0.44× memcpy), except where a thread of this process shares the
//!   memory (Linux hosts): there every access is an atomic word ([`super::words`]).
//! * VRAM has one writer, by type: writes take `&mut Vram`.
//! * Regions carry no lifetime of their own: displayd keeps them inside a
//!   [`Revocable`](crate::guard::Revocable), so they are reachable only inside a presence section.
//!
//! This file and the platform mapping code hold the driver's `unsafe` hardware access.

use std::any::Any;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;
use std::sync::Arc;

use super::words;

/// The width of one register access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    /// 8 bits.
    U8,
    /// 16 bits.
    U16,
    /// 32 bits.
    U32,
}

impl Width {
    /// Bytes in one access.
    pub const fn bytes(self) -> usize {
        match self {
            Width::U8 => 1,
            Width::U16 => 2,
            Width::U32 => 4,
        }
    }
}

/// An access outside the region, or not aligned to its width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadAccess {
    /// The offending offset.
    pub offset: usize,
    /// The width that was asked for.
    pub width: Width,
}

/// A register file implemented in software (the emulated device), standing where a mapping would.
pub trait RegisterFile: Send + Sync {
    /// Reads `width` bits at `offset`; the region has already checked bounds and alignment.
    fn read(&self, offset: usize, width: Width) -> u32;
    /// Writes `width` bits at `offset`; the region has already checked bounds and alignment.
    fn write(&self, offset: usize, width: Width, value: u32);
}

/// An address range mapped into displayd (a BAR, or memory standing for one), valid for as long as
/// `owner` (the mapping itself) lives.
struct MappedRange {
    base: NonNull<u8>,
    len: usize,
    _owner: Box<dyn Any + Send + Sync>,
}

// SAFETY: a `MappedRange` is a plain address range of device memory (or memory standing for it);
// the accesses through it are volatile, memcpy or atomic words, and their ordering is the driver's
// protocol, so it may be used from any thread.
unsafe impl Send for MappedRange {}
// SAFETY: as above: shared access only performs volatile, bulk or atomic-word accesses, never
// through a non-atomic Rust reference.
unsafe impl Sync for MappedRange {}

impl MappedRange {
    /// # Safety
    ///
    /// `base..base + len` must be mapped readable and writable, and stay so while `owner` lives.
    unsafe fn new(base: NonNull<u8>, len: usize, owner: Box<dyn Any + Send + Sync>) -> Self {
        MappedRange { base, len, _owner: owner }
    }

    fn check(&self, offset: usize, len: usize) -> bool {
        offset.checked_add(len).is_some_and(|end| end <= self.len)
    }
}

enum Backing {
    Mapped(MappedRange),
    Emulated(Arc<dyn RegisterFile>),
}

/// A register BAR of at least `SIZE` bytes.
///
/// # Examples
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use displayd::device::mmio::{Mmio, RegisterFile, Width};
///
/// struct Scratch(Mutex<[u8; 16]>);
/// impl RegisterFile for Scratch {
///     fn read(&self, offset: usize, _: Width) -> u32 { self.0.lock().unwrap()[offset].into() }
///     fn write(&self, offset: usize, _: Width, value: u32) { self.0.lock().unwrap()[offset] = value as u8 }
/// }
///
/// let regs: Mmio<16> = Mmio::emulated(Arc::new(Scratch(Mutex::new([0; 16]))), 16).unwrap();
/// regs.write8::<3>(0x2a);
/// assert_eq!(regs.read8::<3>(), 0x2a);
/// assert!(regs.try_read16(15).is_err(), "past the end");
/// ```
///
/// A constant offset outside the region, or misaligned for its width, does not compile:
///
/// ```compile_fail
/// # use std::sync::Arc;
/// # use displayd::device::mmio::{Mmio, RegisterFile, Width};
/// # struct Zero;
/// # impl RegisterFile for Zero {
/// #     fn read(&self, _: usize, _: Width) -> u32 { 0 }
/// #     fn write(&self, _: usize, _: Width, _: u32) {}
/// # }
/// let regs: Mmio<16> = Mmio::emulated(Arc::new(Zero), 16).unwrap();
/// regs.read16::<15>();
/// ```
///
/// # Invariants
///
/// * The backing covers at least `SIZE` bytes (`len >= SIZE`), so a constant offset checked against
///   `SIZE` at compile time is in bounds.
pub struct Mmio<const SIZE: usize> {
    backing: Backing,
    len: usize,
}

impl<const SIZE: usize> Mmio<SIZE> {
    /// A region over mapped device memory of `len` bytes; `None` if `len < SIZE` or `base` is not
    /// 4-byte aligned (the widest register access assumes it).
    ///
    /// # Safety
    ///
    /// `base..base + len` must be a mapping of device registers, readable and writable, that stays
    /// mapped while `owner` lives, and that no Rust reference points into.
    pub unsafe fn mapped(base: NonNull<u8>, len: usize, owner: Box<dyn Any + Send + Sync>) -> Option<Self> {
        if len < SIZE || !(base.as_ptr() as usize).is_multiple_of(4) {
            return None;
        }
        // SAFETY: forwarded from this function's contract.
        let mapping = unsafe { MappedRange::new(base, len, owner) };
        Some(Mmio { backing: Backing::Mapped(mapping), len })
    }

    /// A region served by a software register file of `len` bytes; `None` if `len < SIZE`.
    pub fn emulated(registers: Arc<dyn RegisterFile>, len: usize) -> Option<Self> {
        (len >= SIZE).then_some(Mmio { backing: Backing::Emulated(registers), len })
    }

    /// The region's real length (at least `SIZE`).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a region has at least `SIZE` bytes, and `SIZE` is never zero in practice.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads 8 bits at a constant offset.
    pub fn read8<const OFFSET: usize>(&self) -> u8 {
        const { assert!(OFFSET < SIZE, "register offset outside the region") };
        self.access_read(OFFSET, Width::U8) as u8
    }

    /// Reads 16 bits at a constant, 2-aligned offset.
    pub fn read16<const OFFSET: usize>(&self) -> u16 {
        const { assert!(OFFSET.is_multiple_of(2) && OFFSET + 2 <= SIZE, "misaligned or outside the region") };
        self.access_read(OFFSET, Width::U16) as u16
    }

    /// Reads 32 bits at a constant, 4-aligned offset.
    pub fn read32<const OFFSET: usize>(&self) -> u32 {
        const { assert!(OFFSET.is_multiple_of(4) && OFFSET + 4 <= SIZE, "misaligned or outside the region") };
        self.access_read(OFFSET, Width::U32)
    }

    /// Writes 8 bits at a constant offset.
    pub fn write8<const OFFSET: usize>(&self, value: u8) {
        const { assert!(OFFSET < SIZE, "register offset outside the region") };
        self.access_write(OFFSET, Width::U8, value.into());
    }

    /// Writes 16 bits at a constant, 2-aligned offset.
    pub fn write16<const OFFSET: usize>(&self, value: u16) {
        const { assert!(OFFSET.is_multiple_of(2) && OFFSET + 2 <= SIZE, "misaligned or outside the region") };
        self.access_write(OFFSET, Width::U16, value.into());
    }

    /// Writes 32 bits at a constant, 4-aligned offset.
    pub fn write32<const OFFSET: usize>(&self, value: u32) {
        const { assert!(OFFSET.is_multiple_of(4) && OFFSET + 4 <= SIZE, "misaligned or outside the region") };
        self.access_write(OFFSET, Width::U32, value);
    }

    /// Reads 8 bits at a run-time offset.
    pub fn try_read8(&self, offset: usize) -> Result<u8, BadAccess> {
        self.checked(offset, Width::U8).map(|()| self.access_read(offset, Width::U8) as u8)
    }

    /// Reads 16 bits at a run-time offset.
    pub fn try_read16(&self, offset: usize) -> Result<u16, BadAccess> {
        self.checked(offset, Width::U16).map(|()| self.access_read(offset, Width::U16) as u16)
    }

    /// Writes 16 bits at a run-time offset.
    pub fn try_write16(&self, offset: usize, value: u16) -> Result<(), BadAccess> {
        self.checked(offset, Width::U16).map(|()| self.access_write(offset, Width::U16, value.into()))
    }

    fn checked(&self, offset: usize, width: Width) -> Result<(), BadAccess> {
        let fits = offset.is_multiple_of(width.bytes())
            && offset.checked_add(width.bytes()).is_some_and(|end| end <= self.len);
        fits.then_some(()).ok_or(BadAccess { offset, width })
    }

    /// Callers have checked `offset` for `width` against `len`.
    fn access_read(&self, offset: usize, width: Width) -> u32 {
        match &self.backing {
            Backing::Emulated(registers) => registers.read(offset, width),
            // SAFETY: in bounds and aligned (checked by the caller against `len`, which the
            // mapping covers), and device memory is read with a volatile access of exactly `width`.
            Backing::Mapped(map) => unsafe {
                let at = map.base.as_ptr().add(offset);
                match width {
                    Width::U8 => at.read_volatile().into(),
                    Width::U16 => at.cast::<u16>().read_volatile().into(),
                    Width::U32 => at.cast::<u32>().read_volatile(),
                }
            },
        }
    }

    /// Callers have checked `offset` for `width` against `len`.
    fn access_write(&self, offset: usize, width: Width, value: u32) {
        match &self.backing {
            Backing::Emulated(registers) => registers.write(offset, width, value),
            // SAFETY: as in `access_read`.
            Backing::Mapped(map) => unsafe {
                let at = map.base.as_ptr().add(offset);
                match width {
                    Width::U8 => at.write_volatile(value as u8),
                    Width::U16 => at.cast::<u16>().write_volatile(value as u16),
                    Width::U32 => at.cast::<u32>().write_volatile(value),
                }
            },
        }
    }
}

/// Bytes the driver reads while others may write them (a client's dumb buffer): never exposed as a
/// Rust reference, only copied out, in the way that is sound for whoever the writers are.
///
/// * **Other processes** write it through their own mappings (Redox clients): plain `memcpy`s. Rust's
///   memory model does not reach into another process; what it sees is memory that changes under it
///   like device memory, and the copy is of bytes, never of values whose validity they could break.
/// * **Threads of this process** write it (clients on Linux hosts): then everyone, the driver
///   included, goes through atomic words ([`super::words`]), so no two accesses race.
/// * **Nobody** writes it while it is borrowed (a `&[u8]`): plain copies.
///
/// # Invariants
///
/// * `start + len` bytes of `memory` are readable for `'a`.
/// * Foreign memory overlaps no BAR mapping: [`Vram::copy_rows`] copies from it into VRAM with a
///   non-overlapping copy.
#[derive(Clone, Copy, Debug)]
pub struct Shared<'a> {
    memory: Memory<'a>,
    start: usize,
    len: usize,
}

/// Who else writes the memory behind a [`Shared`], which decides how it is copied.
#[derive(Clone, Copy, Debug)]
enum Memory<'a> {
    /// Nobody, while it is borrowed.
    Bytes(&'a [u8]),
    /// Other processes, through their own mappings.
    Foreign(NonNull<u8>, PhantomData<&'a [u8]>),
    /// Threads of this process, in atomic words.
    Words(&'a [AtomicU32]),
}

impl<'a> Shared<'a> {
    /// Memory at `base` that other processes write through their own mappings.
    ///
    /// # Safety
    ///
    /// `base..base + len` must stay mapped and readable for `'a`, must not overlap any BAR mapping
    /// (device memory): VRAM copies from it assume the two are apart, and no thread of this process
    /// may write it (they would race with the driver's plain copies; use [`Shared::words`]).
    pub unsafe fn foreign(base: NonNull<u8>, len: usize) -> Self {
        Shared { memory: Memory::Foreign(base, PhantomData), start: 0, len }
    }

    /// Memory that threads of this process share in atomic words.
    pub fn words(words: &'a [AtomicU32]) -> Self {
        Shared { memory: Memory::Words(words), start: 0, len: words.len() * 4 }
    }

    /// Bytes in it.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes from `offset` on; `None` past the end.
    pub fn skip(self, offset: usize) -> Option<Shared<'a>> {
        let len = self.len.checked_sub(offset)?;
        Some(Shared { start: self.start + offset, len, ..self })
    }

    /// Copies `dst.len()` bytes from `offset` out; `false` (copying nothing) if out of bounds.
    pub fn read(&self, offset: usize, dst: &mut [u8]) -> bool {
        if !offset.checked_add(dst.len()).is_some_and(|end| end <= self.len) {
            return false;
        }
        let at = self.start + offset;
        match self.memory {
            Memory::Bytes(bytes) => dst.copy_from_slice(&bytes[at..at + dst.len()]),
            // SAFETY: in bounds (checked above) and readable (invariant); `dst` is distinct memory,
            // and only other processes write this memory (`foreign`'s contract).
            Memory::Foreign(base, _) => unsafe {
                std::ptr::copy_nonoverlapping(base.as_ptr().add(at), dst.as_mut_ptr(), dst.len())
            },
            Memory::Words(memory) => return words::load(memory, at, dst),
        }
        true
    }

    /// Writes `src` at `offset`, as a client thread's stores do; `false` (writing nothing) if out of
    /// bounds or if this is not memory threads of this process write (bytes, another process's).
    pub fn write(&self, offset: usize, src: &[u8]) -> bool {
        match self.memory {
            Memory::Words(memory) if offset.checked_add(src.len()).is_some_and(|end| end <= self.len) => {
                words::store(memory, self.start + offset, src)
            }
            _ => false,
        }
    }

    /// The plain address of byte `at`, if plain copies out of it are sound.
    fn plain(&self, at: usize) -> Option<*const u8> {
        match self.memory {
            Memory::Bytes(bytes) => Some(bytes[self.start + at..].as_ptr()),
            // SAFETY: `start + at <= len` for every caller (bounds checked first), so the pointer
            // stays inside (or one past) the mapping.
            Memory::Foreign(base, _) => Some(unsafe { base.as_ptr().add(self.start + at) }),
            Memory::Words(_) => None,
        }
    }
}

impl<'a> From<&'a [u8]> for Shared<'a> {
    fn from(bytes: &'a [u8]) -> Self {
        Shared { memory: Memory::Bytes(bytes), start: 0, len: bytes.len() }
    }
}

/// Where a rectangle of rows lands in VRAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowCopy {
    /// Byte offset of the first destination row.
    pub dst_offset: usize,
    /// Bytes from one destination row to the next.
    pub dst_pitch: usize,
    /// Byte offset of the first source row in the source buffer.
    pub src_offset: usize,
    /// Bytes from one source row to the next.
    pub src_pitch: usize,
    /// Bytes copied from each row.
    pub row_bytes: usize,
    /// Rows copied.
    pub rows: usize,
}

/// A VRAM BAR: mapped memory the scanout reads.
///
/// Writing takes `&mut self`: whoever owns the `Vram` (the Bochs driver keeps it under the lock of
/// its scanout state) is its only writer, by type.
///
/// # Invariants
///
/// * The mapping covers `len` bytes for as long as the `Vram` lives.
/// * Scanned out by a thread (`Reader::Thread`), the mapping is 4-aligned, `len` is a multiple
///   of 4, and every access to it in this process is in atomic words.
pub struct Vram {
    mapping: MappedRange,
    reader: Reader,
}

/// Who reads VRAM besides the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reader {
    /// The adapter: device memory, outside Rust's memory model; plain copies.
    Device,
    /// A thread of this process (the emulated device): atomic words.
    Thread,
}

impl Vram {
    /// VRAM over `base..base + len`, scanned out by the device.
    ///
    /// # Safety
    ///
    /// As [`Mmio::mapped`]: mapped readable and writable while `owner` lives, no Rust reference into
    /// it, and no thread of this process reads or writes it but through this `Vram`.
    pub unsafe fn mapped(base: NonNull<u8>, len: usize, owner: Box<dyn Any + Send + Sync>) -> Self {
        // SAFETY: forwarded from this function's contract.
        Vram { mapping: unsafe { MappedRange::new(base, len, owner) }, reader: Reader::Device }
    }

    /// VRAM over `base..base + len` that a thread of this process scans out, reading it in atomic
    /// words ([`super::words`]); `None` unless `base` is 4-aligned and `len` a multiple of 4.
    ///
    /// # Safety
    ///
    /// Mapped readable and writable while `owner` lives, and every other access to it in this
    /// process is an atomic word access.
    pub unsafe fn scanned_by_thread(
        base: NonNull<u8>,
        len: usize,
        owner: Box<dyn Any + Send + Sync>,
    ) -> Option<Self> {
        if !(base.as_ptr() as usize).is_multiple_of(4) || !len.is_multiple_of(4) {
            return None;
        }
        // SAFETY: forwarded from this function's contract.
        Some(Vram { mapping: unsafe { MappedRange::new(base, len, owner) }, reader: Reader::Thread })
    }

    /// Bytes of VRAM.
    pub fn len(&self) -> usize {
        self.mapping.len
    }

    /// Whether there is no VRAM at all.
    pub fn is_empty(&self) -> bool {
        self.mapping.len == 0
    }

    /// Copies a rectangle of rows from `src` into VRAM. Returns `false` (copying nothing) if any row
    /// would fall outside `src` or VRAM.
    pub fn copy_rows(&mut self, src: Shared<'_>, copy: RowCopy) -> bool {
        if !rows_fit(copy.src_offset, copy.src_pitch, copy.row_bytes, copy.rows, src.len())
            || !rows_fit(copy.dst_offset, copy.dst_pitch, copy.row_bytes, copy.rows, self.len())
        {
            return false;
        }
        for row in 0..copy.rows {
            let from = copy.src_offset + row * copy.src_pitch;
            let to = copy.dst_offset + row * copy.dst_pitch;
            match (src.plain(from), self.reader) {
                // SAFETY: `rows_fit` proved both rows in bounds; plain copies out of `src` are
                // sound (`plain`), and it overlaps no BAR mapping (`Shared`'s invariant), so not
                // this one, which no reference points into and only the device reads.
                (Some(from), Reader::Device) => unsafe {
                    std::ptr::copy_nonoverlapping(from, self.mapping.base.as_ptr().add(to), copy.row_bytes);
                },
                (_, Reader::Thread) => match src.memory {
                    Memory::Bytes(bytes) => {
                        let at = src.start + from;
                        words::store(self.words(), to, &bytes[at..at + copy.row_bytes]);
                    }
                    Memory::Words(memory) => {
                        words::copy(memory, src.start + from, self.words(), to, copy.row_bytes);
                    }
                    Memory::Foreign(..) => self.copy_row_in_chunks(src, from, to, copy.row_bytes),
                },
                (None, Reader::Device) => self.copy_words_row(src, from, to, copy.row_bytes),
            }
        }
        true
    }

    /// One row of memory shared in words copied into device memory (in-process clients on the Linux
    /// guest): word by word when both sides are word-aligned, as dumb-buffer rows and scan-out rows
    /// are, else through a small buffer. Callers have checked both ranges.
    fn copy_words_row(&mut self, src: Shared<'_>, from: usize, to: usize, len: usize) {
        let at = src.start + from;
        // SAFETY: `to <= len` of the mapping (checked by the caller): the pointer stays inside it.
        let dst = unsafe { self.mapping.base.as_ptr().add(to) };
        match src.memory {
            Memory::Words(memory) if (at | len | dst as usize).is_multiple_of(4) => {
                let dst = dst.cast::<u32>();
                for (i, word) in memory[at / 4..][..len / 4].iter().enumerate() {
                    // SAFETY: `to + len` is inside the mapping (checked by the caller), `dst` is
                    // word-aligned (checked above), and only the device reads it besides this `Vram`.
                    unsafe { dst.add(i).write(word.load(std::sync::atomic::Ordering::Relaxed)) };
                }
            }
            _ => self.copy_row_in_chunks(src, from, to, len),
        }
    }

    /// One row copied through a small buffer, when no direct copy suits both sides. Callers have
    /// checked both ranges.
    fn copy_row_in_chunks(&mut self, src: Shared<'_>, from: usize, to: usize, len: usize) {
        let mut chunk = [0u8; 4096];
        for done in (0..len).step_by(chunk.len()) {
            let part = &mut chunk[..(len - done).min(4096)];
            src.read(from + done, part);
            self.write(to + done, part);
        }
    }

    /// Copies `dst.len()` bytes of VRAM starting at `offset` out; `false` if out of bounds.
    pub fn read_into(&self, offset: usize, dst: &mut [u8]) -> bool {
        if !self.mapping.check(offset, dst.len()) {
            return false;
        }
        match self.reader {
            // SAFETY: in bounds (checked above); `dst` is ordinary memory distinct from the mapping.
            Reader::Device => unsafe {
                std::ptr::copy_nonoverlapping(
                    self.mapping.base.as_ptr().add(offset),
                    dst.as_mut_ptr(),
                    dst.len(),
                )
            },
            Reader::Thread => return words::load(self.words(), offset, dst),
        }
        true
    }

    /// Fills `len` bytes at `offset` with `byte`; `false` if out of bounds.
    pub fn fill(&mut self, offset: usize, len: usize, byte: u8) -> bool {
        if !self.mapping.check(offset, len) {
            return false;
        }
        match self.reader {
            // SAFETY: in bounds (checked above).
            Reader::Device => unsafe {
                std::ptr::write_bytes(self.mapping.base.as_ptr().add(offset), byte, len)
            },
            Reader::Thread => {
                let chunk = [byte; 4096];
                for done in (0..len).step_by(chunk.len()) {
                    self.write(offset + done, &chunk[..(len - done).min(4096)]);
                }
            }
        }
        true
    }

    /// Writes `src` at `offset`; callers have checked the range.
    fn write(&mut self, offset: usize, src: &[u8]) {
        match self.reader {
            // SAFETY: in bounds (the caller checked); `src` is ordinary memory distinct from it.
            Reader::Device => unsafe {
                std::ptr::copy_nonoverlapping(src.as_ptr(), self.mapping.base.as_ptr().add(offset), src.len())
            },
            Reader::Thread => {
                words::store(self.words(), offset, src);
            }
        }
    }

    /// The mapping as atomic words; only for [`Reader::Thread`].
    fn words(&self) -> &[AtomicU32] {
        debug_assert_eq!(self.reader, Reader::Thread);
        // SAFETY: with `Reader::Thread` the mapping is 4-aligned, a whole number of words, valid
        // while `self` lives, and only ever accessed in atomic words in this process (invariants),
        // so a shared slice of `AtomicU32` over it aliases nothing non-atomic.
        unsafe {
            std::slice::from_raw_parts(self.mapping.base.as_ptr().cast::<AtomicU32>(), self.mapping.len / 4)
        }
    }
}

/// Whether `rows` rows of `row_bytes`, `pitch` apart from `offset`, fit in `len` bytes.
fn rows_fit(offset: usize, pitch: usize, row_bytes: usize, rows: usize, len: usize) -> bool {
    if rows == 0 || row_bytes == 0 {
        return true;
    }
    if row_bytes > pitch && rows > 1 {
        return false; // rows would overlap each other
    }
    (rows - 1)
        .checked_mul(pitch)
        .and_then(|last| last.checked_add(offset))
        .and_then(|last| last.checked_add(row_bytes))
        .is_some_and(|end| end <= len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vram_over(buffer: &'static mut [u8]) -> Vram {
        let len = buffer.len();
        let base = NonNull::new(buffer.as_mut_ptr()).unwrap();
        // SAFETY: (test) a leaked buffer stays valid forever and is only reached through the Vram.
        unsafe { Vram::mapped(base, len, Box::new(())) }
    }

    #[test]
    fn row_copies_land_at_pitch_and_refuse_overruns() {
        let mut vram = vram_over(Box::leak(vec![0u8; 64].into_boxed_slice()));
        let src: Vec<u8> = (1..=16).collect();
        let copy =
            RowCopy { dst_offset: 2, dst_pitch: 16, src_offset: 0, src_pitch: 4, row_bytes: 4, rows: 4 };
        assert!(vram.copy_rows(src[..].into(), copy));
        let mut out = [0u8; 64];
        assert!(vram.read_into(0, &mut out));
        assert_eq!(&out[2..6], &[1, 2, 3, 4]);
        assert_eq!(&out[50..54], &[13, 14, 15, 16]);
        assert_eq!(out[6], 0);
        assert!(!vram.copy_rows(src[..].into(), RowCopy { rows: 5, ..copy }), "source overrun");
        assert!(!vram.copy_rows(src[..].into(), RowCopy { dst_offset: 14, ..copy }), "VRAM overrun");
        assert!(!vram.copy_rows(src[..].into(), RowCopy { dst_pitch: usize::MAX / 2, ..copy }), "overflow");
        assert!(!vram.read_into(60, &mut [0; 8]));
    }

    #[test]
    fn rows_shared_in_words_land_in_device_vram_aligned_or_not() {
        let words: Vec<AtomicU32> = (0..8u32)
            .map(|i| {
                AtomicU32::new(u32::from_le_bytes([
                    4 * i as u8 + 1,
                    4 * i as u8 + 2,
                    4 * i as u8 + 3,
                    4 * i as u8 + 4,
                ]))
            })
            .collect();
        let src = Shared::words(&words);
        for (src_offset, dst_offset) in [(0, 4), (3, 4), (4, 9)] {
            let mut vram = vram_over(Box::leak(vec![0u8; 64].into_boxed_slice()));
            let copy = RowCopy { dst_offset, dst_pitch: 16, src_offset, src_pitch: 8, row_bytes: 8, rows: 2 };
            assert!(vram.copy_rows(src, copy));
            let mut out = [0u8; 64];
            assert!(vram.read_into(0, &mut out));
            for row in 0..2 {
                let expected: Vec<u8> = (0..8).map(|i| (src_offset + row * 8 + i + 1) as u8).collect();
                let at = dst_offset + row * 16;
                assert_eq!(&out[at..at + 8], &expected[..], "{src_offset} -> {dst_offset}, row {row}");
            }
        }
    }

    #[test]
    fn runtime_offsets_are_checked_for_bounds_and_alignment() {
        struct Echo;
        impl RegisterFile for Echo {
            fn read(&self, offset: usize, _: Width) -> u32 {
                offset as u32
            }
            fn write(&self, _: usize, _: Width, _: u32) {}
        }
        let regs: Mmio<8> = Mmio::emulated(Arc::new(Echo), 8).unwrap();
        assert_eq!(regs.try_read16(6), Ok(6));
        assert_eq!(regs.try_read16(7), Err(BadAccess { offset: 7, width: Width::U16 }));
        assert_eq!(regs.try_read16(8), Err(BadAccess { offset: 8, width: Width::U16 }));
        assert_eq!(regs.try_read8(usize::MAX).unwrap_err().offset, usize::MAX);
        assert!(Mmio::<16>::emulated(Arc::new(Echo), 8).is_none(), "shorter than the type promises");
    }
}
