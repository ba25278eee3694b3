//! A stand-in sysfs tree for tests of displayd's Linux platform: PCI functions as directories of
//! attribute files, with plain files as BARs (the MMIO one holding the registers a probe reads;
//! writes stick, like RAM). Every tree is a fresh folder under the temporary directory.

use std::fs::File;
use std::path::{Path, PathBuf};

use displayd::device::regs::{DISPI, DISPI_ID, DISPI_VIDEO_MEMORY_64K, ID_LATEST, MMIO_BYTES};

/// A new, empty tree.
pub fn tree() -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
    static N: AtomicU32 = AtomicU32::new(0);
    let root = std::env::temp_dir().join(format!(
        "displayd-sysfs-{}-{}",
        std::process::id(),
        N.fetch_add(1, Relaxed)
    ));
    std::fs::create_dir_all(root.join("bus/pci/devices")).unwrap();
    root
}

/// Adds function `address` with these ids (a Bochs one gets 4 MiB of VRAM) and returns its path.
pub fn add(root: &Path, address: &str, vendor: u16, device: u16) -> PathBuf {
    let dir = root.join("bus/pci/devices").join(address);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("vendor"), format!("0x{vendor:04x}\n")).unwrap();
    std::fs::write(dir.join("device"), format!("0x{device:04x}\n")).unwrap();
    std::fs::write(dir.join("class"), "0x038000\n").unwrap();
    std::fs::write(dir.join("revision"), "0x02\n").unwrap();
    std::fs::write(dir.join("enable"), "0\n").unwrap();
    assign_bars(&dir, true);
    File::create(dir.join("resource0")).unwrap().set_len(4 << 20).unwrap();
    let mut mmio = vec![0u8; MMIO_BYTES];
    mmio[DISPI + 2 * DISPI_ID..][..2].copy_from_slice(&ID_LATEST.to_le_bytes());
    mmio[DISPI + 2 * DISPI_VIDEO_MEMORY_64K..][..2].copy_from_slice(&64u16.to_le_bytes());
    std::fs::write(dir.join("resource2"), mmio).unwrap();
    dir
}

/// Writes the `resource` table: BAR 0 and 2 at addresses, or (`false`) not yet assigned.
pub fn assign_bars(dir: &Path, assigned: bool) {
    let (vram, mmio) = if assigned { (0xfb00_0000u64, 0xfe80_8000u64) } else { (0, 0) };
    let line = |start: u64, len: u64, flags: u32| match start {
        0 => format!("0x0000000000000000 0x{:016x} 0x{flags:016x}\n", len - 1),
        _ => format!("0x{start:016x} 0x{:016x} 0x{flags:016x}\n", start + len - 1),
    };
    let empty = "0x0000000000000000 0x0000000000000000 0x0000000000000000\n";
    let table = line(vram, 16 << 20, 0x14220c) + empty + &line(mmio, 4096, 0x40200) + &empty.repeat(10);
    // Replaced whole, as sysfs shows it: a reader never sees a half-written table.
    std::fs::write(dir.join("resource.new"), table).unwrap();
    std::fs::rename(dir.join("resource.new"), dir.join("resource")).unwrap();
}

/// A tree holding one function with these ids at 0000:00:02.0, beside a host bridge.
pub fn with_one(vendor: u16, device: u16) -> PathBuf {
    let root = tree();
    add(&root, "0000:00:01.0", 0x8086, 0x1237);
    add(&root, "0000:00:02.0", vendor, device);
    root
}
