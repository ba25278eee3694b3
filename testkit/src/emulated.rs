//! A software Bochs display adapter for Linux hosts, with a tripwire for use-after-unplug.
//!
//! Guarantees:
//! * The DISPI registers follow QEMU's stdvga semantics: GETCAPS maxima, the clamping QEMU applies
//!   when a mode is enabled (`vbe_fixup_regs`), VIRT_HEIGHT recomputed from VRAM, VIDEO_MEMORY_64K,
//!   the QEMU extension registers, and an EDID blob at MMIO 0x000 with a configurable preferred mode.
//! * VRAM (BAR0) is a real, prefaulted memory mapping.
//! * **Removal revokes both BARs**: VRAM becomes `PROT_NONE` and the register file aborts the
//!   process on any access, so an access that escaped the guard crashes the test instead of passing.
//! * **A surprise yank** makes registers read like an absent device (all ones or all zeros) and drops
//!   writes, without telling the driver, as QEMU and real PCI behave after removal.

use std::sync::atomic::{AtomicU8, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use displayd::device::edid::{self, Mode};
use displayd::device::host_mapping::HostMapping;
use displayd::device::mmio::{Mmio, RegisterFile, Vram, Width};
use displayd::device::regs;
use displayd::device::words;

/// How the emulated device is built.
#[derive(Clone, Debug)]
pub struct Config {
    /// Bytes of VRAM (BAR0); QEMU's default is 16 MiB.
    pub vram_bytes: usize,
    /// The monitor's preferred mode, or `None` for a device without EDID.
    pub edid_preferred: Option<(u16, u16)>,
    /// Whether VGA I/O ports sit at MMIO 0x400 (stdvga, secondary-vga) or not (bochs-display).
    pub vga_ports: bool,
    /// The PCI revision; 2 or more exposes the QEMU extension registers at 0x600.
    pub revision: u8,
    /// How many extension blocks the EDID's base block declares (byte 126); the first is an empty
    /// CTA-861 block, any others would lie past QEMU's 256-byte EDID area.
    pub edid_extensions: u8,
}

impl Default for Config {
    /// QEMU's `bochs-display` as seen on QEMU 7.2: 16 MiB, EDID preferring 1280×800, revision 2.
    fn default() -> Self {
        Config {
            vram_bytes: 16 << 20,
            edid_preferred: Some((1280, 800)),
            vga_ports: false,
            revision: 2,
            edid_extensions: 0,
        }
    }
}

/// What reads return once the device has been yanked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum YankedReads {
    /// All ones, as on real PCI (`0xFFFF` from the ID register).
    Ones,
    /// All zeros, as seen on QEMU after a hot-unplug (`0x0000` from the ID register).
    Zeros,
}

/// An RGB snapshot of what the device scans out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// Pixels per row.
    pub width: u32,
    /// Rows.
    pub height: u32,
    /// `width * height` pixels, 3 bytes each (R, G, B).
    pub rgb: Vec<u8>,
}

impl Image {
    /// The (R, G, B) of one pixel.
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let at = ((y * self.width + x) * 3) as usize;
        [self.rgb[at], self.rgb[at + 1], self.rgb[at + 2]]
    }

    /// Writes the image as a PNG file.
    pub fn save_png(&self, path: &std::path::Path) -> std::io::Result<()> {
        let file = std::io::BufWriter::new(std::fs::File::create(path)?);
        let mut encoder = png::Encoder::new(file, self.width, self.height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(std::io::Error::other)?;
        writer.write_image_data(&self.rgb).map_err(std::io::Error::other)
    }
}

const PRESENT: u8 = 0;
const YANKED_ONES: u8 = 1;
const YANKED_ZEROS: u8 = 2;
const REMOVED: u8 = 3;

/// A software Bochs adapter. Cloning gives another handle to the same device (the platform maps
/// its BARs through one, and the test removes it through another).
#[derive(Clone)]
pub struct EmulatedDevice {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    vram: HostMapping,
    dispi: Mutex<Dispi>,
    edid: [u8; regs::EDID_BYTES],
    state: AtomicU8,
}

/// The DISPI register file plus the bits of VGA state the blank path touches.
struct Dispi {
    regs: [u16; regs::DISPI_COUNT],
    /// VGA attribute controller: the next 0x3c0 write is an index (true) or data (false).
    attribute_index_next: bool,
    /// VGA attribute "palette address source": when clear, the VGA output is blanked.
    palette_enabled: bool,
    byte_order: u32,
}

impl EmulatedDevice {
    /// Builds a device; fails only if the VRAM mapping cannot be made.
    pub fn new(config: Config) -> std::io::Result<Self> {
        let vram = HostMapping::anonymous(config.vram_bytes, true)?;
        let mut edid_area = [0u8; regs::EDID_BYTES];
        if let Some((w, h)) = config.edid_preferred {
            let preferred = Mode { preferred: true, ..Mode::synthesized(w, h) };
            let block =
                edid::encode(preferred, &[(1920, 1080), (1280, 1024), (1280, 720), (1024, 768), (800, 600)]);
            edid_area[..edid::BLOCK].copy_from_slice(&block);
            if config.edid_extensions > 0 {
                edid_area[126] = config.edid_extensions;
                edid_area[127] = block[127].wrapping_sub(config.edid_extensions);
                edid_area[edid::BLOCK..2 * edid::BLOCK].copy_from_slice(&edid::empty_cta_extension());
            }
        }
        let mut dispi = [0u16; regs::DISPI_COUNT];
        dispi[regs::DISPI_ID] = regs::ID_LATEST;
        Ok(EmulatedDevice {
            inner: Arc::new(Inner {
                vram,
                dispi: Mutex::new(Dispi {
                    regs: dispi,
                    attribute_index_next: true,
                    // stdvga starts blanked until a driver sets the palette address source.
                    palette_enabled: !config.vga_ports,
                    byte_order: regs::QEXT_LITTLE_ENDIAN,
                }),
                edid: edid_area,
                state: AtomicU8::new(PRESENT),
                config,
            }),
        })
    }

    /// The device's configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Maps the two BARs, as a platform would: BAR0 (VRAM) and BAR2 (MMIO). Each keeps the device's
    /// memory alive; neither outlives it as valid memory once the device is removed.
    pub fn map_bars(&self) -> (Vram, Mmio<{ regs::MMIO_BYTES }>) {
        let owner = Box::new(Arc::clone(&self.inner));
        // SAFETY: the mapping covers `len` bytes for as long as `Inner` lives, which `owner` ensures;
        // the model's own scanout reads it only in atomic words (`HostMapping::words`), as the
        // `Vram` then does.
        let vram = unsafe { Vram::scanned_by_thread(self.inner.vram.base(), self.inner.vram.len(), owner) }
            .expect("an anonymous mapping is page-aligned, whole pages");
        let registers: Arc<dyn RegisterFile> = Arc::new(Registers(Arc::clone(&self.inner)));
        let mmio =
            Mmio::emulated(registers, regs::MMIO_BYTES).expect("the register file is exactly one MMIO BAR");
        (vram, mmio)
    }

    /// Removes the device: both BARs are revoked. Any later access through them crashes the process.
    pub fn remove(&self) {
        // Under the register lock, which `scanout` holds from its presence check to its last VRAM
        // read, so the model never reads VRAM that is being revoked.
        let _dispi = self.inner.dispi();
        self.inner.state.store(REMOVED, SeqCst);
        // SAFETY: the model reads its VRAM only while present, checked under the lock held here
        // (`scanout`), and the driver must no longer reach it: an access now is the guard bug this
        // tripwire turns into a crash.
        unsafe { self.inner.vram.revoke() };
    }

    /// Yanks the device out from under the driver: reads return `reads`, writes vanish, no notice.
    pub fn yank(&self, reads: YankedReads) {
        let state = match reads {
            YankedReads::Ones => YANKED_ONES,
            YankedReads::Zeros => YANKED_ZEROS,
        };
        let _ = self.inner.state.compare_exchange(PRESENT, state, SeqCst, SeqCst);
    }

    /// Whether the device is still there (neither yanked nor removed).
    pub fn is_present(&self) -> bool {
        self.inner.state.load(SeqCst) == PRESENT
    }

    /// A register's current value as the device holds it (for tests; no side effects).
    pub fn dispi(&self, index: usize) -> u16 {
        self.inner.dispi().regs[index]
    }

    /// What the device shows now, or `None` if it shows nothing valid (disabled, not 32 bpp, smaller
    /// than 64×64 or larger than VRAM, as bochs-display refuses) or is no longer present.
    /// A blanked VGA output shows black.
    pub fn scanout(&self) -> Option<Image> {
        let dispi = self.inner.dispi();
        if !self.is_present() {
            return None;
        }
        let r = &dispi.regs;
        let enabled = r[regs::DISPI_ENABLE] & regs::ENABLED != 0;
        let (width, height, stride) = (
            u32::from(r[regs::DISPI_XRES]),
            u32::from(r[regs::DISPI_YRES]),
            u32::from(r[regs::DISPI_VIRT_WIDTH]) * 4,
        );
        let base =
            (u32::from(r[regs::DISPI_Y_OFFSET]) * stride + u32::from(r[regs::DISPI_X_OFFSET]) * 4) as usize;
        let end = base + (height.saturating_sub(1) * stride + width * 4) as usize;
        if !enabled || r[regs::DISPI_BPP] != 32 || width < 64 || height < 64 || end > self.inner.vram.len() {
            return None;
        }
        let mut rgb = vec![0u8; (width * height * 3) as usize];
        if dispi.palette_enabled {
            let mut row = vec![0u8; (width * 4) as usize];
            for (y, out_row) in rgb.chunks_exact_mut((width * 3) as usize).enumerate() {
                words::load(self.inner.vram.words(), base + y * stride as usize, &mut row);
                for (out, pixel) in out_row.chunks_exact_mut(3).zip(row.chunks_exact(4)) {
                    // XRGB8888 little-endian in memory: B, G, R, X.
                    out.copy_from_slice(&[pixel[2], pixel[1], pixel[0]]);
                }
            }
        }
        Some(Image { width, height, rgb })
    }
}

impl Inner {
    fn dispi(&self) -> std::sync::MutexGuard<'_, Dispi> {
        self.dispi.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The MMIO BAR's behaviour: EDID, VGA ports, DISPI and the QEMU extension.
struct Registers(Arc<Inner>);

impl Registers {
    fn tripwire(&self, what: &str, offset: usize) -> ! {
        eprintln!(
            "emulated bochs: {what} at MMIO {offset:#x} after the device was removed: use after unplug"
        );
        std::process::abort();
    }
}

impl RegisterFile for Registers {
    fn read(&self, offset: usize, width: Width) -> u32 {
        let all_ones = match width {
            Width::U8 => 0xff,
            Width::U16 => 0xffff,
            Width::U32 => 0xffff_ffff,
        };
        match self.0.state.load(SeqCst) {
            PRESENT => {}
            YANKED_ONES => return all_ones,
            YANKED_ZEROS => return 0,
            _ => self.tripwire("read", offset),
        }
        let inner = &self.0;
        let mut dispi = inner.dispi();
        let bytes =
            |from: &[u8]| (0..width.bytes()).fold(0u32, |v, i| v | u32::from(from[offset + i]) << (8 * i));
        match offset {
            o if o < regs::EDID_BYTES => bytes(&inner.edid),
            o if (regs::VGA_PORTS..regs::VGA_PORTS + 0x20).contains(&o) && inner.config.vga_ports => {
                if o == regs::VGA_PORTS + 0x1a {
                    dispi.attribute_index_next = true; // reading input status 1 resets the flip-flop
                }
                0
            }
            o if (regs::DISPI..regs::DISPI + 2 * regs::DISPI_COUNT).contains(&o) && width == Width::U16 => {
                let index = (o - regs::DISPI) / 2;
                let getcaps = dispi.regs[regs::DISPI_ENABLE] & regs::GETCAPS != 0;
                u32::from(match index {
                    regs::DISPI_XRES if getcaps => regs::MAX_XRES,
                    regs::DISPI_YRES if getcaps => regs::MAX_YRES,
                    regs::DISPI_BPP if getcaps => 32,
                    regs::DISPI_VIDEO_MEMORY_64K => (inner.vram.len() >> 16) as u16,
                    _ => dispi.regs[index],
                })
            }
            regs::QEXT_SIZE if inner.config.revision >= 2 && width == Width::U32 => 8,
            regs::QEXT_BYTE_ORDER if inner.config.revision >= 2 && width == Width::U32 => dispi.byte_order,
            _ => all_ones, // unassigned MMIO reads as all ones
        }
    }

    fn write(&self, offset: usize, width: Width, value: u32) {
        match self.0.state.load(SeqCst) {
            PRESENT => {}
            YANKED_ONES | YANKED_ZEROS => return,
            _ => self.tripwire("write", offset),
        }
        let inner = &self.0;
        let mut dispi = inner.dispi();
        match offset {
            o if o == regs::VGA_PORTS && inner.config.vga_ports && width == Width::U8 => {
                if dispi.attribute_index_next {
                    dispi.palette_enabled = value & 0x20 != 0;
                }
                dispi.attribute_index_next = !dispi.attribute_index_next;
            }
            o if (regs::DISPI..regs::DISPI + 2 * regs::DISPI_COUNT).contains(&o) && width == Width::U16 => {
                dispi.write(inner.vram.len(), (o - regs::DISPI) / 2, value as u16);
            }
            regs::QEXT_BYTE_ORDER
                if inner.config.revision >= 2
                    && width == Width::U32
                    && (value == regs::QEXT_LITTLE_ENDIAN || value == regs::QEXT_BIG_ENDIAN) =>
            {
                dispi.byte_order = value;
            }
            _ => {} // read-only or unassigned: ignored, as QEMU does
        }
    }
}

impl Dispi {
    /// QEMU's `vbe_ioport_write_data` for the registers a Bochs driver uses.
    fn write(&mut self, vram_len: usize, index: usize, value: u16) {
        let r = &mut self.regs;
        match index {
            regs::DISPI_ID => {
                if (regs::ID_FIRST..=regs::ID_LATEST).contains(&value) {
                    r[index] = value;
                }
            }
            regs::DISPI_VIRT_HEIGHT | regs::DISPI_VIDEO_MEMORY_64K => {} // computed by the device
            regs::DISPI_ENABLE => {
                let was_enabled = r[index] & regs::ENABLED != 0;
                if value & regs::ENABLED != 0 && !was_enabled {
                    r[regs::DISPI_VIRT_WIDTH] = 0;
                    r[regs::DISPI_X_OFFSET] = 0;
                    r[regs::DISPI_Y_OFFSET] = 0;
                }
                r[index] = value;
                self.fixup(vram_len);
            }
            regs::DISPI_BANK => r[index] = value,
            index if index < regs::DISPI_COUNT => {
                r[index] = value;
                self.fixup(vram_len);
            }
            _ => {}
        }
    }

    /// QEMU's `vbe_fixup_regs`: clamps an enabled mode into what VRAM can show.
    fn fixup(&mut self, vram_len: usize) {
        let r = &mut self.regs;
        if r[regs::DISPI_ENABLE] & regs::ENABLED == 0 {
            return;
        }
        let bits = match r[regs::DISPI_BPP] {
            bpp @ (4 | 8 | 16 | 24 | 32) => u32::from(bpp),
            15 => 16,
            _ => {
                r[regs::DISPI_BPP] = 8;
                8
            }
        };
        r[regs::DISPI_XRES] = (r[regs::DISPI_XRES] & !7).clamp(8, regs::MAX_XRES);
        r[regs::DISPI_VIRT_WIDTH] =
            (r[regs::DISPI_VIRT_WIDTH] & !7).min(regs::MAX_XRES).max(r[regs::DISPI_XRES]);
        let line = u32::from(r[regs::DISPI_VIRT_WIDTH]) * bits / 8;
        let max_y = (vram_len as u32 / line).min(u32::from(u16::MAX)) as u16;
        r[regs::DISPI_YRES] = r[regs::DISPI_YRES].clamp(1, regs::MAX_YRES).min(max_y);
        r[regs::DISPI_X_OFFSET] = r[regs::DISPI_X_OFFSET].min(regs::MAX_XRES);
        r[regs::DISPI_Y_OFFSET] = r[regs::DISPI_Y_OFFSET].min(regs::MAX_YRES);
        let frame = u32::from(r[regs::DISPI_YRES]) * line;
        let x_bytes = u32::from(r[regs::DISPI_X_OFFSET]) * bits / 8;
        if x_bytes + u32::from(r[regs::DISPI_Y_OFFSET]) * line + frame > vram_len as u32 {
            r[regs::DISPI_Y_OFFSET] = 0;
            if x_bytes + frame > vram_len as u32 {
                r[regs::DISPI_X_OFFSET] = 0;
            }
        }
        r[regs::DISPI_VIRT_HEIGHT] = max_y;
    }
}
