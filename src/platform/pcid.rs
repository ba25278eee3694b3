//! The pcid client channel (protocol reference §2): the wire types, bincode 1.x encoding, framing,
//! and the BAR mmap offset encoding.
//!
//! Guarantees:
//! * Requests are encoded with bincode 1.x's legacy options (fixed-width little-endian integers,
//!   u32 enum tags), exactly as pcid decodes them, and sent with one `write`.
//! * Responses are read as an 8-byte little-endian length and that many bytes, tolerating partial
//!   reads; a length over 0x100000, an undecodable body, a server error or an unexpected variant is
//!   a [`PcidError`], never a panic.
//! * Config-space offsets are checked before they are sent (4-byte aligned, below 4096): a bad one
//!   would crash pcid itself.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

/// The longest response body accepted (the reference client's limit).
pub const MAX_RESPONSE: u64 = 0x10_0000;

/// A request to pcid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PcidClientRequest {
    /// Re-run the enable sequence (bus master, memory and I/O decode on).
    EnableDevice,
    /// The function's configuration.
    RequestConfig,
    /// Which interrupt features the function has.
    RequestFeatures,
    /// Vendor-specific capabilities.
    RequestVendorCapabilities,
    /// Enable MSI or MSI-X.
    EnableFeature(PciFeature),
    /// Details of MSI or MSI-X.
    FeatureInfo(PciFeature),
    /// Configure MSI or MSI-X.
    SetFeatureInfo(SetFeatureInfo),
    /// Read the config-space dword at an offset.
    ReadConfig(u16),
    /// Write a config-space dword.
    WriteConfig(u16, u32),
}

/// pcid's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PcidClientResponse {
    /// The device was enabled.
    EnabledDevice,
    /// The function's configuration.
    Config(SubdriverArguments),
    /// Its interrupt features.
    AllFeatures(Vec<PciFeature>),
    /// Its vendor capabilities.
    VendorCapabilities(Vec<VendorSpecificCapability>),
    /// A feature was enabled.
    FeatureEnabled(PciFeature),
    /// A feature's state.
    FeatureStatus(PciFeature, FeatureStatus),
    /// The request failed.
    Error(PcidServerResponseError),
    /// A feature's details.
    FeatureInfo(PciFeature, PciFeatureInfo),
    /// A feature was configured.
    SetFeatureInfo(PciFeature),
    /// A config-space dword.
    ReadConfig(u32),
    /// A config-space dword was written.
    WriteConfig,
}

/// Why pcid refused a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PcidServerResponseError {
    /// The function has no such feature.
    NonexistentFeature(PciFeature),
    /// The request's bits made no sense.
    InvalidBitPattern,
}

/// Interrupt features.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PciFeature {
    /// MSI.
    Msi,
    /// MSI-X.
    MsiX,
}

/// Whether a feature is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FeatureStatus {
    /// On.
    Enabled,
    /// Off.
    Disabled,
}

/// What pcid-spawner's `RequestConfig` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubdriverArguments {
    /// The PCI function.
    pub func: PciFunction,
}

/// A PCI function's configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PciFunction {
    /// Its address.
    pub addr: PciAddress,
    /// Its six BARs (a 64-bit BAR fills slot *i* and leaves *i+1* `None`).
    pub bars: [PciBar; 6],
    /// Its option ROM.
    pub rom: Option<PciRom>,
    /// Its legacy interrupt line, if any.
    pub legacy_interrupt_line: Option<LegacyInterruptLine>,
    /// Its ids.
    pub full_device_id: FullDeviceId,
}

/// A PCI address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PciAddress {
    /// Segment.
    pub segment: u16,
    /// Bus.
    pub bus: u8,
    /// Device.
    pub device: u8,
    /// Function.
    pub function: u8,
}

impl std::fmt::Display for PciAddress {
    /// `0000:00:02.0`, the form GET_UNIQUE and scheme names use.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04x}:{:02x}:{:02x}.{}", self.segment, self.bus, self.device, self.function)
    }
}

/// One BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PciBar {
    /// Not present.
    None,
    /// 32-bit memory.
    Memory32 {
        /// Physical base.
        addr: u32,
        /// Size in bytes.
        size: u32,
    },
    /// 64-bit memory.
    Memory64 {
        /// Physical base.
        addr: u64,
        /// Size in bytes.
        size: u64,
    },
    /// I/O ports.
    Port(u16),
}

impl PciBar {
    /// The size of a memory BAR, `None` for ports and absent BARs.
    pub fn memory_size(&self) -> Option<u64> {
        match *self {
            PciBar::Memory32 { addr, size } if addr != 0 => Some(size.into()),
            PciBar::Memory64 { addr, size } if addr != 0 => Some(size),
            _ => None,
        }
    }
}

/// The option ROM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PciRom {
    /// Physical base.
    pub addr: u32,
    /// Size in bytes.
    pub size: u32,
    /// Whether decoding is on.
    pub enabled: bool,
}

/// A legacy interrupt line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyInterruptLine {
    /// The IRQ number.
    pub irq: u8,
    /// Device-tree interrupt (phandle, address cells, cell count), where there is one.
    pub phandled: Option<(u32, [u32; 3], usize)>,
}

/// A function's ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FullDeviceId {
    /// Vendor.
    pub vendor_id: u16,
    /// Device.
    pub device_id: u16,
    /// Class code.
    pub class: u8,
    /// Subclass.
    pub subclass: u8,
    /// Programming interface.
    pub interface: u8,
    /// Revision.
    pub revision: u8,
}

/// A vendor-specific capability.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VendorSpecificCapability {
    /// Its bytes.
    pub data: Vec<u8>,
}

/// Details of an interrupt feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PciFeatureInfo {
    /// MSI.
    Msi(MsiInfo),
    /// MSI-X.
    MsiX(MsixInfo),
}

/// MSI details.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsiInfo {
    /// log2 of the vectors it can do.
    pub log2_multiple_message_capable: u8,
    /// 64-bit addresses.
    pub is_64bit: bool,
    /// Per-vector masking.
    pub has_per_vector_masking: bool,
}

/// MSI-X details.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsixInfo {
    /// BAR of the table.
    pub table_bar: u8,
    /// Offset of the table in it.
    pub table_offset: u32,
    /// Entries.
    pub table_size: u16,
    /// BAR of the pending-bit array.
    pub pba_bar: u8,
    /// Its offset.
    pub pba_offset: u32,
}

/// Configuration of an interrupt feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetFeatureInfo {
    /// MSI.
    Msi(MsiSetFeatureInfo),
    /// MSI-X.
    MsiX {
        /// Mask every vector.
        function_mask: Option<bool>,
    },
}

/// MSI configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsiSetFeatureInfo {
    /// Vectors enabled.
    pub multi_message_enable: Option<u8>,
    /// Message address and data.
    pub message_address_and_data: Option<MsiAddrAndData>,
    /// Mask bits.
    pub mask_bits: Option<u32>,
}

/// An MSI message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsiAddrAndData {
    /// Address.
    pub addr: u64,
    /// Data.
    pub data: u32,
}

/// Why a pcid exchange failed.
#[derive(Debug)]
pub enum PcidError {
    /// The channel failed.
    Io(std::io::Error),
    /// pcid took only part of the request (it must take all of it in one write).
    ShortWrite(usize),
    /// The response announced more than [`MAX_RESPONSE`] bytes.
    TooLong(u64),
    /// The response did not decode.
    Decode(String),
    /// pcid answered with an error.
    Server(PcidServerResponseError),
    /// pcid answered with another variant than the request calls for.
    Unexpected(Box<PcidClientResponse>),
    /// A config-space offset that is not 4-byte aligned or not below 4096.
    BadConfigOffset(u16),
}

impl std::fmt::Display for PcidError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PcidError::Io(e) => write!(f, "pcid channel: {e}"),
            PcidError::ShortWrite(n) => write!(f, "pcid took only {n} bytes of the request"),
            PcidError::TooLong(n) => {
                write!(f, "pcid response of {n} bytes is over the {MAX_RESPONSE}-byte limit")
            }
            PcidError::Decode(e) => write!(f, "pcid response does not decode: {e}"),
            PcidError::Server(e) => write!(f, "pcid refused the request: {e:?}"),
            PcidError::Unexpected(r) => write!(f, "pcid answered with an unexpected {r:?}"),
            PcidError::BadConfigOffset(o) => {
                write!(f, "config offset {o:#x} is not aligned or not below 4096")
            }
        }
    }
}

impl std::error::Error for PcidError {}

impl From<std::io::Error> for PcidError {
    fn from(error: std::io::Error) -> Self {
        PcidError::Io(error)
    }
}

/// A pcid client over any byte channel (the channel fd on Redox, a socket in tests).
pub struct PcidClient<C> {
    channel: C,
}

impl<C: Read + Write> PcidClient<C> {
    /// A client on `channel`, which must be past pcid-spawner's exchanges (none pending).
    pub fn new(channel: C) -> Self {
        PcidClient { channel }
    }

    /// One request and its response.
    pub fn call(&mut self, request: &PcidClientRequest) -> Result<PcidClientResponse, PcidError> {
        let bytes = bincode::serialize(request).map_err(|e| PcidError::Decode(e.to_string()))?;
        let written = self.channel.write(&bytes)?;
        if written != bytes.len() {
            return Err(PcidError::ShortWrite(written));
        }
        let mut length = [0u8; 8];
        self.channel.read_exact(&mut length)?;
        let length = u64::from_le_bytes(length);
        if length > MAX_RESPONSE {
            return Err(PcidError::TooLong(length));
        }
        let mut body = vec![0u8; length as usize];
        self.channel.read_exact(&mut body)?;
        match bincode::deserialize(&body).map_err(|e| PcidError::Decode(e.to_string()))? {
            PcidClientResponse::Error(error) => Err(PcidError::Server(error)),
            response => Ok(response),
        }
    }

    /// The function's configuration.
    pub fn config(&mut self) -> Result<SubdriverArguments, PcidError> {
        match self.call(&PcidClientRequest::RequestConfig)? {
            PcidClientResponse::Config(config) => Ok(config),
            other => Err(PcidError::Unexpected(Box::new(other))),
        }
    }

    /// Reads the config-space dword at `offset`.
    pub fn read_config(&mut self, offset: u16) -> Result<u32, PcidError> {
        check_config_offset(offset)?;
        match self.call(&PcidClientRequest::ReadConfig(offset))? {
            PcidClientResponse::ReadConfig(value) => Ok(value),
            other => Err(PcidError::Unexpected(Box::new(other))),
        }
    }

    /// Writes the config-space dword at `offset`.
    pub fn write_config(&mut self, offset: u16, value: u32) -> Result<(), PcidError> {
        check_config_offset(offset)?;
        match self.call(&PcidClientRequest::WriteConfig(offset, value))? {
            PcidClientResponse::WriteConfig => Ok(()),
            other => Err(PcidError::Unexpected(Box::new(other))),
        }
    }

    /// The channel, for mapping BARs through it.
    pub fn channel(&self) -> &C {
        &self.channel
    }
}

fn check_config_offset(offset: u16) -> Result<(), PcidError> {
    if offset.is_multiple_of(4) && offset < 4096 {
        Ok(())
    } else {
        Err(PcidError::BadConfigOffset(offset))
    }
}

/// How pcid maps a BAR (the 2-bit memory type in the mmap offset).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryType {
    /// Cached.
    Writeback = 0,
    /// Uncached: registers.
    Uncacheable = 1,
    /// Write-combining: framebuffers.
    WriteCombining = 2,
}

/// The mmap offset on the channel fd that maps BAR `bar` from `byte_offset` with `memory_type`:
/// `(bar << 61) | (type << 59) | byte_offset`. `None` for a BAR index above 5 (which would crash
/// pcid) or a byte offset that is not page-aligned or does not fit in 59 bits.
pub fn bar_mmap_offset(bar: u8, memory_type: MemoryType, byte_offset: u64) -> Option<u64> {
    let fits = bar <= 5 && byte_offset.is_multiple_of(4096) && byte_offset < (1 << 59);
    fits.then(|| (u64::from(bar) << 61) | ((memory_type as u64) << 59) | byte_offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let digits: String = s.chars().filter(char::is_ascii_hexdigit).collect();
        (0..digits.len()).step_by(2).map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn requests_encode_as_the_reference_bytes() {
        let enc = |r: PcidClientRequest| bincode::serialize(&r).unwrap();
        assert_eq!(enc(PcidClientRequest::EnableDevice), hex("00000000"));
        assert_eq!(enc(PcidClientRequest::RequestConfig), hex("01000000"));
        assert_eq!(enc(PcidClientRequest::ReadConfig(0x10)), hex("07000000 1000"));
        assert_eq!(enc(PcidClientRequest::WriteConfig(0x04, 7)), hex("08000000 0400 07000000"));
    }

    /// The reference's 80-byte Config body for 0000:00:02.0, decoded field by field.
    #[test]
    fn the_reference_config_response_decodes_field_by_field() {
        let body =
            hex("01000000 0000 00 02 00 01000000 000000fd 00000001 00000000 02000000 000000fe00000000 \
             0040000000000000 00000000 03000000 00c0 00000000 01 0000bcfe 00000100 00 01 0b 00 \
             f41a 5010 03 00 00 01");
        assert_eq!(body.len(), 80);
        let PcidClientResponse::Config(SubdriverArguments { func }) = bincode::deserialize(&body).unwrap()
        else {
            panic!("not a Config response")
        };
        assert_eq!(func.addr, PciAddress { segment: 0, bus: 0, device: 2, function: 0 });
        assert_eq!(func.addr.to_string(), "0000:00:02.0");
        assert_eq!(func.bars[0], PciBar::Memory32 { addr: 0xfd00_0000, size: 16 << 20 });
        assert_eq!(func.bars[1], PciBar::None);
        assert_eq!(func.bars[2], PciBar::Memory64 { addr: 0xfe00_0000, size: 16 << 10 });
        assert_eq!(func.bars[3], PciBar::None);
        assert_eq!(func.bars[4], PciBar::Port(0xc000));
        assert_eq!(func.bars[5], PciBar::None);
        assert_eq!(func.rom, Some(PciRom { addr: 0xfebc_0000, size: 64 << 10, enabled: false }));
        assert_eq!(func.legacy_interrupt_line, Some(LegacyInterruptLine { irq: 11, phandled: None }));
        let id = func.full_device_id;
        assert_eq!(
            (id.vendor_id, id.device_id, id.class, id.subclass, id.interface, id.revision),
            (0x1af4, 0x1050, 3, 0, 0, 1)
        );
        assert_eq!(
            bincode::serialize(&PcidClientResponse::Config(SubdriverArguments { func })).unwrap(),
            body
        );
    }

    #[test]
    fn bar_offsets_encode_index_type_and_offset_and_refuse_what_would_crash_pcid() {
        assert_eq!(bar_mmap_offset(0, MemoryType::WriteCombining, 0), Some(2 << 59));
        assert_eq!(bar_mmap_offset(2, MemoryType::Uncacheable, 0), Some((2 << 61) | (1 << 59)));
        assert_eq!(bar_mmap_offset(5, MemoryType::Writeback, 0x3000), Some((5 << 61) | 0x3000));
        assert_eq!(bar_mmap_offset(6, MemoryType::Writeback, 0), None);
        assert_eq!(bar_mmap_offset(0, MemoryType::Writeback, 0x10), None);
        assert_eq!(bar_mmap_offset(0, MemoryType::Writeback, 1 << 59), None);
    }
}
