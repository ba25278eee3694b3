//! A real PCI function on Linux (issue #7's platform): find the Bochs adapter under sysfs, enable it,
//! and map its BARs (`resource0`: VRAM, `resource2`: MMIO) into the driver's revocable hardware.
//!
//! Guarantees: only functions whose `vendor`/`device` files name a Bochs adapter are returned; a
//! function that vanishes mid-scan or has unreadable attributes is skipped (with a log line naming
//! the file), never the end of the scan; each BAR mapping is unmapped exactly once, when the
//! hardware that owns it is dropped (at unplug).

use std::io;
use std::path::{Path, PathBuf};

use crate::device::bochs::{Hardware, PciId, SUPPORTED_IDS};
use crate::device::host_mapping::HostMapping;
use crate::device::mmio::{Mmio, Vram};
use crate::device::regs::MMIO_BYTES;

/// A PCI function found in sysfs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciFunction {
    /// Its sysfs directory (`/sys/bus/pci/devices/0000:00:02.0`).
    pub path: PathBuf,
    /// Its slot name (`0000:00:02.0`, the uevent's PCI_SLOT_NAME).
    pub slot: String,
    /// Its ids.
    pub id: PciId,
}

fn invalid(path: &Path, what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{}: {what}", path.display()))
}

/// Reads a sysfs attribute holding one hex number (`0x1234\n`).
fn read_hex(path: &Path) -> io::Result<u32> {
    let text = std::fs::read_to_string(path)?;
    let digits = text.trim().trim_start_matches("0x");
    u32::from_str_radix(digits, 16).map_err(|_| invalid(path, "not a hex number"))
}

/// The Bochs adapters under `sysfs` (normally `/sys`), in slot order. Only an unreadable
/// `bus/pci/devices` folder is an error.
pub fn find_bochs(sysfs: &Path) -> io::Result<Vec<PciFunction>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(sysfs.join("bus/pci/devices"))? {
        let Ok(entry) = entry else { continue };
        match PciFunction::bochs_at(&entry.path()) {
            Ok(function) => found.extend(function),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {} // removed mid-scan
            Err(error) => log::warn!("pci: skipped {}: {error}", entry.path().display()),
        }
    }
    found.sort_by(|a, b| a.slot.cmp(&b.slot));
    Ok(found)
}

impl PciFunction {
    /// The function whose sysfs directory is `path`, if it is a Bochs adapter.
    pub fn bochs_at(path: &Path) -> io::Result<Option<PciFunction>> {
        let attr = |name: &str| read_hex(&path.join(name));
        let (vendor, device) = (attr("vendor")? as u16, attr("device")? as u16);
        if !SUPPORTED_IDS.contains(&(vendor, device)) {
            return Ok(None);
        }
        let class = attr("class")?;
        let id = PciId {
            vendor,
            device,
            class: (class >> 16) as u8,
            subclass: (class >> 8) as u8,
            revision: attr("revision")? as u8,
        };
        let slot = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Ok(Some(PciFunction { path: path.to_path_buf(), slot, id }))
    }

    /// Where BAR `bar` starts in the physical address space, from the `resource` table; 0 while the
    /// kernel has not assigned it.
    pub fn bar_address(&self, bar: usize) -> io::Result<u64> {
        let path = self.path.join("resource");
        let table = std::fs::read_to_string(&path)?;
        let line = table.lines().nth(bar).ok_or_else(|| invalid(&path, "too few lines"))?;
        let start = line.split_whitespace().next().unwrap_or_default();
        u64::from_str_radix(start.trim_start_matches("0x"), 16)
            .map_err(|_| invalid(&path, "not a hex number"))
    }

    /// Whether both BARs can be mapped yet: the kernel has given them addresses and made their
    /// `resource0`/`resource2` files. A hot-plugged function's `add@` uevent can come before either
    /// (enabling it before the addresses fails with EINVAL; the files follow a little later).
    pub fn bars_ready(&self) -> io::Result<bool> {
        let file = |bar: u8| self.path.join(format!("resource{bar}")).exists();
        Ok(self.bar_address(0)? != 0 && self.bar_address(2)? != 0 && file(0) && file(2))
    }

    /// Turns on memory decoding if the function is disabled (`enable` reads 0).
    pub fn enable(&self) -> io::Result<()> {
        let path = self.path.join("enable");
        if std::fs::read_to_string(&path)?.trim() == "0" {
            std::fs::write(&path, "1")?;
        }
        Ok(())
    }

    /// Maps both BARs.
    pub fn map_bars(&self) -> io::Result<Hardware> {
        let vram = HostMapping::of_file(&self.path.join("resource0"))?;
        let mmio = HostMapping::of_file(&self.path.join("resource2"))?;
        let (vram_base, vram_len) = (vram.base(), vram.len());
        let (mmio_base, mmio_len) = (mmio.base(), mmio.len());
        // SAFETY: each mapping covers its length and is owned by the region made from it, so it stays
        // mapped for the region's life; the driver reaches it only through that region.
        let vram = unsafe { Vram::mapped(vram_base, vram_len, Box::new(vram)) };
        // SAFETY: as above.
        let mmio = unsafe { Mmio::<MMIO_BYTES>::mapped(mmio_base, mmio_len, Box::new(mmio)) }
            .ok_or_else(|| invalid(&self.path.join("resource2"), "smaller than the Bochs MMIO BAR"))?;
        Ok(Hardware { mmio, vram })
    }
}

/// A stand-in sysfs tree for tests: PCI functions as directories of attribute files, with plain
/// files as BARs (the MMIO one holding the registers a probe reads; writes stick, like RAM).
#[cfg(test)]
pub(crate) mod fake_sysfs {
    use super::*;
    use crate::device::regs::{DISPI, DISPI_ID, DISPI_VIDEO_MEMORY_64K, ID_LATEST};
    use std::fs::File;

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

    /// Adds function `slot` with these ids (a Bochs one gets 4 MiB of VRAM) and returns its path.
    pub fn add(root: &Path, slot: &str, vendor: u16, device: u16) -> PathBuf {
        let dir = root.join("bus/pci/devices").join(slot);
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::bochs::{Bochs, DeviceError, Options, Rect, Removal};

    #[test]
    fn finds_enables_and_maps_a_bochs_function_and_unmaps_at_unplug() {
        let root = fake_sysfs::with_one(0x1234, 0x1111);
        let found = find_bochs(&root).unwrap();
        assert_eq!(found.len(), 1, "only the Bochs function");
        let function = &found[0];
        assert_eq!(function.slot, "0000:00:02.0");
        assert_eq!(
            function.id,
            PciId { vendor: 0x1234, device: 0x1111, class: 3, subclass: 0x80, revision: 2 }
        );
        assert!(function.bars_ready().unwrap());
        fake_sysfs::assign_bars(&function.path, false);
        assert!(!function.bars_ready().unwrap(), "an add@ uevent can come before the addresses");
        fake_sysfs::assign_bars(&function.path, true);
        std::fs::rename(function.path.join("resource2"), function.path.join("resource2.later")).unwrap();
        assert!(!function.bars_ready().unwrap(), "and before the resource files");
        std::fs::rename(function.path.join("resource2.later"), function.path.join("resource2")).unwrap();
        function.enable().unwrap();
        assert_eq!(std::fs::read_to_string(function.path.join("enable")).unwrap(), "1");
        let bochs = Bochs::probe(function.id, function.map_bars().unwrap(), Options::default()).unwrap();
        assert_eq!(bochs.vram_bytes(), 4 << 20);
        bochs.set_mode(640, 480).unwrap();
        bochs.flush(&[7u8; 640 * 4], 640 * 4, Rect { x: 0, y: 0, width: 640, height: 1 }).unwrap();
        let vram = std::fs::read(function.path.join("resource0")).unwrap();
        assert!(vram[..640 * 4].iter().all(|&b| b == 7), "the flush reached the BAR");
        let resource0 = function.path.join("resource0");
        let maps = || std::fs::read_to_string("/proc/self/maps").unwrap();
        assert!(maps().contains(resource0.to_str().unwrap()), "VRAM is mapped while bound");
        assert!(bochs.unplug(Removal::Orderly));
        assert_eq!(bochs.set_mode(640, 480), Err(DeviceError::Gone));
        assert!(!maps().contains(resource0.to_str().unwrap()), "the unplug unmapped VRAM");
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn other_devices_and_broken_attributes_are_not_taken() {
        let root = fake_sysfs::with_one(0x1af4, 0x1050);
        assert!(find_bochs(&root).unwrap().is_empty());
        fake_sysfs::add(&root, "0000:00:03.0", 0x1234, 0x1111);
        std::fs::write(root.join("bus/pci/devices/0000:00:02.0/vendor"), "nonsense").unwrap();
        let found = find_bochs(&root).unwrap();
        assert_eq!(found.len(), 1, "the broken function is skipped, the scan goes on");
        assert_eq!(found[0].slot, "0000:00:03.0");
        let error = PciFunction::bochs_at(&root.join("bus/pci/devices/0000:00:02.0")).unwrap_err();
        assert!(error.to_string().contains("vendor"), "{error}");
        assert!(find_bochs(Path::new("/nonexistent")).is_err());
        std::fs::remove_dir_all(root).unwrap();
    }
}
