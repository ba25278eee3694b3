//! The Bochs display adapter's register map (QEMU `bochs-display`, `stdvga`, `secondary-vga`):
//! hardware facts shared by the driver and the emulated device.

/// Bytes of the MMIO BAR (BAR2).
pub const MMIO_BYTES: usize = 0x1000;
/// The EDID blob at the start of the MMIO BAR (QEMU's holds 256 bytes).
pub const EDID_BYTES: usize = 0x100;
/// How far EDID blocks may extend in the MMIO BAR (up to the VGA ports), as Linux's bochs
/// driver reads them: a base block declaring more extensions than fit is served without them.
pub const EDID_WINDOW: usize = 0x400;
/// VGA I/O ports 0x3c0–0x3df, mapped at this MMIO offset (stdvga and secondary-vga only).
pub const VGA_PORTS: usize = 0x400;
/// The DISPI registers: 16 bits each, at `DISPI + index * 2`.
pub const DISPI: usize = 0x500;
/// QEMU extension: its size in bytes (revision ≥ 2).
pub const QEXT_SIZE: usize = 0x600;
/// QEMU extension: framebuffer byte order.
pub const QEXT_BYTE_ORDER: usize = 0x604;
/// Byte-order value for little-endian framebuffers.
pub const QEXT_LITTLE_ENDIAN: u32 = 0x1e1e_1e1e;
/// Byte-order value for big-endian framebuffers.
pub const QEXT_BIG_ENDIAN: u32 = 0xbebe_bebe;

/// DISPI register indices.
pub const DISPI_ID: usize = 0;
/// Horizontal resolution.
pub const DISPI_XRES: usize = 1;
/// Vertical resolution.
pub const DISPI_YRES: usize = 2;
/// Bits per pixel.
pub const DISPI_BPP: usize = 3;
/// Enable flags.
pub const DISPI_ENABLE: usize = 4;
/// Banked-mode window (unused with the linear framebuffer; written 0).
pub const DISPI_BANK: usize = 5;
/// Pixels per scanline in VRAM.
pub const DISPI_VIRT_WIDTH: usize = 6;
/// Scanlines that fit in VRAM (computed by the device).
pub const DISPI_VIRT_HEIGHT: usize = 7;
/// Scanout origin, in pixels.
pub const DISPI_X_OFFSET: usize = 8;
/// Scanout origin, in lines.
pub const DISPI_Y_OFFSET: usize = 9;
/// VRAM size in 64 KiB units (read-only).
pub const DISPI_VIDEO_MEMORY_64K: usize = 10;
/// Number of DISPI registers.
pub const DISPI_COUNT: usize = 11;

/// The oldest and newest ID values a Bochs adapter reports; anything else means "not there".
pub const ID_FIRST: u16 = 0xb0c0;
/// The newest ID value (what QEMU's devices report).
pub const ID_LATEST: u16 = 0xb0c5;

/// ENABLE: display on.
pub const ENABLED: u16 = 0x01;
/// ENABLE: XRES/YRES/BPP read back their maxima while set.
pub const GETCAPS: u16 = 0x02;
/// ENABLE: linear framebuffer.
pub const LFB_ENABLED: u16 = 0x40;
/// ENABLE: keep VRAM contents when enabling.
pub const NOCLEARMEM: u16 = 0x80;

/// Largest horizontal resolution the DISPI interface accepts.
pub const MAX_XRES: u16 = 16000;
/// Largest vertical resolution the DISPI interface accepts.
pub const MAX_YRES: u16 = 12000;
