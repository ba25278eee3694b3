//! EDID 1.4 base blocks: parsing a monitor's mode list, and encoding one (the emulated device's).
//!
//! Guarantees: [`parse`] never panics on any input; it refuses a blob whose header or checksum is
//! wrong or that is shorter than one block, and otherwise returns the modes the blob describes,
//! the preferred (first detailed) timing first, without duplicates.

/// One display mode with its timing, in the shape KMS mode records need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mode {
    /// Pixel clock in kHz.
    pub clock_khz: u32,
    /// Visible pixels per line.
    pub hdisplay: u16,
    /// Pixel at which horizontal sync starts.
    pub hsync_start: u16,
    /// Pixel at which horizontal sync ends.
    pub hsync_end: u16,
    /// Pixels per line including blanking.
    pub htotal: u16,
    /// Visible lines.
    pub vdisplay: u16,
    /// Line at which vertical sync starts.
    pub vsync_start: u16,
    /// Line at which vertical sync ends.
    pub vsync_end: u16,
    /// Lines per frame including blanking.
    pub vtotal: u16,
    /// Whether the monitor prefers this mode.
    pub preferred: bool,
}

impl Mode {
    /// A 60 Hz mode with reduced-blanking timing synthesised for `width`×`height` (for sources that
    /// give only a size: standard and established timings, the no-EDID fallback list).
    pub fn synthesized(width: u16, height: u16) -> Mode {
        let htotal = width.saturating_add(160);
        let vtotal = height.saturating_add(height / 30 + 6);
        // In 10 kHz steps, the resolution EDID stores clocks in.
        let clock_khz =
            (u32::from(htotal).saturating_mul(u32::from(vtotal)).saturating_mul(60)).div_ceil(10_000) * 10;
        Mode {
            clock_khz,
            hdisplay: width,
            hsync_start: width.saturating_add(48),
            hsync_end: width.saturating_add(80),
            htotal,
            vdisplay: height,
            vsync_start: height.saturating_add(3),
            vsync_end: height.saturating_add(9),
            vtotal,
            preferred: false,
        }
    }

    /// Refresh rate in Hz, rounded.
    pub fn refresh_hz(&self) -> u32 {
        let pixels = u64::from(self.htotal) * u64::from(self.vtotal);
        if pixels == 0 {
            return 0;
        }
        let hz = (u64::from(self.clock_khz) * 1000 + pixels / 2) / pixels;
        u32::try_from(hz).unwrap_or(u32::MAX)
    }
}

/// Why a blob is not a usable EDID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EdidError {
    /// Shorter than one 128-byte block.
    Truncated,
    /// The 8-byte header is not `00 FF FF FF FF FF FF 00` (also: no EDID at all, all zeros).
    BadHeader,
    /// The block's bytes do not sum to zero.
    BadChecksum,
}

/// A parsed EDID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edid {
    /// The three-letter PNP manufacturer id (e.g. `RHT` for QEMU).
    pub manufacturer: [u8; 3],
    /// Modes, preferred first.
    pub modes: Vec<Mode>,
}

const HEADER: [u8; 8] = [0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00];
/// Bytes in one EDID block.
pub const BLOCK: usize = 128;

/// Established timings bits (bytes 35–37) for the sizes displayd can scan out at 32 bpp.
const ESTABLISHED: [(usize, u8, u16, u16); 5] = [
    (35, 0x20, 640, 480),
    (35, 0x01, 800, 600),
    (36, 0x08, 1024, 768),
    (36, 0x01, 1280, 1024),
    (35, 0x80, 720, 400),
];

/// Parses the base block of `blob`.
pub fn parse(blob: &[u8]) -> Result<Edid, EdidError> {
    let block: &[u8; BLOCK] =
        blob.get(..BLOCK).and_then(|b| b.try_into().ok()).ok_or(EdidError::Truncated)?;
    if block[..8] != HEADER {
        return Err(EdidError::BadHeader);
    }
    if block.iter().fold(0u8, |sum, &b| sum.wrapping_add(b)) != 0 {
        return Err(EdidError::BadChecksum);
    }
    let id = u16::from_be_bytes([block[8], block[9]]);
    let letter = |shift: u16| b'@' + ((id >> shift) & 0x1f) as u8;
    let mut modes: Vec<Mode> = Vec::new();
    let mut add = |mode: Mode| {
        if !modes.iter().any(|m| m.hdisplay == mode.hdisplay && m.vdisplay == mode.vdisplay) {
            modes.push(mode);
        }
    };
    for (index, descriptor) in block[54..126].chunks_exact(18).enumerate() {
        if let Some(mut mode) = detailed_timing(descriptor) {
            mode.preferred = index == 0; // EDID 1.4: the first detailed timing is the preferred one
            add(mode);
        }
    }
    for pair in block[38..54].chunks_exact(2) {
        if let Some((w, h)) = standard_timing(pair[0], pair[1]) {
            add(Mode::synthesized(w, h));
        }
    }
    for (byte, bit, w, h) in ESTABLISHED {
        if block[byte] & bit != 0 {
            add(Mode::synthesized(w, h));
        }
    }
    Ok(Edid { manufacturer: [letter(10), letter(5), letter(0)], modes })
}

fn detailed_timing(d: &[u8]) -> Option<Mode> {
    let clock = u16::from_le_bytes([d[0], d[1]]);
    if clock == 0 {
        return None; // a display descriptor (name, range limits, ...), not a timing
    }
    let hi = |byte: u8, shift: u8| u16::from((byte >> shift) & 0x0f);
    let hactive = u16::from(d[2]) | hi(d[4], 4) << 8;
    let hblank = u16::from(d[3]) | hi(d[4], 0) << 8;
    let vactive = u16::from(d[5]) | hi(d[7], 4) << 8;
    let vblank = u16::from(d[6]) | hi(d[7], 0) << 8;
    let hsync_offset = u16::from(d[8]) | u16::from(d[11] >> 6 & 3) << 8;
    let hsync_width = u16::from(d[9]) | u16::from(d[11] >> 4 & 3) << 8;
    let vsync_offset = u16::from(d[10] >> 4) | u16::from(d[11] >> 2 & 3) << 4;
    let vsync_width = u16::from(d[10] & 0x0f) | u16::from(d[11] & 3) << 4;
    if hactive == 0 || vactive == 0 {
        return None;
    }
    Some(Mode {
        clock_khz: u32::from(clock) * 10,
        hdisplay: hactive,
        hsync_start: hactive + hsync_offset,
        hsync_end: hactive + hsync_offset + hsync_width,
        htotal: hactive + hblank,
        vdisplay: vactive,
        vsync_start: vactive + vsync_offset,
        vsync_end: vactive + vsync_offset + vsync_width,
        vtotal: vactive + vblank,
        preferred: false,
    })
}

fn standard_timing(b0: u8, b1: u8) -> Option<(u16, u16)> {
    if (b0 == 0x01 && b1 == 0x01) || b0 == 0 {
        return None; // unused slot
    }
    let width = (u16::from(b0) + 31) * 8;
    let height = match b1 >> 6 {
        0 => width * 10 / 16,
        1 => width * 3 / 4,
        2 => width * 4 / 5,
        _ => width * 9 / 16,
    };
    Some((width, height))
}

/// Makes a base block declare no extension blocks (its checksum fixed to match).
pub fn drop_extensions(block: &mut [u8]) {
    if block.len() >= BLOCK {
        block[126] = 0;
        block[127] = 0u8.wrapping_sub(block[..127].iter().fold(0u8, |s, &x| s.wrapping_add(x)));
    }
}

/// An empty CTA-861 extension block (tag 0x02, revision 3, no data blocks), for the emulated
/// device's monitors that declare one.
pub fn empty_cta_extension() -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    b[..4].copy_from_slice(&[0x02, 0x03, 0x04, 0x00]);
    b[127] = 0u8.wrapping_sub(b[..127].iter().fold(0u8, |s, &x| s.wrapping_add(x)));
    b
}

/// Encodes a base block for a monitor whose preferred mode is `preferred`, also listing the
/// standard timings `others` (each width a multiple of 8 from 256 to 2288, aspect 16:10, 4:3, 5:4
/// or 16:9; at most 8, others ignored). Manufacturer `RHT`, named "QEMU Monitor", like QEMU's.
pub fn encode(preferred: Mode, others: &[(u16, u16)]) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    b[..8].copy_from_slice(&HEADER);
    let id = (u16::from(b'R' - b'@') << 10) | (u16::from(b'H' - b'@') << 5) | u16::from(b'T' - b'@');
    b[8..10].copy_from_slice(&id.to_be_bytes());
    b[10..12].copy_from_slice(&0x1234u16.to_le_bytes());
    b[17] = (2014 - 1990) as u8; // year of manufacture, counted from 1990
    b[18] = 1; // EDID 1.4
    b[19] = 4;
    b[20] = 0xa5; // digital input, 8 bits per colour, DisplayPort
    b[21] = 53; // screen size in cm (about 24")
    b[22] = 30;
    b[23] = 120; // gamma 2.2
    b[24] = 0x06; // sRGB default, preferred timing includes native format
    b[38..54].fill(0x01);
    let mut slot = 38;
    for &(w, h) in others.iter().take(8) {
        let aspect = [(16, 10, 0u8), (4, 3, 1), (5, 4, 2), (16, 9, 3)]
            .into_iter()
            .find(|&(x, y, _)| u32::from(w) * y == u32::from(h) * x)
            .map(|(_, _, code)| code);
        if let (Some(aspect), true) = (aspect, w % 8 == 0 && (256..=2288).contains(&w)) {
            b[slot] = (w / 8 - 31) as u8;
            b[slot + 1] = aspect << 6; // refresh 60 Hz
            slot += 2;
        }
    }
    b[54..72].copy_from_slice(&detailed_descriptor(&preferred));
    b[72..90].copy_from_slice(&text_descriptor(0xfc, b"QEMU Monitor"));
    b[90..108].copy_from_slice(&text_descriptor(0xff, b"displayd-emu"));
    b[108..126].copy_from_slice(&text_descriptor(0x10, b"")); // dummy
    b[127] = 0u8.wrapping_sub(b[..127].iter().fold(0u8, |s, &x| s.wrapping_add(x)));
    b
}

fn detailed_descriptor(m: &Mode) -> [u8; 18] {
    let hblank = m.htotal - m.hdisplay;
    let vblank = m.vtotal - m.vdisplay;
    let (hso, hsw) = (m.hsync_start - m.hdisplay, m.hsync_end - m.hsync_start);
    let (vso, vsw) = (m.vsync_start - m.vdisplay, m.vsync_end - m.vsync_start);
    let lo = |v: u16| (v & 0xff) as u8;
    let mut d = [0u8; 18];
    d[..2].copy_from_slice(&((m.clock_khz / 10) as u16).to_le_bytes());
    d[2] = lo(m.hdisplay);
    d[3] = lo(hblank);
    d[4] = ((m.hdisplay >> 8) as u8) << 4 | (hblank >> 8) as u8;
    d[5] = lo(m.vdisplay);
    d[6] = lo(vblank);
    d[7] = ((m.vdisplay >> 8) as u8) << 4 | (vblank >> 8) as u8;
    d[8] = lo(hso);
    d[9] = lo(hsw);
    d[10] = ((vso & 0x0f) as u8) << 4 | (vsw & 0x0f) as u8;
    d[11] = ((hso >> 8) as u8) << 6 | ((hsw >> 8) as u8) << 4 | ((vso >> 4) as u8) << 2 | (vsw >> 4) as u8;
    d[17] = 0x1e; // digital separate sync, both polarities positive
    d
}

fn text_descriptor(tag: u8, text: &[u8]) -> [u8; 18] {
    let mut d = [0u8; 18];
    d[3] = tag;
    let body = &mut d[5..];
    body.fill(b' ');
    let len = text.len().min(13);
    body[..len].copy_from_slice(&text[..len]);
    if len < 13 && !text.is_empty() {
        body[len] = b'\n';
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qemu_like() -> [u8; BLOCK] {
        let mut preferred = Mode::synthesized(1280, 800);
        preferred.preferred = true;
        encode(preferred, &[(1920, 1080), (1024, 768), (1280, 1024), (1280, 800)])
    }

    #[test]
    fn a_good_blob_lists_the_preferred_mode_first_then_the_rest() {
        let edid = parse(&qemu_like()).unwrap();
        assert_eq!(&edid.manufacturer, b"RHT");
        let sizes: Vec<_> = edid.modes.iter().map(|m| (m.hdisplay, m.vdisplay, m.preferred)).collect();
        assert_eq!(sizes, [(1280, 800, true), (1920, 1080, false), (1024, 768, false), (1280, 1024, false)]);
        assert_eq!(
            edid.modes[0],
            Mode { preferred: true, ..Mode::synthesized(1280, 800) },
            "timing round-trips"
        );
        assert_eq!(edid.modes[0].refresh_hz(), 60);
    }

    #[test]
    fn a_corrupt_header_a_bad_checksum_a_short_blob_and_no_edid_are_refused() {
        let mut blob = qemu_like();
        blob[1] = 0;
        assert_eq!(parse(&blob), Err(EdidError::BadHeader));
        let mut blob = qemu_like();
        blob[60] ^= 0x40;
        assert_eq!(parse(&blob), Err(EdidError::BadChecksum));
        assert_eq!(parse(&qemu_like()[..127]), Err(EdidError::Truncated));
        assert_eq!(parse(&[]), Err(EdidError::Truncated));
        assert_eq!(parse(&[0; 256]), Err(EdidError::BadHeader));
    }

    #[test]
    fn established_timings_and_arbitrary_bytes_never_panic() {
        let mut blob = qemu_like();
        blob[35] = 0x21; // 640x480 and 800x600
        blob[127] = blob[127].wrapping_sub(0x21);
        let sizes: Vec<_> = parse(&blob).unwrap().modes.iter().map(|m| (m.hdisplay, m.vdisplay)).collect();
        assert!(sizes.contains(&(640, 480)) && sizes.contains(&(800, 600)));
        let mut state = 0x1234_5678_u32;
        for _ in 0..2000 {
            let mut blob = qemu_like();
            for byte in blob[8..127].iter_mut() {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                *byte = (state >> 24) as u8;
            }
            blob[127] = 0u8.wrapping_sub(blob[..127].iter().fold(0u8, |s, &x| s.wrapping_add(x)));
            let _ = parse(&blob);
        }
    }
}
