//! Hardware: everything that touches the Bochs adapter's registers and VRAM.
//!
//! `mmio` is the only way to the BARs, `regs` names them, `edid` reads (and, for the test kit's
//! emulated device, writes) monitor descriptions, `bochs` programs the adapter, `host_mapping`
//! maps memory on Linux hosts (BAR files, dumb buffers, and the emulated device's VRAM), and
//! `words` is how threads of one process share memory without racing.

pub mod bochs;
pub mod edid;
#[cfg(not(target_os = "redox"))]
pub mod host_mapping;
pub mod mmio;
pub mod regs;
pub mod words;

use bochs::{DeviceError, Health, Rect, Source, Unplug};
use edid::Mode;

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
    /// Sets a 32-bpp mode.
    fn set_mode(&self, width: u16, height: u16) -> Result<(), DeviceError>;
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

impl Adapter for bochs::Bochs {
    fn name(&self) -> &'static str {
        "displayd"
    }
    fn description(&self) -> &'static str {
        "QEMU/Bochs display adapter"
    }
    fn modes(&self) -> &[Mode] {
        bochs::Bochs::modes(self)
    }
    fn edid(&self) -> Option<&[u8]> {
        bochs::Bochs::edid(self)
    }
    fn max_size(&self) -> (u32, u32) {
        (regs::MAX_XRES.into(), regs::MAX_YRES.into())
    }
    fn set_mode(&self, width: u16, height: u16) -> Result<(), DeviceError> {
        bochs::Bochs::set_mode(self, width, height).map(drop)
    }
    fn disable(&self) -> Result<(), DeviceError> {
        bochs::Bochs::disable(self)
    }
    fn clear(&self) -> Result<(), DeviceError> {
        bochs::Bochs::clear(self)
    }
    fn blank(&self, blank: bool) -> Result<(), DeviceError> {
        bochs::Bochs::blank(self, blank)
    }
    fn blit(&self, src: Source<'_>, dst: Rect) -> Result<(), DeviceError> {
        bochs::Bochs::blit(self, src, dst)
    }
    fn flip(&self, src: Source<'_>) -> Result<(), DeviceError> {
        bochs::Bochs::flip(self, src)
    }
    fn is_unplugged(&self) -> bool {
        bochs::Bochs::is_unplugged(self)
    }
    fn health(&self) -> Health {
        bochs::Bochs::health(self)
    }
    fn unplug(&self, kind: Unplug) -> bool {
        bochs::Bochs::unplug(self, kind)
    }
}
