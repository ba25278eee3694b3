//! The guest's initramfs: a "newc" cpio archive (the format the Linux kernel unpacks), written
//! here because the machine has no `cpio` binary.
//!
//! Each entry is a 110-byte ASCII header (magic `070701`, then thirteen 8-digit hex fields), the
//! NUL-terminated name, padding to 4 bytes, the data, padding to 4 bytes; a `TRAILER!!!` entry ends
//! the archive.

/// A newc archive being built.
#[derive(Default)]
pub struct Archive {
    bytes: Vec<u8>,
    next_inode: u32,
}

const DIRECTORY: u32 = 0o040_000;
const REGULAR: u32 = 0o100_000;

impl Archive {
    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.next_inode += 1;
        let size = u32::try_from(data.len()).expect("an initramfs file under 4 GiB");
        let name_size = name.len() as u32 + 1;
        // ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor,
        // namesize, check
        let fields = [self.next_inode, mode, 0, 0, 1, 0, size, 0, 0, 0, 0, name_size, 0];
        self.bytes.extend_from_slice(b"070701");
        for field in fields {
            self.bytes.extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }

    /// Adds a directory (`bin`, not `/bin`).
    pub fn directory(&mut self, name: &str) {
        self.entry(name, DIRECTORY | 0o755, &[]);
    }

    /// Adds a file with permissions `permissions` (e.g. 0o755).
    pub fn file(&mut self, name: &str, permissions: u32, data: &[u8]) {
        self.entry(name, REGULAR | permissions, data);
    }

    /// The finished archive.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[]);
        self.bytes
    }
}

#[test]
fn entries_follow_the_newc_layout() {
    let mut archive = Archive::default();
    archive.directory("bin");
    archive.file("init", 0o755, b"#!x\n");
    let bytes = archive.finish();
    assert_eq!(&bytes[..6], b"070701");
    assert_eq!(&bytes[6..14], b"00000001", "inode");
    assert_eq!(&bytes[14..22], b"000041ed", "directory, 0755");
    assert_eq!(&bytes[110..114], b"bin\0");
    let init = 116; // 110 + "bin\0" = 114, padded to 116; no data
    assert_eq!(&bytes[init + 14..init + 22], b"000081ed", "regular file, 0755");
    assert_eq!(&bytes[init + 54..init + 62], b"00000004", "file size");
    assert_eq!(&bytes[init + 110..init + 115], b"init\0");
    assert_eq!(&bytes[init + 116..init + 120], b"#!x\n", "data after padding to 4");
    assert!(bytes.windows(11).any(|w| w == b"TRAILER!!!\0"));
    assert_eq!(bytes.len() % 4, 0);
}
