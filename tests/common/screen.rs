//! QEMU screendumps: reading them, keeping them as PNG.

use std::path::Path;

/// Reads a binary PPM (P6, 8-bit), as QEMU's screendump writes it.
pub fn read_ppm(path: &Path) -> Result<(u32, u32, Vec<u8>), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut fields = Vec::new();
    let mut at = 0;
    while fields.len() < 4 {
        while bytes.get(at).is_some_and(u8::is_ascii_whitespace) {
            at += 1;
        }
        let start = at;
        while bytes.get(at).is_some_and(|b| !b.is_ascii_whitespace()) {
            at += 1;
        }
        fields.push(String::from_utf8_lossy(&bytes[start..at]).into_owned());
        if start == at {
            return Err(format!("{}: truncated PPM header", path.display()));
        }
    }
    let number = |i: usize| fields[i].parse::<u32>().map_err(|_| format!("PPM header field {:?}", fields[i]));
    let (width, height, max) = (number(1)?, number(2)?, number(3)?);
    if fields[0] != "P6" || max != 255 {
        return Err(format!("{}: not an 8-bit P6 PPM", path.display()));
    }
    let pixels = bytes.get(at + 1..).unwrap_or_default().to_vec();
    if Some(pixels.len() as u64) != u64::from(width).checked_mul(u64::from(height) * 3) {
        return Err(format!("{}: {} bytes of pixels for {width}x{height}", path.display(), pixels.len()));
    }
    Ok((width, height, pixels))
}

pub fn save_png(path: &Path, width: u32, height: u32, rgb: &[u8]) -> Result<(), String> {
    let file = std::fs::File::create(path).map_err(|e| e.to_string())?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
    writer.write_image_data(rgb).map_err(|e| e.to_string())
}

#[test]
fn the_ppm_reader_takes_qemus_screendump_format_and_refuses_others() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join("displayd-ppm-test.ppm");
    std::fs::write(&path, b"P6\n2 1\n255\n\x01\x02\x03\x04\x05\x06").unwrap();
    assert_eq!(read_ppm(&path).unwrap(), (2, 1, vec![1, 2, 3, 4, 5, 6]));
    std::fs::write(&path, b"P6\n2 1\n255\n\x01\x02").unwrap();
    assert!(read_ppm(&path).is_err(), "short pixel data");
    std::fs::write(&path, b"P3\n1 1\n255\n1 2 3").unwrap();
    assert!(read_ppm(&path).is_err(), "ASCII PPM");
    std::fs::remove_file(&path).unwrap();
}
