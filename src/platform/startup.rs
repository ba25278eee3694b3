//! Start-up as pcid-spawner expects it (protocol reference §1, §3), written once against a small
//! [`Platform`] trait so that its order is tested on Linux and reused on Redox.
//!
//! Guarantees:
//! * A missing or malformed `PCID_CLIENT_CHANNEL` or `INIT_NOTIFY` is a clear error before readiness.
//! * The order is fixed: PCI config, bind the device (map BARs, probe), register the scheme, open the
//!   inputd handle, subscribe to events, read inputd once (subscribing does not report events that
//!   were already queued), and only then write the readiness byte. Any failure stops before
//!   readiness, so pcid-spawner sees the pipe close and moves on.
//! * inputd's 16-byte VtEvents are decoded strictly: a read that is not whole events is an error.

use crate::device::bochs::SUPPORTED_IDS;
use crate::platform::pcid::{PciAddress, PciFunction};

/// The two file descriptors pcid-spawner hands over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Env {
    /// The pcid channel (`PCID_CLIENT_CHANNEL`).
    pub pcid_channel: usize,
    /// The write end of the readiness pipe (`INIT_NOTIFY`).
    pub init_notify: usize,
}

/// Why the environment is unusable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvError {
    /// The variable is not set: displayd was not started by pcid-spawner.
    Missing(&'static str),
    /// The variable is not a file descriptor number.
    NotAnFd(&'static str, String),
}

impl std::fmt::Display for EnvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnvError::Missing(name) => {
                write!(f, "{name} is not set: displayd must be started by pcid-spawner")
            }
            EnvError::NotAnFd(name, value) => write!(f, "{name}={value:?} is not a file descriptor number"),
        }
    }
}

/// Reads the environment through `get` (e.g. `|k| std::env::var(k).ok()`).
pub fn read_env(get: impl Fn(&str) -> Option<String>) -> Result<Env, EnvError> {
    let fd = |name: &'static str| {
        let value = get(name).ok_or(EnvError::Missing(name))?;
        value.trim().parse::<usize>().map_err(|_| EnvError::NotAnFd(name, value))
    };
    Ok(Env { pcid_channel: fd("PCID_CLIENT_CHANNEL")?, init_notify: fd("INIT_NOTIFY")? })
}

/// The scheme name for the adapter at `address`: unique per PCI function, so two adapters never
/// clash, and free of the `:` and `/` scheme names may not contain.
pub fn scheme_name(address: &PciAddress) -> String {
    format!(
        "display.bochs.pci-{:04x}-{:02x}-{:02x}.{}",
        address.segment, address.bus, address.device, address.function
    )
}

/// The steps start-up takes on a platform, in the order [`start`] calls them.
pub trait Platform {
    /// The platform's error.
    type Error: std::fmt::Display;
    /// Asks pcid for the function's configuration.
    fn pci_config(&mut self) -> Result<PciFunction, Self::Error>;
    /// Maps the BARs, probes the adapter and binds it into the scheme.
    fn bind_device(&mut self, function: &PciFunction) -> Result<(), Self::Error>;
    /// Registers the scheme under `name`.
    fn register_scheme(&mut self, name: &str) -> Result<(), Self::Error>;
    /// Opens `/scheme/input/handle/<name>`.
    fn open_inputd(&mut self, name: &str) -> Result<(), Self::Error>;
    /// Subscribes the scheme socket, the inputd handle and the health timer to the event queue.
    fn subscribe(&mut self) -> Result<(), Self::Error>;
    /// Reads and applies every VtEvent inputd has queued.
    fn drain_inputd(&mut self) -> Result<(), Self::Error>;
    /// Writes the one readiness byte to `INIT_NOTIFY` and closes it.
    fn notify_ready(&mut self) -> Result<(), Self::Error>;
}

/// Why start-up stopped (always before readiness).
#[derive(Debug)]
pub enum StartError<E> {
    /// pcid offered a function that is not a Bochs adapter.
    NotBochs(u16, u16),
    /// A platform step failed.
    Step(&'static str, E),
}

impl<E: std::fmt::Display> std::fmt::Display for StartError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::NotBochs(v, d) => write!(f, "{v:04x}:{d:04x} is not a Bochs display adapter"),
            StartError::Step(step, e) => write!(f, "{step} failed: {e}"),
        }
    }
}

/// Runs start-up; returns the registered scheme name.
pub fn start<P: Platform>(platform: &mut P) -> Result<String, StartError<P::Error>> {
    let step = |name: &'static str| move |e| StartError::Step(name, e);
    let function = platform.pci_config().map_err(step("reading the PCI configuration"))?;
    let id = function.full_device_id;
    if !SUPPORTED_IDS.contains(&(id.vendor_id, id.device_id)) {
        return Err(StartError::NotBochs(id.vendor_id, id.device_id));
    }
    log::info!("start: {} is {:04x}:{:04x}", function.addr, id.vendor_id, id.device_id);
    platform.bind_device(&function).map_err(step("binding the device"))?;
    let name = scheme_name(&function.addr);
    platform.register_scheme(&name).map_err(step("registering the scheme"))?;
    platform.open_inputd(&name).map_err(step("opening the inputd handle"))?;
    platform.subscribe().map_err(step("subscribing to events"))?;
    platform.drain_inputd().map_err(step("reading inputd"))?;
    platform.notify_ready().map_err(step("signalling readiness"))?;
    log::info!("start: ready as {name}");
    Ok(name)
}

/// The one byte written to `INIT_NOTIFY` to say "ready" (pcid-spawner ignores its value).
pub const READY_BYTE: [u8; 1] = [0];

/// Bytes in one inputd VtEvent (`kind: usize, vt: usize`).
pub const VT_EVENT_BYTES: usize = 16;

/// An event from inputd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VtEvent {
    /// Show this VT.
    Activate(usize),
    /// A kind this driver does not know (ignored, logged).
    Unknown(usize),
}

/// Decodes a read from the inputd handle; `None` if it is not a whole number of events.
pub fn decode_vt_events(bytes: &[u8]) -> Option<Vec<VtEvent>> {
    if !bytes.len().is_multiple_of(VT_EVENT_BYTES) {
        return None;
    }
    let word = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize;
    let events =
        bytes.chunks_exact(VT_EVENT_BYTES).map(|event| match (word(&event[..8]), word(&event[8..])) {
            (0, vt) => VtEvent::Activate(vt),
            (kind, _) => VtEvent::Unknown(kind),
        });
    Some(events.collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::pcid::{FullDeviceId, PciBar};

    #[test]
    fn env_needs_both_fds_as_numbers() {
        let env = |pairs: &'static [(&str, &str)]| {
            read_env(move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string()))
        };
        assert_eq!(
            env(&[("PCID_CLIENT_CHANNEL", "5"), ("INIT_NOTIFY", "7")]),
            Ok(Env { pcid_channel: 5, init_notify: 7 })
        );
        assert_eq!(env(&[("INIT_NOTIFY", "7")]), Err(EnvError::Missing("PCID_CLIENT_CHANNEL")));
        assert_eq!(env(&[("PCID_CLIENT_CHANNEL", "5")]), Err(EnvError::Missing("INIT_NOTIFY")));
        assert_eq!(
            env(&[("PCID_CLIENT_CHANNEL", "five"), ("INIT_NOTIFY", "7")]),
            Err(EnvError::NotAnFd("PCID_CLIENT_CHANNEL", "five".into()))
        );
    }

    #[test]
    fn vt_events_decode_strictly() {
        let mut bytes = [0u8; 32];
        bytes[8] = 3;
        bytes[16] = 9;
        assert_eq!(decode_vt_events(&bytes), Some(vec![VtEvent::Activate(3), VtEvent::Unknown(9)]));
        assert_eq!(decode_vt_events(&[]), Some(vec![]));
        assert_eq!(decode_vt_events(&bytes[..15]), None);
    }

    #[derive(Default)]
    struct Recorder {
        steps: Vec<String>,
        fail_at: Option<&'static str>,
        device: u16,
    }

    impl Recorder {
        fn step(&mut self, name: &'static str) -> Result<(), String> {
            self.steps.push(name.to_string());
            if self.fail_at == Some(name) {
                return Err(format!("{name} refused"));
            }
            Ok(())
        }
    }

    impl Platform for Recorder {
        type Error = String;
        fn pci_config(&mut self) -> Result<PciFunction, String> {
            self.step("config")?;
            Ok(PciFunction {
                addr: PciAddress { segment: 0, bus: 0, device: 2, function: 0 },
                bars: [PciBar::None; 6],
                rom: None,
                legacy_interrupt_line: None,
                full_device_id: FullDeviceId {
                    vendor_id: 0x1234,
                    device_id: self.device,
                    class: 3,
                    subclass: 0x80,
                    interface: 0,
                    revision: 2,
                },
            })
        }
        fn bind_device(&mut self, _: &PciFunction) -> Result<(), String> {
            self.step("bind")
        }
        fn register_scheme(&mut self, name: &str) -> Result<(), String> {
            assert_eq!(name, "display.bochs.pci-0000-00-02.0");
            self.step("register")
        }
        fn open_inputd(&mut self, _: &str) -> Result<(), String> {
            self.step("inputd")
        }
        fn subscribe(&mut self) -> Result<(), String> {
            self.step("subscribe")
        }
        fn drain_inputd(&mut self) -> Result<(), String> {
            self.step("drain")
        }
        fn notify_ready(&mut self) -> Result<(), String> {
            self.step("ready")
        }
    }

    #[test]
    fn start_up_runs_in_order_and_signals_readiness_last() {
        let mut platform = Recorder { device: 0x1111, ..Recorder::default() };
        assert_eq!(start(&mut platform).unwrap(), "display.bochs.pci-0000-00-02.0");
        assert_eq!(platform.steps, ["config", "bind", "register", "inputd", "subscribe", "drain", "ready"]);
    }

    #[test]
    fn a_failed_step_or_a_foreign_device_stops_before_readiness() {
        for failing in ["bind", "register", "inputd", "subscribe", "drain"] {
            let mut platform = Recorder { device: 0x1111, fail_at: Some(failing), ..Recorder::default() };
            let error = start(&mut platform).unwrap_err();
            assert!(matches!(error, StartError::Step(..)), "{error}");
            assert_eq!(platform.steps.last().map(String::as_str), Some(failing));
            assert!(!platform.steps.iter().any(|s| s == "ready"));
        }
        let mut platform = Recorder { device: 0x1050, ..Recorder::default() };
        assert!(matches!(start(&mut platform), Err(StartError::NotBochs(0x1234, 0x1050))));
        assert_eq!(platform.steps, ["config"]);
    }
}
