//! The fixed parts of the DRM ioctl payloads, the records their arrays carry, and the flip event,
//! as typed little-endian structs: the Linux uapi structs (`drm.h`, `drm_mode.h`) with the same
//! field names in the same order, minus the array pointers that redox-ioctl replaces with inline
//! bytes (see [`super::codec`]). In their place, each fixed part lists its arrays, in wire order,
//! by name, count field and element type (`GetConnector::MODES` is the array of [`ModeInfo`]s
//! counted by `count_modes`).
//!
//! Guarantees: every struct has alignment 1 and no padding (zerocopy's derives check both at
//! compile time), so each can be viewed in place at any offset of a client's payload and read or
//! written without `unsafe`; where C has implicit padding, the struct names it (`pad`) so the sizes
//! equal the reference's. The server (the handlers [`crate::kms::ioctl`]'s rows name) and the
//! test kit's client (`displayd_testkit::drm`) both use these, so the two cannot disagree on a layout.

use zerocopy::little_endian::{I32, U16, U32, U64};
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::codec::{Array, ArrayOf, Fixed};
use crate::device::edid::Mode;

/// GET_CAP capability ids.
pub mod cap {
    /// DRM_CAP_DUMB_BUFFER: dumb buffers are supported.
    pub const DUMB_BUFFER: u64 = 1;
    /// DRM_CAP_DUMB_PREFERRED_DEPTH.
    pub const DUMB_PREFERRED_DEPTH: u64 = 3;
    /// DRM_CAP_DUMB_PREFER_SHADOW: whether clients should draw into a shadow copy.
    pub const DUMB_PREFER_SHADOW: u64 = 4;
    /// DRM_CAP_CURSOR_WIDTH (not served: there is no hardware cursor).
    pub const CURSOR_WIDTH: u64 = 8;
    /// DRM_CAP_CURSOR_HEIGHT (not served: there is no hardware cursor).
    pub const CURSOR_HEIGHT: u64 = 9;
}

/// SET_CLIENT_CAP capability ids.
pub mod client_cap {
    /// DRM_CLIENT_CAP_UNIVERSAL_PLANES.
    pub const UNIVERSAL_PLANES: u64 = 2;
    /// DRM_CLIENT_CAP_CURSOR_PLANE_HOTSPOT.
    pub const CURSOR_PLANE_HOTSPOT: u64 = 6;
}

/// Defines the wire structs, each with the derives that make it viewable in place at any offset
/// with no `unsafe`. A fixed part also lists the counted arrays that follow it on the wire, in
/// order (where C has its array pointers), each by name, count field and element type: that makes
/// it a [`Fixed`] whose arrays the handlers and [`super::codec::Payload`] reach by name.
macro_rules! wire_structs {
    ($(
        $(#[$meta:meta])*
        pub struct $name:ident { $($(#[$field_meta:meta])* pub $field:ident: $ty:ty,)* }
        $(arrays [$($arrays:tt)*])?
    )*) => {
        $(
            $(#[$meta])*
            #[derive(Clone, Copy, Debug, PartialEq, Eq)]
            #[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
            #[repr(C)]
            pub struct $name { $($(#[$field_meta])* pub $field: $ty,)* }

            $(
                impl Fixed for $name {
                    const ARRAYS: &'static [Array<Self>] = arrays!(@list $($arrays)*);
                }

                impl $name {
                    arrays!(@names $name; 0; $($arrays)*);
                }
            )?
        )*
    };
}

/// The two halves of a fixed part's `arrays [NAME: count_field => Element, ...]`: the list
/// [`Payload::parse`](super::codec::Payload::parse) walks, and one typed name per array, numbered
/// in wire order.
macro_rules! arrays {
    (@list $($array:ident: $count:ident => $element:ty),* $(,)?) => {
        &[$(Array { count: |fixed| &mut fixed.$count, element: size_of::<$element>() }),*]
    };
    (@names $name:ident; $index:expr;) => {};
    (@names $name:ident; $index:expr; $array:ident: $count:ident => $element:ty $(, $($rest:tt)*)?) => {
        #[doc = concat!("The array counted by `", stringify!($count), "`.")]
        pub const $array: ArrayOf<$name, $element> = ArrayOf::new($index);
        arrays!(@names $name; $index + 1; $($($rest)*)?);
    };
}

wire_structs! {
    /// `drm_mode_modeinfo`: one display mode, as GET_CONNECTOR lists them and SET_CRTC takes them.
    pub struct ModeInfo {
        /// Pixel clock in kHz.
        pub clock: U32,
        /// Visible width.
        pub hdisplay: U16,
        /// Horizontal sync start.
        pub hsync_start: U16,
        /// Horizontal sync end.
        pub hsync_end: U16,
        /// Horizontal total.
        pub htotal: U16,
        /// Horizontal skew.
        pub hskew: U16,
        /// Visible height.
        pub vdisplay: U16,
        /// Vertical sync start.
        pub vsync_start: U16,
        /// Vertical sync end.
        pub vsync_end: U16,
        /// Vertical total.
        pub vtotal: U16,
        /// Vertical scan.
        pub vscan: U16,
        /// Refresh rate in Hz.
        pub vrefresh: U32,
        /// DRM_MODE_FLAG_* bits.
        pub flags: U32,
        /// DRM_MODE_TYPE_* bits.
        pub r#type: U32,
        /// NUL-padded name, e.g. `1280x800`.
        pub name: [u8; 32],
    }

    /// `drm_version` (VERSION); its arrays: name, date, description.
    pub struct Version {
        /// Major version.
        pub version_major: I32,
        /// Minor version.
        pub version_minor: I32,
        /// Patch level.
        pub version_patchlevel: I32,
        /// C's padding before the `size_t`s.
        pub pad: U32,
        /// Bytes of the name array.
        pub name_len: U64,
        /// Bytes of the date array.
        pub date_len: U64,
        /// Bytes of the description array.
        pub desc_len: U64,
    }
    arrays [NAME: name_len => u8, DATE: date_len => u8, DESC: desc_len => u8]

    /// `drm_unique` (GET_UNIQUE); its array: the unique name.
    pub struct Unique {
        /// Bytes of the name array.
        pub unique_len: U64,
    }
    arrays [UNIQUE: unique_len => u8]

    /// `drm_set_version` (SET_VERSION): the interface versions asked for, then granted.
    pub struct SetVersion {
        /// DRM interface major version (-1: any).
        pub drm_di_major: I32,
        /// DRM interface minor version.
        pub drm_di_minor: I32,
        /// Driver interface major version (-1: any).
        pub drm_dd_major: I32,
        /// Driver interface minor version.
        pub drm_dd_minor: I32,
    }
    arrays []

    /// `drm_get_cap` (GET_CAP).
    pub struct GetCap {
        /// Which capability ([`cap`]).
        pub capability: U64,
        /// Its value, written back.
        pub value: U64,
    }
    arrays []

    /// `drm_set_client_cap` (SET_CLIENT_CAP).
    pub struct SetClientCap {
        /// Which capability ([`client_cap`]).
        pub capability: U64,
        /// The value asked for.
        pub value: U64,
    }
    arrays []

    /// `drm_mode_card_res` (MODE_CARD_RES); its arrays: framebuffer, CRTC, connector, encoder ids.
    pub struct CardRes {
        /// Framebuffer ids.
        pub count_fbs: U32,
        /// CRTC ids.
        pub count_crtcs: U32,
        /// Connector ids.
        pub count_connectors: U32,
        /// Encoder ids.
        pub count_encoders: U32,
        /// Smallest width.
        pub min_width: U32,
        /// Largest width.
        pub max_width: U32,
        /// Smallest height.
        pub min_height: U32,
        /// Largest height.
        pub max_height: U32,
    }
    arrays [
        FBS: count_fbs => U32,
        CRTCS: count_crtcs => U32,
        CONNECTORS: count_connectors => U32,
        ENCODERS: count_encoders => U32,
    ]

    /// `drm_mode_crtc` (GET_CRTC, SET_CRTC); its array: the connector ids to drive (SET_CRTC).
    pub struct Crtc {
        /// Connector ids.
        pub count_connectors: U32,
        /// The CRTC.
        pub crtc_id: U32,
        /// Its framebuffer (-1 in SET_CRTC: keep the current one).
        pub fb_id: U32,
        /// Source x in the framebuffer.
        pub x: U32,
        /// Source y in the framebuffer.
        pub y: U32,
        /// Gamma ramp size.
        pub gamma_size: U32,
        /// Whether `mode` holds a mode (else the CRTC is off).
        pub mode_valid: U32,
        /// The mode.
        pub mode: ModeInfo,
    }
    arrays [CONNECTORS: count_connectors => U32]

    /// `drm_mode_cursor` (CURSOR).
    pub struct Cursor {
        /// DRM_MODE_CURSOR_* bits.
        pub flags: U32,
        /// The CRTC.
        pub crtc_id: U32,
        /// Position x.
        pub x: I32,
        /// Position y.
        pub y: I32,
        /// Image width.
        pub width: U32,
        /// Image height.
        pub height: U32,
        /// Dumb buffer holding the image.
        pub handle: U32,
    }
    arrays []

    /// `drm_mode_cursor2` (CURSOR2): CURSOR with a hotspot.
    pub struct Cursor2 {
        /// DRM_MODE_CURSOR_* bits.
        pub flags: U32,
        /// The CRTC.
        pub crtc_id: U32,
        /// Position x.
        pub x: I32,
        /// Position y.
        pub y: I32,
        /// Image width.
        pub width: U32,
        /// Image height.
        pub height: U32,
        /// Dumb buffer holding the image.
        pub handle: U32,
        /// Hotspot x.
        pub hot_x: I32,
        /// Hotspot y.
        pub hot_y: I32,
    }
    arrays []

    /// `drm_mode_get_encoder` (GET_ENCODER).
    pub struct GetEncoder {
        /// The encoder.
        pub encoder_id: U32,
        /// DRM_MODE_ENCODER_*.
        pub encoder_type: U32,
        /// The CRTC driving it, or 0.
        pub crtc_id: U32,
        /// Bit mask of CRTCs it can be driven by.
        pub possible_crtcs: U32,
        /// Bit mask of encoders it can clone.
        pub possible_clones: U32,
    }
    arrays []

    /// `drm_mode_get_connector` (GET_CONNECTOR); its arrays: encoder ids, modes ([`ModeInfo`]),
    /// property ids, property values.
    pub struct GetConnector {
        /// Modes.
        pub count_modes: U32,
        /// Property ids, and as many values.
        pub count_props: U32,
        /// Encoder ids.
        pub count_encoders: U32,
        /// The encoder driving it, or 0.
        pub encoder_id: U32,
        /// The connector.
        pub connector_id: U32,
        /// DRM_MODE_CONNECTOR_*.
        pub connector_type: U32,
        /// Number among connectors of its type.
        pub connector_type_id: U32,
        /// 1 connected, 2 disconnected, 3 unknown.
        pub connection: U32,
        /// Width in millimetres.
        pub mm_width: U32,
        /// Height in millimetres.
        pub mm_height: U32,
        /// Subpixel order.
        pub subpixel: U32,
        /// Padding.
        pub pad: U32,
    }
    arrays [
        ENCODERS: count_encoders => U32,
        MODES: count_modes => ModeInfo,
        PROPS: count_props => U32,
        PROP_VALUES: count_props => U64,
    ]

    /// `drm_mode_get_property` (GET_PROPERTY); its arrays: values, enum entries ([`PropertyEnum`]).
    pub struct GetProperty {
        /// The property.
        pub prop_id: U32,
        /// DRM_MODE_PROP_* bits.
        pub flags: U32,
        /// NUL-padded name.
        pub name: [u8; 32],
        /// Values.
        pub count_values: U32,
        /// Enum entries.
        pub count_enum_blobs: U32,
    }
    arrays [VALUES: count_values => U64, ENUMS: count_enum_blobs => PropertyEnum]

    /// `drm_mode_property_enum`: one (value, name) pair of an enum property.
    pub struct PropertyEnum {
        /// The value.
        pub value: U64,
        /// NUL-padded name.
        pub name: [u8; 32],
    }

    /// `drm_mode_connector_set_property` (SET_PROPERTY).
    pub struct ConnectorSetProperty {
        /// The new value.
        pub value: U64,
        /// The property.
        pub prop_id: U32,
        /// The connector.
        pub connector_id: U32,
    }
    arrays []

    /// `drm_mode_get_blob` (GET_PROP_BLOB); its array: the blob's bytes.
    pub struct GetBlob {
        /// The blob.
        pub blob_id: U32,
        /// Bytes of the data array.
        pub length: U32,
    }
    arrays [DATA: length => u8]

    /// `drm_mode_fb_cmd` (GET_FB, ADD_FB).
    pub struct FbCmd {
        /// The framebuffer.
        pub fb_id: U32,
        /// Width in pixels.
        pub width: U32,
        /// Height in pixels.
        pub height: U32,
        /// Bytes per row.
        pub pitch: U32,
        /// Bits per pixel.
        pub bpp: U32,
        /// Colour depth.
        pub depth: U32,
        /// Dumb buffer handle.
        pub handle: U32,
    }
    arrays []

    /// The framebuffer id RM_FB takes (a bare `unsigned int` in C).
    pub struct RmFb {
        /// The framebuffer.
        pub fb_id: U32,
    }
    arrays []

    /// `drm_mode_closefb` (CLOSE_FB).
    pub struct CloseFb {
        /// The framebuffer.
        pub fb_id: U32,
        /// Padding.
        pub pad: U32,
    }
    arrays []

    /// `drm_mode_crtc_page_flip` (PAGE_FLIP).
    pub struct CrtcPageFlip {
        /// The CRTC.
        pub crtc_id: U32,
        /// The framebuffer to show.
        pub fb_id: U32,
        /// DRM_MODE_PAGE_FLIP_* bits.
        pub flags: U32,
        /// Must be 0.
        pub reserved: U32,
        /// Handed back in the completion event.
        pub user_data: U64,
    }
    arrays []

    /// `drm_mode_fb_dirty_cmd` (DIRTYFB); its array: damage clips ([`ClipRect`]).
    pub struct FbDirtyCmd {
        /// The framebuffer.
        pub fb_id: U32,
        /// DRM_MODE_FB_DIRTY_* bits.
        pub flags: U32,
        /// Fill colour.
        pub color: U32,
        /// Clips.
        pub num_clips: U32,
    }
    arrays [CLIPS: num_clips => ClipRect]

    /// `drm_clip_rect`: a damage rectangle, from (x1, y1) up to, not including, (x2, y2).
    pub struct ClipRect {
        /// Left.
        pub x1: U16,
        /// Top.
        pub y1: U16,
        /// Right, exclusive.
        pub x2: U16,
        /// Bottom, exclusive.
        pub y2: U16,
    }

    /// `drm_mode_create_dumb` (CREATE_DUMB).
    pub struct CreateDumb {
        /// Height in pixels.
        pub height: U32,
        /// Width in pixels.
        pub width: U32,
        /// Bits per pixel.
        pub bpp: U32,
        /// Must be 0.
        pub flags: U32,
        /// The new handle, written back.
        pub handle: U32,
        /// Bytes per row, written back.
        pub pitch: U32,
        /// Bytes in all, written back.
        pub size: U64,
    }
    arrays []

    /// `drm_mode_map_dumb` (MAP_DUMB).
    pub struct MapDumb {
        /// The dumb buffer.
        pub handle: U32,
        /// Padding.
        pub pad: U32,
        /// Its `mmap` offset, written back.
        pub offset: U64,
    }
    arrays []

    /// `drm_mode_destroy_dumb` (DESTROY_DUMB).
    pub struct DestroyDumb {
        /// The dumb buffer.
        pub handle: U32,
    }
    arrays []

    /// `drm_mode_get_plane_res` (GET_PLANE_RES); its array: plane ids.
    pub struct GetPlaneRes {
        /// Plane ids.
        pub count_planes: U32,
    }
    arrays [PLANES: count_planes => U32]

    /// `drm_mode_get_plane` (GET_PLANE); its array: the pixel formats (fourccs) it scans out.
    pub struct GetPlane {
        /// The plane.
        pub plane_id: U32,
        /// The CRTC showing it, or 0.
        pub crtc_id: U32,
        /// Its framebuffer, or 0.
        pub fb_id: U32,
        /// Bit mask of CRTCs it can be shown on.
        pub possible_crtcs: U32,
        /// Gamma ramp size.
        pub gamma_size: U32,
        /// Pixel formats.
        pub count_format_types: U32,
    }
    arrays [FORMATS: count_format_types => U32]

    /// `drm_mode_set_plane` (SET_PLANE). Source coordinates are 16.16 fixed point; note that
    /// `src_h` comes before `src_w`.
    pub struct SetPlane {
        /// The plane.
        pub plane_id: U32,
        /// The CRTC.
        pub crtc_id: U32,
        /// The framebuffer (0: take the plane off).
        pub fb_id: U32,
        /// DRM_MODE_PRESENT_* bits.
        pub flags: U32,
        /// Destination x.
        pub crtc_x: I32,
        /// Destination y.
        pub crtc_y: I32,
        /// Destination width.
        pub crtc_w: U32,
        /// Destination height.
        pub crtc_h: U32,
        /// Source x.
        pub src_x: U32,
        /// Source y.
        pub src_y: U32,
        /// Source height.
        pub src_h: U32,
        /// Source width.
        pub src_w: U32,
    }
    arrays []

    /// `drm_mode_fb_cmd2` (ADD_FB2, GET_FB2): up to four planes of a pixel format.
    pub struct FbCmd2 {
        /// The framebuffer.
        pub fb_id: U32,
        /// Width in pixels.
        pub width: U32,
        /// Height in pixels.
        pub height: U32,
        /// Fourcc.
        pub pixel_format: U32,
        /// DRM_MODE_FB_* bits.
        pub flags: U32,
        /// Dumb buffer handle per plane.
        pub handles: [U32; 4],
        /// Bytes per row per plane.
        pub pitches: [U32; 4],
        /// Byte offset of the first pixel per plane.
        pub offsets: [U32; 4],
        /// C's padding before the `u64`s.
        pub pad: U32,
        /// Format modifier per plane.
        pub modifier: [U64; 4],
    }
    arrays []

    /// `drm_mode_obj_get_properties` (OBJ_GET_PROPERTIES); its arrays: property ids, their values.
    pub struct ObjGetProperties {
        /// Property ids, and as many values.
        pub count_props: U32,
        /// The object.
        pub obj_id: U32,
        /// Its DRM_MODE_OBJECT_* tag, written back.
        pub obj_type: U32,
    }
    arrays [PROPS: count_props => U32, PROP_VALUES: count_props => U64]

    /// `drm_event_vblank`: the flip-completion event `read` returns.
    pub struct EventVblank {
        /// `drm_event.type`: [`EventVblank::FLIP_COMPLETE`].
        pub r#type: U32,
        /// `drm_event.length`: bytes in the event.
        pub length: U32,
        /// What the client passed to PAGE_FLIP.
        pub user_data: U64,
        /// Seconds of the timestamp.
        pub tv_sec: U32,
        /// Microseconds of the timestamp.
        pub tv_usec: U32,
        /// The CRTC's flip count.
        pub sequence: U32,
        /// The CRTC.
        pub crtc_id: U32,
    }
}

/// DRM_MODE_TYPE_PREFERRED.
const TYPE_PREFERRED: u32 = 8;
/// DRM_MODE_TYPE_DRIVER.
const TYPE_DRIVER: u32 = 64;

impl From<&Mode> for ModeInfo {
    fn from(mode: &Mode) -> ModeInfo {
        let label = format!("{}x{}", mode.hdisplay, mode.vdisplay);
        let mut name = [0u8; 32];
        // At most 31 bytes: the name stays NUL-terminated.
        let len = label.len().min(31);
        name[..len].copy_from_slice(&label.as_bytes()[..len]);
        ModeInfo {
            clock: mode.clock_khz.into(),
            hdisplay: mode.hdisplay.into(),
            hsync_start: mode.hsync_start.into(),
            hsync_end: mode.hsync_end.into(),
            htotal: mode.htotal.into(),
            vdisplay: mode.vdisplay.into(),
            vsync_start: mode.vsync_start.into(),
            vsync_end: mode.vsync_end.into(),
            vtotal: mode.vtotal.into(),
            vrefresh: mode.refresh_hz().into(),
            r#type: (TYPE_DRIVER | if mode.preferred { TYPE_PREFERRED } else { 0 }).into(),
            name,
            ..ModeInfo::new_zeroed()
        }
    }
}

impl ModeInfo {
    /// The visible size the mode asks for.
    pub fn size(&self) -> (u16, u16) {
        (self.hdisplay.get(), self.vdisplay.get())
    }
}

impl EventVblank {
    /// `drm_event.type` of a page-flip completion (DRM_EVENT_FLIP_COMPLETE).
    pub const FLIP_COMPLETE: u32 = 2;
}
