//! The standard DRM properties (ids 1–17, as the reference numbers them).

/// Property flags.
pub const RANGE: u32 = 2;
const IMMUTABLE: u32 = 4;
const ENUM: u32 = 8;
const BLOB: u32 = 16;
const OBJECT: u32 = 64;
const SIGNED_RANGE: u32 = 128;
const ATOMIC: u32 = 0x8000_0000;

/// Object type tags.
pub mod object {
    /// A CRTC.
    pub const CRTC: u32 = 0xcccc_cccc;
    /// A connector.
    pub const CONNECTOR: u32 = 0xc0c0_c0c0;
    /// An encoder.
    pub const ENCODER: u32 = 0xe0e0_e0e0;
    /// A property.
    pub const PROPERTY: u32 = 0xb0b0_b0b0;
    /// A framebuffer.
    pub const FB: u32 = 0xfbfb_fbfb;
    /// A blob.
    pub const BLOB: u32 = 0xbbbb_bbbb;
    /// A plane.
    pub const PLANE: u32 = 0xeeee_eeee;
}

/// Property ids.
pub const CRTC_ID: u32 = 1;
/// The connector's EDID blob.
pub const EDID: u32 = 2;
/// Connector power state.
pub const DPMS: u32 = 3;
/// Tiled-display blob (always 0).
pub const TILE: u32 = 4;
/// Whether the CRTC is on.
pub const ACTIVE: u32 = 5;
/// Plane type.
pub const TYPE: u32 = 7;
/// The plane's framebuffer.
pub const FB_ID: u32 = 8;
/// Plane geometry: CRTC_X, CRTC_Y, CRTC_W, CRTC_H, SRC_X, SRC_Y, SRC_W, SRC_H.
pub const GEOMETRY: [u32; 8] = [9, 10, 11, 12, 13, 14, 15, 16];

/// One property's description.
pub struct Property {
    /// Its name.
    pub name: &'static str,
    /// Kind and modifier flags.
    pub flags: u32,
    /// Range bounds, or the object type for object properties.
    pub values: &'static [u64],
    /// (value, name) pairs of an enum.
    pub enums: &'static [(u64, &'static str)],
}

const U32_RANGE: &[u64] = &[0, u32::MAX as u64];
const I32_RANGE: &[u64] = &[i32::MIN as i64 as u64, i32::MAX as u64];

/// The property with id `id`, if it is one of the standard 17.
pub fn property(id: u32) -> Option<Property> {
    let p = |name, flags, values, enums| Property { name, flags, values, enums };
    Some(match id {
        CRTC_ID => p("CRTC_ID", OBJECT | ATOMIC, &[object::CRTC as u64], &[]),
        EDID => p("EDID", BLOB | IMMUTABLE, &[], &[]),
        DPMS => p("DPMS", ENUM, &[0, 1, 2, 3], &[(0, "On"), (1, "Standby"), (2, "Suspend"), (3, "Off")]),
        TILE => p("TILE", BLOB | IMMUTABLE, &[], &[]),
        ACTIVE => p("ACTIVE", RANGE | ATOMIC, &[0, 1], &[]),
        6 => p("MODE_ID", BLOB | ATOMIC, &[], &[]),
        TYPE => p("type", ENUM | IMMUTABLE, &[0, 1, 2], &[(0, "Overlay"), (1, "Primary"), (2, "Cursor")]),
        FB_ID => p("FB_ID", OBJECT | ATOMIC, &[object::FB as u64], &[]),
        9 => p("CRTC_X", SIGNED_RANGE | ATOMIC, I32_RANGE, &[]),
        10 => p("CRTC_Y", SIGNED_RANGE | ATOMIC, I32_RANGE, &[]),
        11 => p("CRTC_W", RANGE | ATOMIC, U32_RANGE, &[]),
        12 => p("CRTC_H", RANGE | ATOMIC, U32_RANGE, &[]),
        13 => p("SRC_X", RANGE | ATOMIC, U32_RANGE, &[]),
        14 => p("SRC_Y", RANGE | ATOMIC, U32_RANGE, &[]),
        15 => p("SRC_W", RANGE | ATOMIC, U32_RANGE, &[]),
        16 => p("SRC_H", RANGE | ATOMIC, U32_RANGE, &[]),
        17 => p("FB_DAMAGE_CLIPS", BLOB | ATOMIC, &[], &[]),
        _ => return None,
    })
}
