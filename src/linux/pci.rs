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
pub struct SysfsFunction {
    /// Its sysfs directory (`/sys/bus/pci/devices/0000:00:02.0`).
    pub path: PathBuf,
    /// Its address (`0000:00:02.0`, the uevent's PCI_SLOT_NAME).
    pub address: String,
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

/// The Bochs adapters under `sysfs` (normally `/sys`), in address order. Only an unreadable
/// `bus/pci/devices` folder is an error.
pub fn find_bochs(sysfs: &Path) -> io::Result<Vec<SysfsFunction>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(sysfs.join("bus/pci/devices"))? {
        let Ok(entry) = entry else { continue };
        match SysfsFunction::bochs_at(&entry.path()) {
            Ok(function) => found.extend(function),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {} // removed mid-scan
            Err(error) => log::warn!("pci: skipped {}: {error}", entry.path().display()),
        }
    }
    found.sort_by(|a, b| a.address.cmp(&b.address));
    Ok(found)
}

impl SysfsFunction {
    /// The function whose sysfs directory is `path`, if it is a Bochs adapter.
    pub fn bochs_at(path: &Path) -> io::Result<Option<SysfsFunction>> {
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
        let address = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Ok(Some(SysfsFunction { path: path.to_path_buf(), address, id }))
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
