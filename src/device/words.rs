//! Memory that threads of this process share: read and written only in atomic 32-bit words.
//!
//! Guarantees:
//! * Every access is a relaxed atomic load or store of a whole, aligned `u32` (a byte range that
//!   starts or ends inside a word is a read-modify-write of that word), so threads that share the
//!   memory this way never race in Rust's model, whatever they write meanwhile. A concurrent reader
//!   may still see a frame half old and half new (tearing), which is what a display shows anyway.
//! * Never a mixed-size access: the same memory is never reached as bytes or as wider words.
//!
//! Relaxed is enough: what orders pixels before the call that shows them is that call itself (a
//! mutex or a channel between the client and the driver), not the stores.
//!
//! Used where displayd and its writers share an address space: dumb buffers on Linux hosts (clients
//! are threads) and the emulated device's VRAM (its scanout is a thread). On Redox clients are other
//! processes and VRAM is device memory; those copies stay plain `memcpy`s ([`super::mmio::Shared`]).
//!
//! ```
//! use std::sync::atomic::AtomicU32;
//! use displayd::device::words;
//!
//! let memory: Vec<AtomicU32> = (0..4).map(|_| AtomicU32::new(0)).collect();
//! assert!(words::store(&memory, 3, &[1, 2, 3, 4, 5]));
//! let mut out = [0u8; 7];
//! assert!(words::load(&memory, 2, &mut out));
//! assert_eq!(out, [0, 1, 2, 3, 4, 5, 0]);
//! assert!(!words::load(&memory, 12, &mut out), "past the end");
//! ```

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

const WORD: usize = 4;

/// Whether `len` bytes at byte `offset` lie inside `words`.
pub fn fits(words: &[AtomicU32], offset: usize, len: usize) -> bool {
    offset.checked_add(len).is_some_and(|end| end <= words.len() * WORD)
}

/// Copies `dst.len()` bytes from byte `offset` of `words` out; `false` (copying nothing) if out of
/// bounds.
pub fn load(words: &[AtomicU32], offset: usize, dst: &mut [u8]) -> bool {
    if !fits(words, offset, dst.len()) {
        return false;
    }
    let end = offset + dst.len();
    let (head, rest) = dst.split_at_mut(head_len(offset, dst.len()));
    if !head.is_empty() {
        let bytes = words[offset / WORD].load(Relaxed).to_ne_bytes();
        let within = offset % WORD;
        head.copy_from_slice(&bytes[within..within + head.len()]);
    }
    let first = (offset + head.len()) / WORD;
    let mut chunks = rest.chunks_exact_mut(WORD);
    for (chunk, word) in (&mut chunks).zip(&words[first..]) {
        chunk.copy_from_slice(&word.load(Relaxed).to_ne_bytes());
    }
    let tail = chunks.into_remainder();
    if !tail.is_empty() {
        let bytes = words[(end - tail.len()) / WORD].load(Relaxed).to_ne_bytes();
        tail.copy_from_slice(&bytes[..tail.len()]);
    }
    true
}

/// Copies `src` into `words` from byte `offset` on; `false` (copying nothing) if out of bounds.
pub fn store(words: &[AtomicU32], offset: usize, src: &[u8]) -> bool {
    if !fits(words, offset, src.len()) {
        return false;
    }
    let (head, rest) = src.split_at(head_len(offset, src.len()));
    if !head.is_empty() {
        merge(&words[offset / WORD], offset % WORD, head);
    }
    let first = (offset + head.len()) / WORD;
    let chunks = rest.chunks_exact(WORD);
    let tail = chunks.remainder();
    for (chunk, word) in chunks.zip(&words[first..]) {
        word.store(u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]), Relaxed);
    }
    if !tail.is_empty() {
        merge(&words[(offset + src.len() - tail.len()) / WORD], 0, tail);
    }
    true
}

/// Copies `len` bytes from byte `src_offset` of `src` to byte `dst_offset` of `dst`, word by word
/// when both are word-aligned (a dumb buffer's rows into the emulated VRAM), else through a small
/// buffer; `false` (copying nothing) if out of bounds.
pub fn copy(src: &[AtomicU32], src_offset: usize, dst: &[AtomicU32], dst_offset: usize, len: usize) -> bool {
    if !fits(src, src_offset, len) || !fits(dst, dst_offset, len) {
        return false;
    }
    if (src_offset | dst_offset | len).is_multiple_of(WORD) {
        let (src, dst) = (&src[src_offset / WORD..][..len / WORD], &dst[dst_offset / WORD..][..len / WORD]);
        for (from, to) in src.iter().zip(dst) {
            to.store(from.load(Relaxed), Relaxed);
        }
        return true;
    }
    let mut chunk = [0u8; 4096];
    for done in (0..len).step_by(chunk.len()) {
        let part = &mut chunk[..(len - done).min(4096)];
        load(src, src_offset + done, part);
        store(dst, dst_offset + done, part);
    }
    true
}

/// Bytes before the first word boundary at or after `offset`, at most `len`.
fn head_len(offset: usize, len: usize) -> usize {
    ((WORD - offset % WORD) % WORD).min(len)
}

/// Replaces `bytes.len()` bytes of `word` from byte `within` on, keeping the others, atomically.
fn merge(word: &AtomicU32, within: usize, bytes: &[u8]) {
    let _ = word.fetch_update(Relaxed, Relaxed, |old| {
        let mut new = old.to_ne_bytes();
        new[within..within + bytes.len()].copy_from_slice(bytes);
        Some(u32::from_ne_bytes(new))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_offset_and_length_round_trips_and_leaves_the_rest_alone() {
        for offset in 0..9 {
            for len in 0..14 {
                let memory: Vec<AtomicU32> = (0..6).map(|_| AtomicU32::new(u32::MAX)).collect();
                let src: Vec<u8> = (1..=len as u8).collect();
                assert!(store(&memory, offset, &src), "store {offset}+{len}");
                let mut all = [0u8; 24];
                assert!(load(&memory, 0, &mut all));
                let mut expected = [0xffu8; 24];
                expected[offset..offset + len].copy_from_slice(&src);
                assert_eq!(all, expected, "offset {offset}, len {len}");
                let mut back = vec![0u8; len];
                assert!(load(&memory, offset, &mut back));
                assert_eq!(back, src);
            }
        }
    }

    #[test]
    fn copies_between_word_memories_at_any_alignment() {
        for (src_offset, dst_offset, len) in [(0, 4, 12), (1, 4, 9), (4, 3, 13), (2, 2, 0), (0, 0, 20)] {
            let src: Vec<AtomicU32> =
                (0..5u32).map(|i| AtomicU32::new(0x0403_0201 + i * 0x0404_0404)).collect();
            let dst: Vec<AtomicU32> = (0..6).map(|_| AtomicU32::new(0)).collect();
            assert!(copy(&src, src_offset, &dst, dst_offset, len));
            let (mut from, mut to) = (vec![0u8; len], vec![0u8; len]);
            assert!(load(&src, src_offset, &mut from) && load(&dst, dst_offset, &mut to));
            assert_eq!(from, to, "{src_offset} -> {dst_offset}, {len} bytes");
        }
        let one: Vec<AtomicU32> = vec![AtomicU32::new(0)];
        assert!(!copy(&one, 0, &one, 1, 4), "past the end");
    }

    #[test]
    fn out_of_bounds_copies_nothing() {
        let memory: Vec<AtomicU32> = (0..2).map(|_| AtomicU32::new(7)).collect();
        assert!(!store(&memory, 5, &[0; 4]));
        assert!(!store(&memory, usize::MAX, &[0]));
        assert!(!load(&memory, 8, &mut [0; 1]));
        assert!(load(&memory, 8, &mut []), "an empty copy at the end is in bounds");
        assert_eq!(memory[1].load(Relaxed), 7);
    }
}
