//! The redox-ioctl DRM payload format: a fixed part laid out as the C struct without its counted-
//! array pointers, then each array's bytes inline, in declaration order, at unaligned offsets.
//!
//! Guarantees: [`Payload::parse`] accepts a payload only if its length is exactly the fixed part
//! plus every array its count fields announce (EINVAL otherwise, with checked arithmetic), and every
//! accessor is bounds-checked against that layout, so no client payload can make the codec panic or
//! touch bytes outside it. Arrays follow the DRM count-probe convention: [`Payload::put_u32s`] and
//! friends write what fits and report the real total in the count field.

use syscall::error::{Error, Result, EINVAL};

/// How wide an array's count field is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    /// A `u32` at this offset of the fixed part.
    U32(usize),
    /// A `u64` at this offset of the fixed part.
    U64(usize),
}

/// One counted array that follows the fixed part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Array {
    /// Where its element count lives.
    pub count: Count,
    /// Bytes per element.
    pub element: usize,
}

/// The wire layout of one ioctl's payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Bytes in the fixed part.
    pub fixed: usize,
    /// The arrays after it, in wire order.
    pub arrays: &'static [Array],
}

/// The DRM ioctl numbers (`nr`, metadata\[0\]) the display scheme serves, with their layouts.
pub mod ioctl {
    use super::{Array, Count, Layout};

    const fn plain(fixed: usize) -> Layout {
        Layout { fixed, arrays: &[] }
    }

    /// DRM_IOCTL_VERSION.
    pub const VERSION: u64 = 0x00;
    /// DRM_IOCTL_GET_UNIQUE.
    pub const GET_UNIQUE: u64 = 0x01;
    /// DRM_IOCTL_SET_VERSION.
    pub const SET_VERSION: u64 = 0x07;
    /// DRM_IOCTL_GET_CAP.
    pub const GET_CAP: u64 = 0x0c;
    /// DRM_IOCTL_SET_CLIENT_CAP.
    pub const SET_CLIENT_CAP: u64 = 0x0d;
    /// DRM_IOCTL_MODE_GETRESOURCES.
    pub const MODE_CARD_RES: u64 = 0xa0;
    /// DRM_IOCTL_MODE_GETCRTC.
    pub const GET_CRTC: u64 = 0xa1;
    /// DRM_IOCTL_MODE_SETCRTC.
    pub const SET_CRTC: u64 = 0xa2;
    /// DRM_IOCTL_MODE_CURSOR.
    pub const CURSOR: u64 = 0xa3;
    /// DRM_IOCTL_MODE_GETENCODER.
    pub const GET_ENCODER: u64 = 0xa6;
    /// DRM_IOCTL_MODE_GETCONNECTOR.
    pub const GET_CONNECTOR: u64 = 0xa7;
    /// DRM_IOCTL_MODE_GETPROPERTY.
    pub const GET_PROPERTY: u64 = 0xaa;
    /// DRM_IOCTL_MODE_SETPROPERTY.
    pub const SET_PROPERTY: u64 = 0xab;
    /// DRM_IOCTL_MODE_GETPROPBLOB.
    pub const GET_PROP_BLOB: u64 = 0xac;
    /// DRM_IOCTL_MODE_GETFB.
    pub const GET_FB: u64 = 0xad;
    /// DRM_IOCTL_MODE_ADDFB.
    pub const ADD_FB: u64 = 0xae;
    /// DRM_IOCTL_MODE_RMFB.
    pub const RM_FB: u64 = 0xaf;
    /// DRM_IOCTL_MODE_PAGE_FLIP.
    pub const PAGE_FLIP: u64 = 0xb0;
    /// DRM_IOCTL_MODE_DIRTYFB.
    pub const DIRTYFB: u64 = 0xb1;
    /// DRM_IOCTL_MODE_CREATE_DUMB.
    pub const CREATE_DUMB: u64 = 0xb2;
    /// DRM_IOCTL_MODE_MAP_DUMB.
    pub const MAP_DUMB: u64 = 0xb3;
    /// DRM_IOCTL_MODE_DESTROY_DUMB.
    pub const DESTROY_DUMB: u64 = 0xb4;
    /// DRM_IOCTL_MODE_GETPLANERESOURCES.
    pub const GET_PLANE_RES: u64 = 0xb5;
    /// DRM_IOCTL_MODE_GETPLANE.
    pub const GET_PLANE: u64 = 0xb6;
    /// DRM_IOCTL_MODE_SETPLANE.
    pub const SET_PLANE: u64 = 0xb7;
    /// DRM_IOCTL_MODE_ADDFB2.
    pub const ADD_FB2: u64 = 0xb8;
    /// DRM_IOCTL_MODE_OBJ_GETPROPERTIES.
    pub const OBJ_GET_PROPERTIES: u64 = 0xb9;
    /// DRM_IOCTL_MODE_CURSOR2.
    pub const CURSOR2: u64 = 0xbb;
    /// DRM_IOCTL_MODE_GETFB2.
    pub const GET_FB2: u64 = 0xce;
    /// DRM_IOCTL_MODE_CLOSEFB.
    pub const CLOSE_FB: u64 = 0xd0;

    const fn u32s(at: usize) -> Array {
        Array { count: Count::U32(at), element: 4 }
    }

    const fn bytes_u64(at: usize) -> Array {
        Array { count: Count::U64(at), element: 1 }
    }

    /// The payload layout of ioctl `nr`, or `None` for one the scheme does not know.
    pub fn layout(nr: u64) -> Option<Layout> {
        Some(match nr {
            VERSION => {
                const A: [Array; 3] = [bytes_u64(16), bytes_u64(24), bytes_u64(32)];
                Layout { fixed: 40, arrays: &A }
            }
            GET_UNIQUE => {
                const A: [Array; 1] = [bytes_u64(0)];
                Layout { fixed: 8, arrays: &A }
            }
            SET_VERSION | GET_CAP | SET_CLIENT_CAP | MAP_DUMB | SET_PROPERTY => plain(16),
            MODE_CARD_RES => {
                const A: [Array; 4] = [u32s(0), u32s(4), u32s(8), u32s(12)];
                Layout { fixed: 32, arrays: &A }
            }
            GET_CRTC | SET_CRTC => {
                const A: [Array; 1] = [u32s(0)];
                Layout { fixed: 96, arrays: &A }
            }
            CURSOR | GET_FB | ADD_FB => plain(28),
            GET_ENCODER => plain(20),
            GET_CONNECTOR => {
                const A: [Array; 4] = [
                    u32s(8),
                    Array { count: Count::U32(0), element: super::MODE_INFO_BYTES },
                    u32s(4),
                    Array { count: Count::U32(4), element: 8 },
                ];
                Layout { fixed: 48, arrays: &A }
            }
            GET_PROPERTY => {
                const A: [Array; 2] = [
                    Array { count: Count::U32(40), element: 8 },
                    Array { count: Count::U32(44), element: 40 },
                ];
                Layout { fixed: 48, arrays: &A }
            }
            GET_PROP_BLOB => {
                const A: [Array; 1] = [Array { count: Count::U32(4), element: 1 }];
                Layout { fixed: 8, arrays: &A }
            }
            RM_FB | DESTROY_DUMB => plain(4),
            PAGE_FLIP => plain(24),
            DIRTYFB => {
                const A: [Array; 1] = [Array { count: Count::U32(12), element: 8 }];
                Layout { fixed: 16, arrays: &A }
            }
            CREATE_DUMB => plain(32),
            GET_PLANE_RES => {
                const A: [Array; 1] = [u32s(0)];
                Layout { fixed: 4, arrays: &A }
            }
            GET_PLANE => {
                const A: [Array; 1] = [u32s(20)];
                Layout { fixed: 24, arrays: &A }
            }
            SET_PLANE => plain(48),
            ADD_FB2 | GET_FB2 => plain(104),
            OBJ_GET_PROPERTIES => {
                const A: [Array; 2] = [u32s(0), Array { count: Count::U32(0), element: 8 }];
                Layout { fixed: 12, arrays: &A }
            }
            CURSOR2 => plain(36),
            CLOSE_FB => plain(8),
            _ => return None,
        })
    }
}

/// Bytes in one `drm_mode_modeinfo`.
pub const MODE_INFO_BYTES: usize = 68;

const MAX_ARRAYS: usize = 4;

/// A payload checked against its layout, edited in place.
///
/// # Examples
///
/// ```
/// use displayd::kms::codec::{ioctl, Payload};
///
/// // GET_PLANE_RES probing with count 0: no array bytes follow.
/// let mut bytes = [0u8; 4];
/// let mut payload = Payload::parse(&mut bytes, ioctl::layout(ioctl::GET_PLANE_RES).unwrap()).unwrap();
/// payload.put_u32s(0, &[18]);
/// assert_eq!(payload.u32(0), 1, "the real count, for the second call");
///
/// // A payload whose length disagrees with its counts is refused.
/// let mut short = [1u8, 0, 0, 0];
/// assert!(Payload::parse(&mut short, ioctl::layout(ioctl::GET_PLANE_RES).unwrap()).is_err());
/// ```
///
/// # Invariants
///
/// * `bytes.len() == layout.fixed + Σ counts[i] × element_i`, and array `i` occupies
///   `starts[i] .. starts[i] + counts[i] × element_i`.
pub struct Payload<'a> {
    bytes: &'a mut [u8],
    layout: Layout,
    starts: [usize; MAX_ARRAYS],
    counts: [usize; MAX_ARRAYS],
}

impl<'a> Payload<'a> {
    /// Checks `bytes` against `layout`: EINVAL if it is shorter than the fixed part, if an array
    /// would run past the end, or if bytes are left over.
    pub fn parse(bytes: &'a mut [u8], layout: Layout) -> Result<Self> {
        if bytes.len() < layout.fixed || layout.arrays.len() > MAX_ARRAYS {
            return Err(Error::new(EINVAL));
        }
        let mut payload = Payload { bytes, layout, starts: [0; MAX_ARRAYS], counts: [0; MAX_ARRAYS] };
        let mut end = layout.fixed;
        for (i, array) in layout.arrays.iter().enumerate() {
            let count = match array.count {
                Count::U32(at) => payload.u32(at) as usize,
                Count::U64(at) => usize::try_from(payload.u64(at)).map_err(|_| Error::new(EINVAL))?,
            };
            let len = count.checked_mul(array.element).ok_or(Error::new(EINVAL))?;
            payload.starts[i] = end;
            payload.counts[i] = count;
            end = end.checked_add(len).ok_or(Error::new(EINVAL))?;
        }
        if end != payload.bytes.len() {
            return Err(Error::new(EINVAL));
        }
        Ok(payload)
    }

    fn field<const N: usize>(&self, at: usize) -> [u8; N] {
        // Offsets come from the ioctl layouts, inside the fixed part that `parse` checked.
        self.bytes[at..at + N].try_into().expect("field inside the fixed part")
    }

    /// The `u32` at `at` in the fixed part.
    pub fn u32(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.field(at))
    }

    /// The `i32` at `at` in the fixed part.
    pub fn i32(&self, at: usize) -> i32 {
        i32::from_le_bytes(self.field(at))
    }

    /// The `u64` at `at` in the fixed part.
    pub fn u64(&self, at: usize) -> u64 {
        u64::from_le_bytes(self.field(at))
    }

    /// Writes a `u32` at `at` in the fixed part.
    pub fn set_u32(&mut self, at: usize, value: u32) {
        self.bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }

    /// Writes an `i32` at `at` in the fixed part.
    pub fn set_i32(&mut self, at: usize, value: i32) {
        self.bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }

    /// Writes a `u64` at `at` in the fixed part.
    pub fn set_u64(&mut self, at: usize, value: u64) {
        self.bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
    }

    /// Raw bytes of the fixed part (names, embedded mode records).
    pub fn fixed_bytes(&mut self, at: usize, len: usize) -> &mut [u8] {
        &mut self.bytes[at..at + len]
    }

    /// How many elements array `index` carries (as the client sent it).
    pub fn count(&self, index: usize) -> usize {
        self.counts[index]
    }

    /// Element `element` of array `index`, as raw bytes.
    pub fn element(&mut self, index: usize, element: usize) -> &mut [u8] {
        let size = self.layout.arrays[index].element;
        assert!(element < self.counts[index], "element {element} of array {index} out of range");
        let at = self.starts[index] + element * size;
        &mut self.bytes[at..at + size]
    }

    /// Fills array `index` with as many of `items` as fit, each written by `write`, and sets the
    /// array's count field to the real total (the count-probe convention).
    pub fn put<T>(&mut self, index: usize, items: &[T], mut write: impl FnMut(&mut [u8], &T)) -> Result<()> {
        for (i, item) in items.iter().take(self.counts[index]).enumerate() {
            write(self.element(index, i), item);
        }
        match self.layout.arrays[index].count {
            Count::U32(at) => self.set_u32(at, u32::try_from(items.len()).map_err(|_| Error::new(EINVAL))?),
            Count::U64(at) => self.set_u64(at, items.len() as u64),
        }
        Ok(())
    }

    /// [`Payload::put`] for an array of `u32`s.
    pub fn put_u32s(&mut self, index: usize, items: &[u32]) {
        // A u32 array's count is a u32 and `items` come from the driver's own small tables.
        let _ = self.put(index, items, |out, v| out.copy_from_slice(&v.to_le_bytes()));
    }

    /// [`Payload::put`] for an array of `u64`s.
    pub fn put_u64s(&mut self, index: usize, items: &[u64]) {
        let _ = self.put(index, items, |out, v| out.copy_from_slice(&v.to_le_bytes()));
    }

    /// [`Payload::put`] for an array of bytes.
    pub fn put_bytes(&mut self, index: usize, bytes: &[u8]) {
        let _ = self.put(index, bytes, |out, b| out[0] = *b);
    }

    /// Reads the `u32`s of array `index`.
    pub fn u32s(&mut self, index: usize) -> Vec<u32> {
        (0..self.counts[index])
            .map(|i| u32::from_le_bytes(self.element(index, i)[..4].try_into().expect("4-byte element")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_reference_table() {
        let fixed = |nr| ioctl::layout(nr).unwrap().fixed;
        assert_eq!(fixed(ioctl::VERSION), 40);
        assert_eq!(fixed(ioctl::SET_CRTC), 28 + MODE_INFO_BYTES);
        assert_eq!(fixed(ioctl::GET_CONNECTOR), 48);
        assert_eq!(fixed(ioctl::ADD_FB2), 104);
        assert_eq!(fixed(ioctl::OBJ_GET_PROPERTIES), 12);
        assert_eq!(fixed(ioctl::CURSOR2), 36);
        assert!(ioctl::layout(0x42).is_none());
    }

    #[test]
    fn arrays_are_located_from_their_counts_at_unaligned_offsets() {
        // OBJ_GET_PROPERTIES with 2 props: 12 fixed bytes, 2 u32 ids, then 2 u64 values at offset 20.
        let mut bytes = vec![0u8; 12 + 8 + 16];
        bytes[0] = 2;
        let layout = ioctl::layout(ioctl::OBJ_GET_PROPERTIES).unwrap();
        let mut payload = Payload::parse(&mut bytes, layout).unwrap();
        payload.put_u32s(0, &[5, 7, 9]);
        payload.put_u64s(1, &[u64::MAX, 1, 2]);
        assert_eq!(payload.u32(0), 3);
        assert_eq!(&bytes[12..20], &[5, 0, 0, 0, 7, 0, 0, 0]);
        assert_eq!(&bytes[20..28], &u64::MAX.to_le_bytes());
        assert_eq!(&bytes[28..36], &1u64.to_le_bytes());
    }

    #[test]
    fn short_long_and_inconsistent_payloads_are_einval() {
        let layout = ioctl::layout(ioctl::DIRTYFB).unwrap();
        let parse = |bytes: &mut [u8]| Payload::parse(bytes, layout).err().map(|e| e.errno);
        assert_eq!(parse(&mut [0u8; 15]), Some(EINVAL), "short fixed part");
        assert_eq!(parse(&mut [0u8; 17]), Some(EINVAL), "bytes left over");
        let mut clips = [0u8; 16 + 8];
        clips[12] = 2; // announces two clips, carries one
        assert_eq!(parse(&mut clips), Some(EINVAL));
        let mut huge = [0u8; 16];
        huge[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse(&mut huge), Some(EINVAL));
        let mut version = [0u8; 40];
        version[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(Payload::parse(&mut version, ioctl::layout(ioctl::VERSION).unwrap()).is_err(), "overflow");
        assert!(parse(&mut [0u8; 16]).is_none(), "no clips is fine");
    }
}
