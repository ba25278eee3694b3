//! The test patterns the end-to-end clients draw and the host compares pixel for pixel: the QEMU
//! Linux-guest scenario (`guest`) and the Redox test client (`tests/redox/client`,
//! which includes this file by path, so it must stay free of crate imports).

/// The colour (red, green, blue) of pixel (`x`, `y`) in test pattern `number`. Every channel of
/// every pixel depends on its coordinates and differs between patterns, so a wrong pitch, offset,
/// byte order or device shows up in an exact comparison.
///
/// ```
/// use displayd_testkit::test_pattern::test_pattern;
/// assert_ne!(test_pattern(1, 10, 20), test_pattern(2, 10, 20));
/// assert_ne!(test_pattern(1, 10, 20), test_pattern(3, 10, 20));
/// assert_ne!(test_pattern(1, 10, 20), test_pattern(1, 11, 20));
/// assert_ne!(test_pattern(1, 10, 20), test_pattern(1, 10, 21));
/// ```
pub fn test_pattern(number: u32, x: u32, y: u32) -> [u8; 3] {
    let key = (number as u8).wrapping_mul(0x5b);
    let tile = (x >> 8) as u8 ^ ((y >> 8) as u8) << 4;
    [x as u8 ^ key, y as u8 ^ key.rotate_left(3), tile ^ (x as u8 >> 5) ^ key.rotate_left(5)]
}

/// Test pattern `number` as a `width`×`height` XRGB8888 frame (little-endian words: B, G, R, X).
pub fn pattern_frame(number: u32, width: u32, height: u32) -> Vec<u8> {
    let mut frame = Vec::with_capacity(width as usize * height as usize * 4);
    for y in 0..height {
        for x in 0..width {
            let [r, g, b] = test_pattern(number, x, y);
            frame.extend_from_slice(&[b, g, r, 0]);
        }
    }
    frame
}
