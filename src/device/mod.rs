//! Hardware: everything that touches the Bochs adapter's registers and VRAM.
//!
//! `mmio` is the only way to the BARs, `regs` names them, `edid` reads (and, for the test kit's
//! emulated device, writes) monitor descriptions, `bochs` programs the adapter, `host_mapping`
//! maps memory on Linux hosts (BAR files, dumb buffers, and the emulated device's VRAM), and
//! `words` is how threads of one process share memory without racing.
//!
//! This file is the one seam between the display scheme and a device: the [`Adapter`] trait and the
//! words both sides use (errors, rectangles, pixel sources, unplug kinds, health). Besides these,
//! `kms` uses only `edid::Mode` and `mmio::Shared` (modes and buffer bytes); `bochs` implements the
//! trait.

pub mod bochs;
pub mod edid;
#[cfg(not(target_os = "redox"))]
pub mod host_mapping;
pub mod mmio;
pub mod regs;
pub mod words;

use edid::Mode;
use mmio::Shared;

/// What the display scheme needs from an adapter: its modes and EDID, mode setting, and pixels.
/// Device files implement it and know nothing of the wire; every method that needs the hardware
/// answers [`DeviceError::Gone`] once the device is unplugged.
pub trait Adapter: Send + Sync {
    /// Short driver name (DRM `VERSION` name).
    fn name(&self) -> &'static str;
    /// Human-readable description (DRM `VERSION` desc).
    fn description(&self) -> &'static str;
    /// The modes the monitor and VRAM allow, preferred first; never empty, and still answered from
    /// the last known state after an unplug.
    fn modes(&self) -> &[Mode];
    /// The raw EDID blob, if any.
    fn edid(&self) -> Option<&[u8]>;
    /// Largest width and height a framebuffer may have.
    fn max_size(&self) -> (u32, u32);
    /// Sets a 32-bpp mode; returns where it scans out from.
    fn set_mode(&self, width: u16, height: u16) -> Result<Scanout, DeviceError>;
    /// Turns scanout off.
    fn disable(&self) -> Result<(), DeviceError>;
    /// Blacks out the visible frame, keeping the mode.
    fn clear(&self) -> Result<(), DeviceError>;
    /// Blanks or unblanks the output (DPMS).
    fn blank(&self, blank: bool) -> Result<(), DeviceError>;
    /// Copies pixels to the screen.
    fn blit(&self, src: Source<'_>, dst: Rect) -> Result<(), DeviceError>;
    /// Shows a whole new frame without tearing.
    fn flip(&self, src: Source<'_>) -> Result<(), DeviceError>;
    /// Whether the device has been unplugged.
    fn is_unplugged(&self) -> bool;
    /// Reads the device's identity to tell whether it is still there.
    fn health(&self) -> Health;
    /// Unplugs: when this returns nothing touches the device again. `true` to the call that did it.
    fn unplug(&self, kind: Unplug) -> bool;
}

/// Why a device call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceError {
    /// The device has been unplugged.
    Gone,
    /// Not a Bochs adapter (PCI id) at probe.
    Unsupported,
    /// The ID register did not read 0xB0C0..=0xB0C5 at probe.
    BadId(u16),
    /// The mode is outside what the device and its VRAM can show.
    ModeRejected,
    /// An offset or rectangle outside VRAM or the current mode.
    OutOfBounds,
    /// Scanout needs a mode and none is set.
    NoMode,
}

impl DeviceError {
    /// The errno a client sees for this error.
    pub fn errno(self) -> i32 {
        match self {
            DeviceError::Gone | DeviceError::Unsupported | DeviceError::BadId(_) => syscall::error::ENODEV,
            DeviceError::ModeRejected | DeviceError::OutOfBounds | DeviceError::NoMode => {
                syscall::error::EINVAL
            }
        }
    }
}

impl std::fmt::Display for DeviceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceError::Gone => f.write_str("the device has been unplugged"),
            DeviceError::Unsupported => f.write_str("not a Bochs display adapter"),
            DeviceError::BadId(id) => {
                write!(f, "the DISPI ID register reads {id:#06x}, not a Bochs ID")
            }
            DeviceError::ModeRejected => f.write_str("the mode does not fit the device"),
            DeviceError::OutOfBounds => f.write_str("offset or rectangle outside VRAM or the mode"),
            DeviceError::NoMode => f.write_str("no mode is set"),
        }
    }
}

impl std::error::Error for DeviceError {}

/// A device error as the client sees it: its errno ([`DeviceError::errno`]).
impl From<DeviceError> for syscall::error::Error {
    fn from(error: DeviceError) -> Self {
        syscall::error::Error::new(error.errno())
    }
}

/// Which kind of unplug: the driver's own stop, or its answer to a removal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unplug {
    /// The driver stops while the device is still there (control path, SIGTERM, unmount, or a
    /// removal that is announced first), so scanout is disabled first.
    Orderly,
    /// The device is already gone (a removal the driver learned of afterwards): nothing may touch it.
    Surprise,
}

/// The health probe's finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// The ID register reads a Bochs ID.
    Present,
    /// The ID register reads something else (0xFFFF on real PCI, 0x0000 on QEMU after removal).
    Vanished(u16),
    /// Already unplugged.
    Unplugged,
}

/// Where the device scans out from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scanout {
    /// Visible pixels per line.
    pub width: u16,
    /// Visible lines.
    pub height: u16,
    /// Bytes per line in VRAM.
    pub pitch: u32,
    /// VRAM byte offset of the first visible pixel.
    pub offset: usize,
}

/// A damage rectangle in pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
}

impl Rect {
    /// The smallest rectangle holding both.
    pub fn union(self, other: Rect) -> Rect {
        let (x, y) = (self.x.min(other.x), self.y.min(other.y));
        let right = self.x.saturating_add(self.width).max(other.x.saturating_add(other.width));
        let bottom = self.y.saturating_add(self.height).max(other.y.saturating_add(other.height));
        Rect { x, y, width: right - x, height: bottom - y }
    }
}

/// Pixels to copy from: a 32-bpp buffer, its pitch, and the top-left source pixel of the copy.
#[derive(Clone, Copy, Debug)]
pub struct Source<'a> {
    /// The buffer (a client's, which it may be writing meanwhile).
    pub bytes: Shared<'a>,
    /// Bytes per row.
    pub pitch: usize,
    /// Source column of the copy's first pixel.
    pub x: u32,
    /// Source row of the copy's first pixel.
    pub y: u32,
}
