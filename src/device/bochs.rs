//! The Bochs DISPI driver: probe, EDID and modes, mode set, pan/flip, blank, damage copy, health.
//!
//! Guarantees:
//! * Every register and VRAM access happens inside a presence section of the device's
//!   [`Revocable`] hardware; once the device is unplugged every call returns
//!   [`DeviceError::Gone`] without touching it.
//! * Modes are validated before they reach the hardware (at least 64×64, within the DISPI limits,
//!   width a multiple of 8, `height × pitch ≤ VRAM`), and a mode the device clamps is reported as
//!   rejected, not silently shown wrong.
//! * An orderly unplug disables scanout while the device is still there, then revokes; a surprise
//!   unplug revokes without touching it.
//! * A mode set whose read-back disagrees checks the ID register in the same section; if the device
//!   is gone, the driver unplugs itself there and then (a surprise unplug) and answers
//!   [`DeviceError::Gone`].

use std::sync::Mutex;

use super::edid::{self, Mode};
use super::mmio::{Mmio, RowCopy, Vram};
use super::regs::*;
use super::{Adapter, DeviceError, Health, Rect, Scanout, Source, Unplug};
use crate::guard::Revocable;

/// PCI vendor:device pairs of the Bochs adapter (QEMU, and Simics' 4321:1111).
pub const SUPPORTED_IDS: [(u16, u16); 2] = [(0x1234, 0x1111), (0x4321, 0x1111)];

const BYTES_PER_PIXEL: u32 = 4;

/// What the platform learned about the PCI function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciId {
    /// Vendor id.
    pub vendor: u16,
    /// Device id.
    pub device: u16,
    /// Class code (3: display).
    pub class: u8,
    /// Subclass (0: VGA compatible, with VGA ports; 0x80: other, as bochs-display).
    pub subclass: u8,
    /// Revision (2 or more: QEMU extension registers).
    pub revision: u8,
}

/// The device's BARs, as the platform mapped them.
pub struct Hardware {
    /// BAR2: registers.
    pub mmio: Mmio<MMIO_BYTES>,
    /// BAR0: VRAM.
    pub vram: Vram,
}

/// Driver options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// The preferred mode when the device has no valid EDID.
    pub fallback_preferred: (u16, u16),
}

impl Default for Options {
    fn default() -> Self {
        Options { fallback_preferred: (1024, 768) }
    }
}

/// QEMU's `bochs-display` as it presents itself on PCI (display class, "other" subclass, rev 2).
pub const QEMU_BOCHS_DISPLAY: PciId =
    PciId { vendor: 0x1234, device: 0x1111, class: 3, subclass: 0x80, revision: 2 };

/// The row copy that puts `dst` (screen coordinates, inside the mode) from `src` into the frame
/// at VRAM offset `frame`.
fn rect_copy(src: Source<'_>, dst: Rect, scanout: Scanout, frame: usize) -> Result<RowCopy, DeviceError> {
    let fits_x = dst.x.checked_add(dst.width).is_some_and(|r| r <= u32::from(scanout.width));
    let fits_y = dst.y.checked_add(dst.height).is_some_and(|b| b <= u32::from(scanout.height));
    if !fits_x || !fits_y {
        return Err(DeviceError::OutOfBounds);
    }
    let src_offset = (src.y as usize)
        .checked_mul(src.pitch)
        .and_then(|o| o.checked_add(src.x as usize * BYTES_PER_PIXEL as usize))
        .ok_or(DeviceError::OutOfBounds)?;
    Ok(RowCopy {
        dst_offset: frame + dst.y as usize * scanout.pitch as usize + (dst.x * BYTES_PER_PIXEL) as usize,
        dst_pitch: scanout.pitch as usize,
        src_offset,
        src_pitch: src.pitch,
        row_bytes: (dst.width * BYTES_PER_PIXEL) as usize,
        rows: dst.height as usize,
    })
}

/// Whether the DISPI ID register's value is one a Bochs adapter reports (0xB0C0 to 0xB0C5): what
/// the probe requires, and what the health check and a disagreeing mode set look for.
fn is_bochs_id(id: u16) -> bool {
    (ID_FIRST..=ID_LATEST).contains(&id)
}

/// Blanks or unblanks the VGA output through the VGA ports at MMIO 0x400: the attribute
/// controller's palette-address-source bit, which stdvga and secondary-vga start with cleared (black
/// screen). secondary-vga has the same ids and class as bochs-display, which has no VGA ports, so
/// nothing tells them apart: like Linux's bochs driver, always write, and on bochs-display the writes
/// land in unassigned MMIO, which ignores them.
fn vga_blank(mmio: &Mmio<MMIO_BYTES>, blank: bool) {
    const MISC_OUTPUT_WRITE: usize = VGA_PORTS + 0x02; // port 0x3c2
    const INPUT_STATUS_1: usize = VGA_PORTS + 0x1a; // port 0x3da, colour mode
    mmio.write8::<MISC_OUTPUT_WRITE>(0x01); // colour mode, so 0x3da is the status port
    mmio.read8::<INPUT_STATUS_1>(); // resets the attribute flip-flop to "index"
    mmio.write8::<VGA_PORTS>(if blank { 0 } else { 0x20 });
}

/// A probed Bochs adapter.
pub struct Bochs {
    hw: Revocable<Bars>,
    vram_bytes: usize,
    edid: Option<Vec<u8>>,
    modes: Vec<Mode>,
}

/// The BARs while the device is bound: registers, and VRAM with the scan-out state it goes with.
struct Bars {
    mmio: Mmio<MMIO_BYTES>,
    frame: Mutex<Frame>,
}

/// VRAM and where the device scans it out from, under one lock: the lock is what makes the holder
/// VRAM's only writer ([`Vram`] writes take `&mut`) and keeps a mode set, a flip and a copy from
/// interleaving their register writes.
struct Frame {
    vram: Vram,
    scanout: Option<Scanout>,
}

impl Bars {
    fn frame(&self) -> std::sync::MutexGuard<'_, Frame> {
        self.frame.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Sizes offered without EDID (Linux offers the DMT list up to 8192×8192 the same way).
const FALLBACK_SIZES: [(u16, u16); 20] = [
    (640, 480),
    (800, 600),
    (1024, 768),
    (1152, 864),
    (1280, 720),
    (1280, 768),
    (1280, 800),
    (1280, 960),
    (1280, 1024),
    (1360, 768),
    (1400, 1050),
    (1440, 900),
    (1600, 900),
    (1600, 1200),
    (1680, 1050),
    (1920, 1080),
    (1920, 1200),
    (2560, 1440),
    (3840, 2160),
    (8192, 4608),
];

impl Bochs {
    /// Identifies the adapter, sets its byte order and reads its modes.
    pub fn probe(pci: PciId, hw: Hardware, options: Options) -> Result<Bochs, DeviceError> {
        if !SUPPORTED_IDS.contains(&(pci.vendor, pci.device)) {
            return Err(DeviceError::Unsupported);
        }
        let hw =
            Revocable::new(Bars { mmio: hw.mmio, frame: Mutex::new(Frame { vram: hw.vram, scanout: None }) });
        let (vram_bytes, edid_blob) = {
            let hw = hw.try_access().ok_or(DeviceError::Gone)?;
            let id = hw.mmio.read16::<{ DISPI + 2 * DISPI_ID }>();
            if !is_bochs_id(id) {
                return Err(DeviceError::BadId(id));
            }
            let reported = usize::from(hw.mmio.read16::<{ DISPI + 2 * DISPI_VIDEO_MEMORY_64K }>()) << 16;
            if pci.revision >= 2 && hw.mmio.read32::<QEXT_SIZE>() >= 8 {
                hw.mmio.write32::<QEXT_BYTE_ORDER>(QEXT_LITTLE_ENDIAN);
            }
            let read = |range: std::ops::Range<usize>| -> Result<Vec<u8>, DeviceError> {
                range.map(|offset| hw.mmio.try_read8(offset).map_err(|_| DeviceError::OutOfBounds)).collect()
            };
            // The base block, then as many extension blocks as it declares (byte 126), as Linux
            // reads them: the blob clients get is 128 × (1 + extensions) bytes.
            let mut blob = read(0..edid::BLOCK)?;
            let declared = edid::BLOCK * (1 + usize::from(blob[126]));
            if declared <= EDID_WINDOW {
                blob.extend(read(edid::BLOCK..declared)?);
            } else {
                log::warn!(
                    "bochs: the EDID declares {} extension blocks, more than fit; ignoring them",
                    blob[126]
                );
                edid::drop_extensions(&mut blob);
            }
            let vram_len = hw.frame().vram.len();
            (vram_len.min(reported), blob)
        };
        let mut device = Bochs { hw, vram_bytes, edid: None, modes: Vec::new() };
        match edid::parse(&edid_blob) {
            Ok(parsed) => {
                device.modes =
                    parsed.modes.into_iter().filter(|m| device.fits(m.hdisplay, m.vdisplay)).collect();
                device.edid = Some(edid_blob);
            }
            Err(error) => {
                log::info!("bochs: no usable EDID ({error:?}); offering the fallback modes")
            }
        }
        if device.modes.is_empty() {
            device.modes = device.fallback_modes(options.fallback_preferred);
        }
        let Some(preferred) = device.modes.first().copied() else {
            log::error!("bochs: {} KiB of VRAM holds no mode; refusing the device", vram_bytes >> 10);
            return Err(DeviceError::ModeRejected);
        };
        log::info!(
            "bochs: probed {:04x}:{:04x} rev {}, {} MiB VRAM, {} modes, preferred {}x{}",
            pci.vendor,
            pci.device,
            pci.revision,
            vram_bytes >> 20,
            device.modes.len(),
            preferred.hdisplay,
            preferred.vdisplay
        );
        Ok(device)
    }

    /// Usable VRAM in bytes.
    pub fn vram_bytes(&self) -> usize {
        self.vram_bytes
    }

    /// The current scanout, if a mode is set (none once unplugged).
    pub fn scanout(&self) -> Option<Scanout> {
        self.hw.try_access()?.frame().scanout
    }

    /// Whether `width`×`height` at 32 bpp can be shown.
    pub fn fits(&self, width: u16, height: u16) -> bool {
        width >= 64
            && height >= 64
            && width <= MAX_XRES
            && height <= MAX_YRES
            && width.is_multiple_of(8)
            && usize::from(height) * usize::from(width) * BYTES_PER_PIXEL as usize <= self.vram_bytes
    }

    /// Scans out from `offset` in VRAM with the current mode (pan, or flip to another buffer in
    /// VRAM). `offset` must be pixel-aligned and leave a whole frame inside VRAM.
    pub fn set_base(&self, offset: usize) -> Result<Scanout, DeviceError> {
        let hw = self.hw.try_access().ok_or(DeviceError::Gone)?;
        let mut frame = hw.frame();
        let current = frame.scanout.ok_or(DeviceError::NoMode)?;
        let pitch = current.pitch as usize;
        let frame_end = offset.checked_add(usize::from(current.height) * pitch);
        if !offset.is_multiple_of(BYTES_PER_PIXEL as usize)
            || frame_end.is_none_or(|end| end > self.vram_bytes)
        {
            return Err(DeviceError::OutOfBounds);
        }
        let (y, x) = (offset / pitch, offset % pitch / BYTES_PER_PIXEL as usize);
        let y = u16::try_from(y).ok().filter(|&y| y <= MAX_YRES).ok_or(DeviceError::OutOfBounds)?;
        hw.mmio.write16::<{ DISPI + 2 * DISPI_VIRT_WIDTH }>((current.pitch / BYTES_PER_PIXEL) as u16);
        hw.mmio.write16::<{ DISPI + 2 * DISPI_X_OFFSET }>(x as u16);
        hw.mmio.write16::<{ DISPI + 2 * DISPI_Y_OFFSET }>(y);
        let moved = Scanout { offset, ..current };
        frame.scanout = Some(moved);
        Ok(moved)
    }

    /// Copies `rect` of a 32-bpp shadow buffer (`src`, `src_pitch` bytes per row, same coordinates
    /// as the screen) into the scanout.
    pub fn flush(&self, src: &[u8], src_pitch: usize, rect: Rect) -> Result<(), DeviceError> {
        self.blit(Source { bytes: src.into(), pitch: src_pitch, x: rect.x, y: rect.y }, rect)
    }

    fn fallback_modes(&self, preferred: (u16, u16)) -> Vec<Mode> {
        let preferred = Some(preferred).filter(|&(w, h)| self.fits(w, h)).unwrap_or((640, 480));
        let others = FALLBACK_SIZES.into_iter().filter(|&size| size != preferred);
        std::iter::once(preferred)
            .chain(others)
            .filter(|&(w, h)| self.fits(w, h))
            .enumerate()
            .map(|(i, (w, h))| Mode { preferred: i == 0, ..Mode::synthesized(w, h) })
            .collect()
    }
}

/// The adapter the display scheme drives: the Bochs programming itself (the trait says what each
/// call promises).
impl Adapter for Bochs {
    fn name(&self) -> &'static str {
        "displayd"
    }

    fn description(&self) -> &'static str {
        "QEMU/Bochs display adapter"
    }

    fn max_size(&self) -> (u32, u32) {
        (MAX_XRES.into(), MAX_YRES.into())
    }

    /// The modes the device can show, preferred first; never empty.
    fn modes(&self) -> &[Mode] {
        &self.modes
    }

    /// The raw EDID blob, if the device has a valid one.
    fn edid(&self) -> Option<&[u8]> {
        self.edid.as_deref()
    }

    /// Sets `width`×`height` at 32 bpp, scanning out from VRAM offset 0.
    fn set_mode(&self, width: u16, height: u16) -> Result<Scanout, DeviceError> {
        if !self.fits(width, height) {
            return Err(DeviceError::ModeRejected);
        }
        let hw = self.hw.try_access().ok_or(DeviceError::Gone)?;
        let mut frame = hw.frame();
        let pitch = u32::from(width) * BYTES_PER_PIXEL;
        let virt_height = (self.vram_bytes / pitch as usize).min(usize::from(u16::MAX)) as u16;
        let m = &hw.mmio;
        vga_blank(m, false);
        m.write16::<{ DISPI + 2 * DISPI_ENABLE }>(0);
        m.write16::<{ DISPI + 2 * DISPI_BPP }>(32);
        m.write16::<{ DISPI + 2 * DISPI_XRES }>(width);
        m.write16::<{ DISPI + 2 * DISPI_YRES }>(height);
        m.write16::<{ DISPI + 2 * DISPI_BANK }>(0);
        m.write16::<{ DISPI + 2 * DISPI_VIRT_WIDTH }>(width);
        m.write16::<{ DISPI + 2 * DISPI_VIRT_HEIGHT }>(virt_height);
        m.write16::<{ DISPI + 2 * DISPI_X_OFFSET }>(0);
        m.write16::<{ DISPI + 2 * DISPI_Y_OFFSET }>(0);
        m.write16::<{ DISPI + 2 * DISPI_ENABLE }>(ENABLED | LFB_ENABLED);
        let shown = (
            m.read16::<{ DISPI + 2 * DISPI_XRES }>(),
            m.read16::<{ DISPI + 2 * DISPI_YRES }>(),
            m.read16::<{ DISPI + 2 * DISPI_BPP }>(),
        );
        if shown != (width, height, 32) {
            frame.scanout = None;
            // A read-back that disagrees may mean the device is gone (yanked: every register
            // reads all ones or all zeros). Ask the ID register in this same section; if it no
            // longer reads a Bochs ID, this is a surprise removal, taken right here rather than
            // at the next health probe, so no client meets an error the unplug policy does not list.
            let id = m.read16::<{ DISPI + 2 * DISPI_ID }>();
            if !is_bochs_id(id) {
                drop(frame);
                drop(hw);
                log::warn!(
                    "bochs: mode set read back {shown:?} and the ID register reads {id:#06x}: the device \
                     is gone; unplugging it"
                );
                self.unplug(Unplug::Surprise);
                return Err(DeviceError::Gone);
            }
            log::warn!("bochs: asked for {width}x{height}x32, the device shows {shown:?}");
            return Err(DeviceError::ModeRejected);
        }
        let set = Scanout { width, height, pitch, offset: 0 };
        frame.scanout = Some(set);
        log::info!("bochs: mode set {width}x{height}x32, pitch {pitch}");
        Ok(set)
    }

    /// Turns scanout off (no plane to show); the next [`Bochs::set_mode`] turns it on again.
    fn disable(&self) -> Result<(), DeviceError> {
        let hw = self.hw.try_access().ok_or(DeviceError::Gone)?;
        let mut frame = hw.frame();
        hw.mmio.write16::<{ DISPI + 2 * DISPI_ENABLE }>(0);
        frame.scanout = None;
        Ok(())
    }

    /// Blacks out the visible frame (the mode stays set): what the screen shows with no plane on it.
    fn clear(&self) -> Result<(), DeviceError> {
        let hw = self.hw.try_access().ok_or(DeviceError::Gone)?;
        let mut frame = hw.frame();
        let scanout = frame.scanout.ok_or(DeviceError::NoMode)?;
        let bytes = scanout.pitch as usize * usize::from(scanout.height);
        frame.vram.fill(scanout.offset, bytes, 0).then_some(()).ok_or(DeviceError::OutOfBounds)
    }

    /// Blanks or unblanks the output through the VGA attribute controller (`vga_blank`).
    fn blank(&self, blank: bool) -> Result<(), DeviceError> {
        let hw = self.hw.try_access().ok_or(DeviceError::Gone)?;
        vga_blank(&hw.mmio, blank);
        Ok(())
    }

    /// Copies the `dst.width`×`dst.height` pixels at (`src.x`, `src.y`) of a 32-bpp buffer to `dst`
    /// on the screen.
    fn blit(&self, src: Source<'_>, dst: Rect) -> Result<(), DeviceError> {
        let hw = self.hw.try_access().ok_or(DeviceError::Gone)?;
        let mut frame = hw.frame();
        let scanout = frame.scanout.ok_or(DeviceError::NoMode)?;
        let copy = rect_copy(src, dst, scanout, scanout.offset)?;
        frame.vram.copy_rows(src.bytes, copy).then_some(()).ok_or(DeviceError::OutOfBounds)
    }

    /// Shows a whole new frame without tearing: copies it into the VRAM page that is not being
    /// scanned out and switches scanout to that page (one copy, then a flip). When VRAM holds only
    /// one frame, copies it in place.
    fn flip(&self, src: Source<'_>) -> Result<(), DeviceError> {
        let hw = self.hw.try_access().ok_or(DeviceError::Gone)?;
        let mut frame = hw.frame();
        let scanout = frame.scanout.ok_or(DeviceError::NoMode)?;
        let frame_bytes = scanout.pitch as usize * usize::from(scanout.height);
        let back = match scanout.offset {
            0 if 2 * frame_bytes <= self.vram_bytes => frame_bytes,
            _ => 0,
        };
        let whole = Rect { x: 0, y: 0, width: u32::from(scanout.width), height: u32::from(scanout.height) };
        let copy = rect_copy(src, whole, scanout, back)?;
        if !frame.vram.copy_rows(src.bytes, copy) {
            return Err(DeviceError::OutOfBounds);
        }
        if back != scanout.offset {
            let y = (back / scanout.pitch as usize) as u16;
            hw.mmio.write16::<{ DISPI + 2 * DISPI_X_OFFSET }>(0);
            hw.mmio.write16::<{ DISPI + 2 * DISPI_Y_OFFSET }>(y);
            frame.scanout = Some(Scanout { offset: back, ..scanout });
        }
        Ok(())
    }

    /// Whether the device has been unplugged (a point check; calls that need the device answer
    /// [`DeviceError::Gone`] by themselves).
    fn is_unplugged(&self) -> bool {
        self.hw.is_revoked()
    }

    /// Reads the ID register to tell whether the device is still there.
    fn health(&self) -> Health {
        let Some(hw) = self.hw.try_access() else {
            return Health::Unplugged;
        };
        match hw.mmio.read16::<{ DISPI + 2 * DISPI_ID }>() {
            id if is_bochs_id(id) => Health::Present,
            id => Health::Vanished(id),
        }
    }

    /// Unplugs: after this returns no thread touches the hardware again, and the BAR mappings are
    /// released. Returns `true` to the call that did it.
    fn unplug(&self, kind: Unplug) -> bool {
        log::info!("bochs: unplug ({kind:?}) started");
        if kind == Unplug::Orderly {
            if let Some(hw) = self.hw.try_access() {
                hw.mmio.write16::<{ DISPI + 2 * DISPI_ENABLE }>(0);
            }
        }
        let did_it = self.hw.revoke();
        if did_it {
            log::info!("bochs: unplug done: sections drained, hardware released");
        }
        did_it
    }
}
