//! The redox-ioctl DRM payload format.
//!
//! A payload is a fixed part laid out as the C struct without its counted-array pointers (one of
//! the [`super::wire`] structs), then each array's elements inline, in declaration order, at
//! unaligned offsets.
//!
//! Guarantees: [`Payload::parse`] accepts a payload only if its length is exactly the fixed part
//! plus every array its count fields announce (EINVAL otherwise, with checked arithmetic), and the
//! fixed part and the arrays are reached only through typed views of the bytes it checked, so no
//! client payload can make the codec panic or touch bytes outside it. Arrays follow the DRM
//! count-probe convention: [`Payload::put`] writes what fits and reports the real total in the
//! array's count field.

use std::marker::PhantomData;

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use syscall::error::{Error, Result, EINVAL};

/// A fixed part: a [`super::wire`] struct, viewable in place at any offset, with the counted arrays
/// that follow it.
pub trait Fixed: FromBytes + IntoBytes + KnownLayout + Immutable + Unaligned + Sized + 'static {
    /// Its arrays, in wire order.
    const ARRAYS: &'static [Array<Self>];
}

/// A count field of a fixed part: a `u32`, or a `u64` for C's `size_t` lengths.
pub trait CountField {
    /// The count the client sent.
    fn get(&self) -> u64;
    /// Reports the real total; EINVAL if the field cannot hold it.
    fn set(&mut self, count: usize) -> Result<()>;
}

impl CountField for U32 {
    fn get(&self) -> u64 {
        U32::get(*self).into()
    }

    fn set(&mut self, count: usize) -> Result<()> {
        *self = u32::try_from(count).map_err(|_| Error::new(EINVAL))?.into();
        Ok(())
    }
}

impl CountField for U64 {
    fn get(&self) -> u64 {
        U64::get(*self)
    }

    fn set(&mut self, count: usize) -> Result<()> {
        *self = (count as u64).into();
        Ok(())
    }
}

/// One counted array that follows the fixed part `T`.
pub struct Array<T: 'static> {
    /// Its count field.
    pub count: fn(&mut T) -> &mut dyn CountField,
    /// Bytes per element.
    pub element: usize,
}

/// Names array `index` of fixed part `T`, whose elements are `E`s: what handlers pass to
/// [`Payload::put`] and [`Payload::elements`]. Made only by [`super::wire`], from the same list as
/// `T`'s [`Fixed::ARRAYS`], so the element type always matches.
pub struct ArrayOf<T, E> {
    index: usize,
    types: PhantomData<fn() -> (T, E)>,
}

impl<T, E> ArrayOf<T, E> {
    pub(super) const fn new(index: usize) -> Self {
        ArrayOf { index, types: PhantomData }
    }
}

/// The most arrays one payload has (GET_CONNECTOR, MODE_CARD_RES).
const MAX_ARRAYS: usize = 4;

/// A payload checked against its fixed part `T` and arrays, edited in place.
///
/// # Examples
///
/// ```
/// use displayd::uapi::codec::Payload;
/// use displayd::uapi::wire::GetPlaneRes;
/// use zerocopy::little_endian::U32;
///
/// // GET_PLANE_RES probing with count 0: no array bytes follow.
/// let mut bytes = [0u8; 4];
/// let mut payload = Payload::<GetPlaneRes>::parse(&mut bytes).unwrap();
/// payload.put(GetPlaneRes::PLANES, [U32::new(18)]).unwrap();
/// assert_eq!(payload.fixed().count_planes.get(), 1, "the real count, for the second call");
///
/// // A payload whose length disagrees with its counts is refused.
/// let mut short = [1u8, 0, 0, 0];
/// assert!(Payload::<GetPlaneRes>::parse(&mut short).is_err());
/// ```
///
/// # Invariants
///
/// * `rest.len() == Σ counts[i] × T::ARRAYS[i].element`, and array `i` occupies
///   `starts[i] .. starts[i] + counts[i] × T::ARRAYS[i].element` of `rest`.
pub struct Payload<'a, T: 'static> {
    fixed: &'a mut T,
    rest: &'a mut [u8],
    starts: [usize; MAX_ARRAYS],
    counts: [usize; MAX_ARRAYS],
}

impl<'a, T: Fixed> Payload<'a, T> {
    /// Checks `bytes` against `T` and its arrays: EINVAL if it is shorter than the fixed part, if an
    /// array would run past the end, or if bytes are left over.
    pub fn parse(bytes: &'a mut [u8]) -> Result<Self> {
        const { assert!(T::ARRAYS.len() <= MAX_ARRAYS, "a fixed part with more arrays than MAX_ARRAYS") };
        let (fixed, rest) = T::mut_from_prefix(bytes).map_err(|_| Error::new(EINVAL))?;
        let mut payload = Payload { fixed, rest, starts: [0; MAX_ARRAYS], counts: [0; MAX_ARRAYS] };
        let mut end = 0usize;
        for (i, array) in T::ARRAYS.iter().enumerate() {
            let count =
                usize::try_from((array.count)(payload.fixed).get()).map_err(|_| Error::new(EINVAL))?;
            let len = count.checked_mul(array.element).ok_or(Error::new(EINVAL))?;
            payload.starts[i] = end;
            payload.counts[i] = count;
            end = end.checked_add(len).ok_or(Error::new(EINVAL))?;
        }
        if end != payload.rest.len() {
            return Err(Error::new(EINVAL));
        }
        Ok(payload)
    }

    /// The fixed part, to read the request and write the answer.
    pub fn fixed(&mut self) -> &mut T {
        &mut *self.fixed
    }

    /// Where array `index` lies in `rest`.
    fn span(&self, index: usize) -> std::ops::Range<usize> {
        let start = self.starts[index];
        start..start + self.counts[index] * T::ARRAYS[index].element
    }

    /// The elements of `array`, viewed in place.
    pub fn elements<E>(&self, array: ArrayOf<T, E>) -> Result<&[E]>
    where
        E: FromBytes + KnownLayout + Immutable + Unaligned,
    {
        // Cannot fail: `parse` sized the span in whole `E`s.
        <[E]>::ref_from_bytes(&self.rest[self.span(array.index)]).map_err(|_| Error::new(EINVAL))
    }

    /// Fills `array` with as many of `items` as fit and sets its count field to the real total
    /// (the count-probe convention); EINVAL if the count field cannot hold the total.
    pub fn put<E, I>(&mut self, array: ArrayOf<T, E>, items: I) -> Result<()>
    where
        E: IntoBytes + Immutable,
        I: IntoIterator<Item = E>,
        I::IntoIter: ExactSizeIterator,
    {
        let items = items.into_iter();
        let total = items.len();
        let span = self.span(array.index);
        for (out, item) in self.rest[span].chunks_exact_mut(size_of::<E>()).zip(items) {
            out.copy_from_slice(item.as_bytes());
        }
        (T::ARRAYS[array.index].count)(self.fixed).set(total)
    }
}

#[cfg(test)]
mod tests {
    use super::super::wire::{FbDirtyCmd, ObjGetProperties, Version};
    use super::*;

    #[test]
    fn arrays_are_located_from_their_counts_at_unaligned_offsets() {
        // OBJ_GET_PROPERTIES with 2 props: 12 fixed bytes, 2 u32 ids, then 2 u64 values at offset 20.
        let mut bytes = vec![0u8; 12 + 8 + 16];
        bytes[0] = 2;
        let mut payload = Payload::<ObjGetProperties>::parse(&mut bytes).unwrap();
        payload.put(ObjGetProperties::PROPS, [5, 7, 9].map(U32::new)).unwrap();
        payload.put(ObjGetProperties::PROP_VALUES, [u64::MAX, 1, 2].map(U64::new)).unwrap();
        assert_eq!(payload.fixed().count_props.get(), 3);
        assert_eq!(&bytes[12..20], &[5, 0, 0, 0, 7, 0, 0, 0]);
        assert_eq!(&bytes[20..28], &u64::MAX.to_le_bytes());
        assert_eq!(&bytes[28..36], &1u64.to_le_bytes());
    }

    #[test]
    fn short_long_and_inconsistent_payloads_are_einval() {
        let parse = |bytes: &mut [u8]| Payload::<FbDirtyCmd>::parse(bytes).err().map(|e| e.errno);
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
        assert!(Payload::<Version>::parse(&mut version).is_err(), "overflow");
        assert!(parse(&mut [0u8; 16]).is_none(), "no clips is fine");
    }
}
