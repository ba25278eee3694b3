//! Following the Bochs functions of a Linux machine through their lives.
//!
//! displayd binds the Bochs function it finds in sysfs and follows the device's life. Its removal
//! is learnt from whichever comes first of the kernel's `remove@` uevent, the sysfs node vanishing,
//! or the health probe (the ID register no longer reads a Bochs id); the device is then unplugged as
//! a surprise, never touched again. A Bochs function's `add@` uevent becomes a new device object.
//!
//! Functions are found by scanning sysfs (at start, after lost events, and every so often while no
//! device is bound) and from `add@` events; one is bound once its BARs can be mapped (the kernel has
//! assigned them addresses and made their `resource` files). A function that was unplugged or
//! failed to bind is never taken again (a re-plugged device is a new sysfs node).
//!
//! Who serves the device objects is the [`Service`] (in the QEMU guest, the test kit's
//! in-process clients): it owns the scheme they are bound into and hears of each bind and unplug.
//! Progress is written as lines starting with [`MARK`], which the QEMU test's host waits on.

use std::fmt;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::pci::{find_bochs, SysfsFunction};
use super::plug_hardware;
use super::uevent::{DeviceEvents, Received, Uevent};
use crate::device::Unplug;
use crate::device_object::DeviceObject;
use crate::scheme::DisplayScheme;

/// How every progress line starts.
pub const MARK: &str = "displayd-guest:";

/// The rest of the first progress line in `log` that starts with `start` (after [`MARK`]).
///
/// ```
/// use displayd::linux::hotplug::progress_line;
/// let log = "boot\ndisplayd-guest: device 1 shows pattern 1 at 1280x800\n";
/// assert_eq!(progress_line(log, "device 1 shows pattern 1 at "), Some("1280x800"));
/// assert_eq!(progress_line(log, "FAILED"), None);
/// ```
pub fn progress_line<'a>(log: &'a str, start: &str) -> Option<&'a str> {
    log.lines().find_map(|line| line.strip_prefix(MARK)?.strip_prefix(' ')?.strip_prefix(start))
}

/// How often sysfs is scanned while no device is bound.
const RESCAN_INTERVAL: Duration = Duration::from_millis(250);

/// How long a hot-plugged function's BARs may take to become mappable.
const MAPPABLE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the device's presence is checked when no event comes.
const PROBE_INTERVAL: Duration = Duration::from_millis(20);

/// The progress lines, and how many of them reported a failure.
pub struct Report<'a> {
    out: &'a mut dyn Write,
    failures: u32,
}

impl<'a> Report<'a> {
    /// Reports to `out`.
    pub fn new(out: &'a mut dyn Write) -> Self {
        Report { out, failures: 0 }
    }

    /// Writes a progress line.
    pub fn mark(&mut self, line: fmt::Arguments<'_>) {
        // The host reads these; a console that cannot be written to leaves nothing to tell.
        let _ = writeln!(self.out, "{MARK} {line}");
        let _ = self.out.flush();
    }

    /// Writes a progress line reporting a failure, and counts it.
    pub fn fail(&mut self, line: fmt::Arguments<'_>) {
        self.failures += 1;
        self.mark(format_args!("FAILED: {line}"));
    }
}

/// What the followed devices are served through.
pub trait Service {
    /// The display scheme device objects are bound into (it serves `&self`: binding and
    /// unplugging never wait behind a request under way).
    fn scheme(&self) -> &DisplayScheme;
    /// `device` was bound: new opens reach it.
    fn bound(&mut self, device: &Arc<DeviceObject>);
    /// Device object `instance` was unplugged; its handles stay open.
    fn unplugged(&mut self, instance: u32);
    /// A turn after every event, and after every wait that brought none.
    fn tick(&mut self, report: &mut Report<'_>);
}

/// The device being driven.
struct Bound {
    function: SysfsFunction,
    node: Node,
    device: Arc<DeviceObject>,
}

/// A function's sysfs node: its address and the node's inode, new for every device the kernel adds,
/// even at the same address.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Node(String, u64);

fn node(function: &SysfsFunction) -> Option<Node> {
    use std::os::unix::fs::MetadataExt;
    let inode = std::fs::metadata(&function.path).ok()?.ino();
    Some(Node(function.address.clone(), inode))
}

/// The bound device, the candidates, and the service they are served through.
struct Hotplug<'a> {
    sysfs: &'a Path,
    service: &'a mut dyn Service,
    bound: Option<Bound>,
    /// Bochs functions seen but not bound yet (BARs not mappable yet, or another device bound).
    pending: Vec<(SysfsFunction, Node, Instant)>,
    /// Spent nodes, unplugged or refused: never bound again.
    spent: Vec<Node>,
    last_scan: Instant,
    next_instance: u32,
    report: Report<'a>,
}

impl Hotplug<'_> {
    /// A Bochs function found by a scan or an `add@`: a candidate unless already known.
    fn consider(&mut self, function: SysfsFunction) {
        let Some(node) = node(&function) else { return }; // gone again already
        let known = self.spent.contains(&node)
            || self.pending.iter().any(|(_, n, _)| *n == node)
            || self.bound.as_ref().is_some_and(|b| b.node == node);
        if known {
            return;
        }
        if !function.bars_ready().unwrap_or(false) {
            self.report.mark(format_args!("{}: waiting for its BARs to be mappable", function.address));
        }
        self.pending.push((function, node, Instant::now()));
    }

    /// Scans sysfs for Bochs functions.
    fn scan(&mut self) {
        self.last_scan = Instant::now();
        match find_bochs(self.sysfs) {
            Ok(found) => found.into_iter().for_each(|function| self.consider(function)),
            Err(error) => log::warn!("pci: cannot scan {}: {error}", self.sysfs.display()),
        }
    }

    /// Binds the first candidate whose BARs are mappable, if no device is bound; drops candidates
    /// that left, and gives up on those whose BARs never come.
    fn bind_pending(&mut self) {
        for (function, node, since) in std::mem::take(&mut self.pending) {
            if !function.path.exists() {
                self.report.mark(format_args!("{} left before it was bound", function.address));
                continue;
            }
            match function.bars_ready() {
                Ok(true) if self.bound.is_none() => self.bind(function, node),
                Ok(false) if since.elapsed() >= MAPPABLE_TIMEOUT => {
                    self.report.fail(format_args!("{}: BARs never became mappable", function.address));
                    self.spent.push(node);
                }
                Ok(_) => self.pending.push((function, node, since)),
                Err(error) => {
                    self.report.fail(format_args!("{}: {error}", function.address));
                    self.spent.push(node);
                }
            }
        }
    }

    /// Binds `function` as the next device object and tells the service.
    fn bind(&mut self, function: SysfsFunction, node: Node) {
        let instance = self.next_instance;
        let plugged = function.enable().and_then(|()| function.map_bars()).and_then(|hardware| {
            let unique = format!("pci:{}", function.address);
            // Nothing to release beyond the device object, which logs its own freeing.
            plug_hardware(self.service.scheme(), function.id, hardware, &unique, instance, || {})
                .map_err(|error| io::Error::other(format!("{error:?}")))
        });
        let device = match plugged {
            Ok(device) => device,
            Err(error) => {
                self.spent.push(node);
                return self.report.fail(format_args!("binding {}: {error}", function.address));
            }
        };
        self.next_instance += 1;
        let id = function.id;
        let modes = device.kms.adapter().modes();
        let preferred = modes.first().map_or((0, 0), |m| (m.hdisplay, m.vdisplay));
        let count = modes.len();
        let vram = function.bar_address(0).unwrap_or_default();
        self.report.mark(format_args!(
            "bound device {instance} at {} ({:04x}:{:04x} class {:02x}{:02x} rev {}, VRAM at {vram:#x}; \
             {count} modes, preferred {}x{})",
            function.address,
            id.vendor,
            id.device,
            id.class,
            id.subclass,
            id.revision,
            preferred.0,
            preferred.1
        ));
        self.service.bound(&device);
        self.bound = Some(Bound { function, node, device });
    }

    /// Why the bound device is gone, if it is, judged from `event`, sysfs and the ID register.
    fn removal(&self, event: Option<&Uevent>) -> Option<String> {
        let bound = self.bound.as_ref()?;
        let address = Some(bound.function.address.as_str());
        if let Some(event) = event.filter(|e| e.action == "remove" && e.pci_address() == address) {
            return Some(format!("uevent remove@{}", event.devpath));
        }
        if node(&bound.function).as_ref() != Some(&bound.node) {
            return Some("its sysfs node vanished".into());
        }
        bound.device.check_health().map(|gone| format!("health probe: {gone}"))
    }

    fn unplug(&mut self, why: &str) {
        let Some(bound) = self.bound.take() else { return };
        let started = Instant::now();
        self.service.scheme().unplug(&bound.device, Unplug::Surprise);
        let took = started.elapsed();
        self.spent.push(bound.node);
        let instance = bound.device.instance;
        self.service.unplugged(instance);
        self.report.mark(format_args!(
            "device {instance} unplugged ({why}) in {} us; its handles stay open",
            took.as_micros()
        ));
    }

    /// One event: a removal of the bound device, or a new function.
    fn handle(&mut self, event: &Uevent) {
        if event.pci_address().is_some() {
            log::info!("uevent: {}@{}", event.action, event.devpath);
        }
        if let Some(why) = self.removal(Some(event)) {
            self.unplug(&why);
        }
        if let Some(address) = event.pci_address().filter(|_| event.action == "add") {
            match SysfsFunction::bochs_at(&self.sysfs.join("bus/pci/devices").join(address)) {
                Ok(Some(function)) => self.consider(function),
                Ok(None) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {} // gone again
                Err(error) => log::warn!("pci: skipped the new function {address}: {error}"),
            }
        }
    }

    /// The checks that need no event: removal, candidates, a periodic scan, the service's turn.
    fn tick(&mut self) {
        if let Some(why) = self.removal(None) {
            self.unplug(&why);
        }
        if self.bound.is_none() && self.last_scan.elapsed() >= RESCAN_INTERVAL {
            self.scan();
        }
        self.bind_pending();
        self.service.tick(&mut self.report);
    }
}

/// Follows the Bochs functions under `sysfs` (normally `/sys`), serving them through `service`, until
/// `stop` is set, writing progress lines to `out`. Returns how many failures it reported.
pub fn run(
    sysfs: &Path,
    events: &mut dyn DeviceEvents,
    stop: &AtomicBool,
    service: &mut dyn Service,
    out: &mut dyn Write,
) -> io::Result<u32> {
    let mut hotplug = Hotplug {
        sysfs,
        service,
        bound: None,
        pending: Vec::new(),
        spent: Vec::new(),
        last_scan: Instant::now(),
        next_instance: 1,
        report: Report::new(out),
    };
    hotplug.scan();
    if hotplug.pending.is_empty() {
        hotplug.report.mark(format_args!("no Bochs adapter yet; waiting for one to be plugged in"));
    }
    let mut wait = Duration::ZERO;
    while !stop.load(SeqCst) {
        // Every queued event first (waiting only when none is queued), then the other checks.
        match events.next_event(wait)? {
            Received::Event(event) => {
                hotplug.handle(&event);
                hotplug.tick();
                wait = Duration::ZERO;
            }
            Received::Lost => {
                hotplug.scan();
                hotplug.tick();
            }
            Received::Nothing => {
                hotplug.tick();
                wait = PROBE_INTERVAL;
            }
        }
    }
    Ok(hotplug.report.failures)
}
