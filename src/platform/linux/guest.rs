//! displayd on a real Bochs PCI function under Linux, with in-process clients: what the QEMU
//! end-to-end test boots (`displayd guest`, run by the guest's `/init`).
//!
//! displayd binds the Bochs function it finds in sysfs and follows the device's life. Its removal
//! is learnt from whichever comes first of the kernel's `remove@` uevent, the sysfs node vanishing,
//! or the health probe (the ID register no longer reads a Bochs id); the device is then unplugged as
//! a surprise, never touched again. A Bochs function's `add@` uevent becomes a new device object.
//!
//! Each device object gets a fresh Orbital-like client (Orbital's exact call sequence, through the
//! real display scheme) that draws [`test_pattern`](crate::platform::test_pattern::test_pattern) number `instance` and keeps redrawing a moving
//! band of it, so damage flushes never stop but the picture never changes. A client whose device
//! went away keeps drawing, its calls answered as the unplug policy says. Once the next device
//! shows its pattern, that device's client holds still while the orphan draws on for a while — so
//! anything the orphan still reached of the hardware (a stale mapping of a device re-plugged at the
//! same addresses) would stay on the new screen — then the orphan closes, late, and its device
//! object must be freed by that close.
//!
//! Functions are found by scanning sysfs (at start, after lost events, and every so often while no
//! device is bound) and from `add@` events; one is bound once its BARs can be mapped (the kernel has
//! assigned them addresses and made their `resource` files). A function that was unplugged or
//! failed to bind is never taken again (a re-plugged device is a new sysfs node).
//!
//! Progress is written as lines starting with [`MARK`], which the host waits on.

use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::pci::{find_bochs, PciFunction};
use super::uevent::{DeviceEvents, Received, Uevent};
use crate::device::bochs::Removal;
use crate::device_object::DeviceObject;
use crate::platform::host::consumers::{Consumer, ConsumerDisplay, ConsumerError};
use crate::platform::host::kernel::Kernel;
use crate::platform::host::plug_hardware;
use crate::platform::test_pattern::pattern_frame;
use crate::scheme::DisplayScheme;

/// How every progress line starts.
pub const MARK: &str = "displayd-guest:";

/// The rest of the first progress line in `log` that starts with `start` (after [`MARK`]).
///
/// ```
/// use displayd::platform::linux::guest::progress_line;
/// let log = "boot\ndisplayd-guest: device 1 shows pattern 1 at 1280x800\n";
/// assert_eq!(progress_line(log, "device 1 shows pattern 1 at "), Some("1280x800"));
/// assert_eq!(progress_line(log, "FAILED"), None);
/// ```
pub fn progress_line<'a>(log: &'a str, start: &str) -> Option<&'a str> {
    log.lines().find_map(|line| line.strip_prefix(MARK)?.strip_prefix(' ')?.strip_prefix(start))
}

/// The VT the clients draw on.
const VT: usize = 3;

/// Frames an orphaned client draws while the next device shows its pattern, before it closes.
const FRAMES_BESIDE_NEXT: u64 = 20;

/// How often sysfs is scanned while no device is bound.
const RESCAN_INTERVAL: Duration = Duration::from_millis(250);

/// How long a hot-plugged function's BARs may take to become mappable.
const MAPPABLE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the device's presence is checked when no event comes.
const PROBE_INTERVAL: Duration = Duration::from_millis(20);

/// What one client has done so far, and whether it must hold still.
#[derive(Default)]
struct Progress {
    /// Its display's size once the whole pattern is on screen (`width << 16 | height`), 0 before.
    shown: AtomicU32,
    frames_after_removal: AtomicU64,
    still: AtomicBool,
}

/// A client drawing on one device object, and what tells the host it was freed.
struct Client {
    instance: u32,
    stop: Arc<AtomicBool>,
    progress: Arc<Progress>,
    announced: bool,
    device_gone: bool,
    /// Its frames after removal when a newer device first showed its pattern.
    frames_when_next_shown: Option<u64>,
    device_freed: Arc<AtomicBool>,
    thread: JoinHandle<Result<(), ConsumerError>>,
}

/// The client loop: Orbital's start-up, the whole pattern, then a band of it moving down the screen
/// (unless told to hold still, as an idle compositor makes no calls).
fn draw(
    kernel: Kernel,
    number: u32,
    progress: Arc<Progress>,
    stop: Arc<AtomicBool>,
) -> Result<(), ConsumerError> {
    let mut display = ConsumerDisplay::start(&kernel, Consumer::Orbital, VT)?;
    kernel.scheme().activate(VT); // what `inputd -A 3` makes inputd send
    let (width, height) = display.size();
    let frame = pattern_frame(number, width, height);
    display.frame((0, 0, width, height), &frame)?;
    progress.shown.store(width << 16 | height, SeqCst);
    let band = height.min(64);
    let row = width as usize * 4;
    let mut step = 0u32;
    while !stop.load(SeqCst) {
        thread::sleep(Duration::from_millis(2));
        if progress.still.load(SeqCst) {
            continue;
        }
        let y = step.wrapping_mul(16) % (height - band + 1);
        let rows = &frame[y as usize * row..(y + band) as usize * row];
        display.frame((0, y, width, band), rows)?;
        if !display.connected {
            progress.frames_after_removal.fetch_add(1, SeqCst);
        }
        step = step.wrapping_add(1);
    }
    Ok(())
}

/// The device being driven.
struct Bound {
    function: PciFunction,
    node: Node,
    device: Arc<DeviceObject>,
}

/// A function's sysfs node: its slot and the node's inode, new for every device the kernel adds,
/// even in the same slot.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Node(String, u64);

fn node(function: &PciFunction) -> Option<Node> {
    use std::os::unix::fs::MetadataExt;
    let inode = std::fs::metadata(&function.path).ok()?.ino();
    Some(Node(function.slot.clone(), inode))
}

/// displayd's side of the guest: the scheme, the bound device, the candidates and the clients.
struct Guest<'a> {
    sysfs: &'a Path,
    kernel: Kernel,
    bound: Option<Bound>,
    /// Bochs functions seen but not bound yet (BARs not mappable yet, or another device bound).
    pending: Vec<(PciFunction, Node, Instant)>,
    /// Nodes unplugged or refused: never bound again.
    retired: Vec<Node>,
    last_scan: Instant,
    clients: Vec<Client>,
    next_instance: u32,
    out: &'a mut dyn Write,
    failures: u32,
}

impl Guest<'_> {
    fn mark(&mut self, line: std::fmt::Arguments<'_>) {
        // The host reads these; a console that cannot be written to leaves nothing to tell.
        let _ = writeln!(self.out, "{MARK} {line}");
        let _ = self.out.flush();
    }

    fn fail(&mut self, line: std::fmt::Arguments<'_>) {
        self.failures += 1;
        self.mark(format_args!("FAILED: {line}"));
    }

    /// A Bochs function found by a scan or an `add@`: a candidate unless already known.
    fn consider(&mut self, function: PciFunction) {
        let Some(node) = node(&function) else { return }; // gone again already
        let known = self.retired.contains(&node)
            || self.pending.iter().any(|(_, n, _)| *n == node)
            || self.bound.as_ref().is_some_and(|b| b.node == node);
        if known {
            return;
        }
        if !function.bars_ready().unwrap_or(false) {
            self.mark(format_args!("{}: waiting for its BARs to be mappable", function.slot));
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
                self.mark(format_args!("{} left before it was bound", function.slot));
                continue;
            }
            match function.bars_ready() {
                Ok(true) if self.bound.is_none() => self.bind(function, node),
                Ok(false) if since.elapsed() >= MAPPABLE_TIMEOUT => {
                    self.fail(format_args!("{}: BARs never became mappable", function.slot));
                    self.retired.push(node);
                }
                Ok(_) => self.pending.push((function, node, since)),
                Err(error) => {
                    self.fail(format_args!("{}: {error}", function.slot));
                    self.retired.push(node);
                }
            }
        }
    }

    /// Binds `function` as the next device object and starts its client.
    fn bind(&mut self, function: PciFunction, node: Node) {
        let instance = self.next_instance;
        let device_freed = Arc::new(AtomicBool::new(false));
        let freed = Arc::clone(&device_freed);
        let plugged = function.enable().and_then(|()| function.map_bars()).and_then(|hardware| {
            let unique = format!("pci:{}", function.slot);
            plug_hardware(&self.kernel, function.id, hardware, &unique, instance, move || {
                freed.store(true, SeqCst)
            })
            .map_err(|error| io::Error::other(format!("{error:?}")))
        });
        let device = match plugged {
            Ok(device) => device,
            Err(error) => {
                self.retired.push(node);
                return self.fail(format_args!("binding {}: {error}", function.slot));
            }
        };
        self.next_instance += 1;
        let id = function.id;
        let modes = device.kms.adapter().modes();
        let preferred = modes.first().map_or((0, 0), |m| (m.hdisplay, m.vdisplay));
        let count = modes.len();
        let vram = function.bar_address(0).unwrap_or_default();
        self.mark(format_args!(
            "bound device {instance} at {} ({:04x}:{:04x} class {:02x}{:02x} rev {}, VRAM at {vram:#x}; \
             {count} modes, preferred {}x{})",
            function.slot, id.vendor, id.device, id.class, id.subclass, id.revision, preferred.0, preferred.1
        ));
        self.bound = Some(Bound { function, node, device });
        let (stop, progress) = (Arc::new(AtomicBool::new(false)), Arc::new(Progress::default()));
        let thread = {
            let (kernel, stop, progress) = (self.kernel.clone(), Arc::clone(&stop), Arc::clone(&progress));
            thread::spawn(move || draw(kernel, instance, progress, stop))
        };
        self.clients.push(Client {
            instance,
            stop,
            progress,
            announced: false,
            device_gone: false,
            frames_when_next_shown: None,
            device_freed,
            thread,
        });
    }

    /// Why the bound device is gone, if it is, judged from `event`, sysfs and the ID register.
    fn removal(&self, event: Option<&Uevent>) -> Option<String> {
        let bound = self.bound.as_ref()?;
        let slot = Some(bound.function.slot.as_str());
        if let Some(event) = event.filter(|e| e.action == "remove" && e.pci_slot() == slot) {
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
        self.kernel.scheme().unplug(&bound.device, Removal::Surprise);
        let took = started.elapsed();
        self.retired.push(bound.node);
        let instance = bound.device.instance;
        for client in self.clients.iter_mut().filter(|c| c.instance == instance) {
            client.device_gone = true;
        }
        self.mark(format_args!(
            "device {instance} unplugged ({why}) in {} us; its handles stay open",
            took.as_micros()
        ));
    }

    /// Announces patterns on screen, holds the newest client still while orphans draw beside it,
    /// and closes the orphans once they have.
    fn tend_clients(&mut self) {
        let newest_shown =
            self.clients.iter().filter(|c| c.progress.shown.load(SeqCst) != 0).map(|c| c.instance).max();
        let mut lines = Vec::new();
        for client in &mut self.clients {
            let shown = client.progress.shown.load(SeqCst);
            if shown != 0 && !client.announced {
                client.announced = true;
                let (instance, width, height) = (client.instance, shown >> 16, shown & 0xffff);
                lines.push(format!("device {instance} shows pattern {instance} at {width}x{height}"));
            }
            let orphaned_by_newer = client.device_gone && newest_shown.is_some_and(|n| n > client.instance);
            if orphaned_by_newer && client.frames_when_next_shown.is_none() {
                client.frames_when_next_shown = Some(client.progress.frames_after_removal.load(SeqCst));
            }
        }
        for line in lines {
            self.mark(format_args!("{line}"));
        }
        let done = |c: &Client| {
            c.thread.is_finished()
                || c.frames_when_next_shown
                    .is_some_and(|at| c.progress.frames_after_removal.load(SeqCst) >= at + FRAMES_BESIDE_NEXT)
        };
        while let Some(at) = self.clients.iter().position(done) {
            let client = self.clients.remove(at);
            self.close(client);
        }
        let orphans_left = self.clients.iter().any(|c| c.device_gone);
        for client in &self.clients {
            let hold = orphans_left && !client.device_gone && Some(client.instance) == newest_shown;
            client.progress.still.store(hold, SeqCst);
        }
    }

    /// Stops a client, closes its handle and checks that its device object went with it.
    fn close(&mut self, client: Client) {
        client.stop.store(true, SeqCst);
        let instance = client.instance;
        let frames = client.progress.frames_after_removal.load(SeqCst);
        let beside_next = client.frames_when_next_shown.map_or(0, |at| frames - at);
        match client.thread.join() {
            Ok(Ok(())) => self.mark(format_args!(
                "client {instance} drew {frames} frames after its device went away ({beside_next} while the \
                 next device showed its pattern), none of them an error it would crash on"
            )),
            Ok(Err(error)) => return self.fail(format_args!("client {instance}: {error:?}")),
            Err(_) => return self.fail(format_args!("client {instance} panicked")),
        }
        let freed = client.device_freed.load(SeqCst);
        let handles = self.kernel.scheme().open_handles();
        if freed {
            self.mark(format_args!(
                "client {instance} closed late; device object {instance} freed; {handles} handles open"
            ));
        } else {
            self.fail(format_args!("client {instance} closed but device object {instance} is still alive"));
        }
    }

    /// One event: a removal of the bound device, or a new function.
    fn handle(&mut self, event: &Uevent) {
        if event.pci_slot().is_some() {
            log::info!("uevent: {}@{}", event.action, event.devpath);
        }
        if let Some(why) = self.removal(Some(event)) {
            self.unplug(&why);
        }
        if let Some(slot) = event.pci_slot().filter(|_| event.action == "add") {
            match PciFunction::bochs_at(&self.sysfs.join("bus/pci/devices").join(slot)) {
                Ok(Some(function)) => self.consider(function),
                Ok(None) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {} // gone again
                Err(error) => log::warn!("pci: skipped the new function {slot}: {error}"),
            }
        }
    }

    /// The checks that need no event: removal, candidates, a periodic scan, the clients.
    fn tick(&mut self) {
        if let Some(why) = self.removal(None) {
            self.unplug(&why);
        }
        if self.bound.is_none() && self.last_scan.elapsed() >= RESCAN_INTERVAL {
            self.scan();
        }
        self.bind_pending();
        self.tend_clients();
    }
}

/// Runs displayd on the Bochs functions under `sysfs` until `stop` is set, writing progress lines
/// to `out`. Returns how many failures it reported.
pub fn run(
    sysfs: &Path,
    events: &mut dyn DeviceEvents,
    stop: &AtomicBool,
    out: &mut dyn Write,
) -> io::Result<u32> {
    let kernel = Kernel::new(DisplayScheme::new("display.bochs"))
        .map_err(|e| io::Error::from_raw_os_error(e.errno))?;
    let mut guest = Guest {
        sysfs,
        kernel,
        bound: None,
        pending: Vec::new(),
        retired: Vec::new(),
        last_scan: Instant::now(),
        clients: Vec::new(),
        next_instance: 1,
        out,
        failures: 0,
    };
    guest.scan();
    if guest.pending.is_empty() {
        guest.mark(format_args!("no Bochs adapter yet; waiting for one to be plugged in"));
    }
    let mut wait = Duration::ZERO;
    while !stop.load(SeqCst) {
        // Every queued event first (waiting only when none is queued), then the other checks.
        match events.next_event(wait)? {
            Received::Event(event) => {
                guest.handle(&event);
                guest.tick();
                wait = Duration::ZERO;
            }
            Received::Lost => {
                guest.scan();
                guest.tick();
            }
            Received::Nothing => {
                guest.tick();
                wait = PROBE_INTERVAL;
            }
        }
    }
    for client in std::mem::take(&mut guest.clients) {
        client.stop.store(true, SeqCst);
        let _ = client.thread.join();
    }
    Ok(guest.failures)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::regs::{DISPI, DISPI_ID};
    use crate::platform::linux::pci::fake_sysfs;
    use std::os::unix::fs::FileExt;
    use std::path::PathBuf;
    use std::sync::{mpsc, Mutex};

    /// Events the test sends, in order, as the kernel would.
    struct Queue(mpsc::Receiver<Uevent>);

    impl DeviceEvents for Queue {
        fn next_event(&mut self, timeout: Duration) -> io::Result<Received> {
            Ok(self.0.recv_timeout(timeout).map_or(Received::Nothing, Received::Event))
        }
    }

    /// The progress lines, shared between the guest and the test.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Lines {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }

        /// The rest of the first progress line starting with `start`; panics after 30 s.
        fn wait_for(&self, start: &str) -> String {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let text = self.text();
                if let Some(rest) = progress_line(&text, start) {
                    return rest.to_string();
                }
                assert!(Instant::now() < deadline, "no `{MARK} {start}` in:\n{text}");
                thread::sleep(Duration::from_millis(5));
            }
        }
    }

    fn pci_event(action: &str, slot: &str) -> Uevent {
        let message = format!("{action}@/devices/pci0000:00/{slot}\0SUBSYSTEM=pci\0PCI_SLOT_NAME={slot}\0");
        Uevent::parse(message.as_bytes()).unwrap()
    }

    /// Whether the function's VRAM file holds test pattern `number` as a 1024×768 frame.
    fn vram_shows(function: &Path, number: u32) -> bool {
        let vram = std::fs::read(function.join("resource0")).unwrap();
        vram[..1024 * 768 * 4] == pattern_frame(number, 1024, 768)[..]
    }

    struct Running {
        root: PathBuf,
        events: mpsc::Sender<Uevent>,
        lines: Lines,
        stop: Arc<AtomicBool>,
        guest: JoinHandle<io::Result<u32>>,
    }

    fn start(root: PathBuf) -> Running {
        let (events, queue) = mpsc::channel();
        let (lines, stop) = (Lines::default(), Arc::new(AtomicBool::new(false)));
        let guest = {
            let (root, mut out, stop) = (root.clone(), lines.clone(), Arc::clone(&stop));
            thread::spawn(move || run(&root, &mut Queue(queue), &stop, &mut out))
        };
        Running { root, events, lines, stop, guest }
    }

    impl Running {
        fn finish(self) -> String {
            self.stop.store(true, SeqCst);
            let failures = self.guest.join().unwrap().unwrap();
            let text = self.lines.text();
            assert_eq!(failures, 0, "{text}");
            std::fs::remove_dir_all(&self.root).unwrap();
            text
        }
    }

    #[test]
    fn follows_a_device_out_by_uevent_and_a_new_one_in_once_its_bars_are_assigned() {
        let root = fake_sysfs::tree();
        let first = fake_sysfs::add(&root, "0000:01:00.0", 0x1234, 0x1111);
        let guest = start(root.clone());
        guest.lines.wait_for("bound device 1 at 0000:01:00.0");
        guest.lines.wait_for("device 1 shows pattern 1 at 1024x768");
        assert!(vram_shows(&first, 1));

        // The kernel announces the removal before it takes the sysfs node away.
        guest.events.send(pci_event("remove", "0000:01:00.0")).unwrap();
        let why = guest.lines.wait_for("device 1 unplugged (");
        assert!(why.starts_with("uevent remove@/devices/pci0000:00/0000:01:00.0)"), "{why}");
        std::fs::remove_dir_all(&first).unwrap();

        // The new function's add@ comes before its BARs have addresses; binding waits for them.
        let second = fake_sysfs::add(&root, "0000:02:00.0", 0x1234, 0x1111);
        fake_sysfs::assign_bars(&second, false);
        guest.events.send(pci_event("add", "0000:02:00.0")).unwrap();
        guest.lines.wait_for("0000:02:00.0: waiting for its BARs to be mappable");
        assert!(!guest.lines.text().contains("bound device 2"), "bound before its BARs were assigned");
        assert_eq!(std::fs::read_to_string(second.join("enable")).unwrap(), "0\n", "not enabled yet");
        fake_sysfs::assign_bars(&second, true);
        guest.lines.wait_for("bound device 2 at 0000:02:00.0");
        guest.lines.wait_for("device 2 shows pattern 2 at 1024x768");
        assert!(vram_shows(&second, 2));

        let orphan = guest.lines.wait_for("client 1 drew ");
        let beside_next: u64 = orphan.split('(').nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
        assert!(beside_next >= FRAMES_BESIDE_NEXT, "{orphan}");
        guest.lines.wait_for("client 1 closed late; device object 1 freed");
        assert!(vram_shows(&second, 2), "nothing the orphaned client drew reached the new device");

        // A removal nobody announces: the sysfs node just vanishes.
        std::fs::remove_dir_all(&second).unwrap();
        guest.lines.wait_for("device 2 unplugged (its sysfs node vanished)");
        guest.finish();
    }

    #[test]
    fn a_vanished_id_register_is_a_removal_and_a_scan_finds_the_next_adapter_but_never_the_old_one() {
        let root = fake_sysfs::tree();
        fake_sysfs::add(&root, "0000:00:01.0", 0x8086, 0x1237);
        let function = fake_sysfs::add(&root, "0000:00:02.0", 0x1234, 0x1111);
        let guest = start(root);
        guest.lines.wait_for("device 1 shows pattern 1");
        guest.events.send(pci_event("remove", "0000:00:01.0")).unwrap();
        guest.events.send(pci_event("add", "0000:00:01.0")).unwrap();
        // Then the adapter silently stops answering: its ID register reads 0.
        let mmio = std::fs::OpenOptions::new().write(true).open(function.join("resource2")).unwrap();
        mmio.write_all_at(&[0, 0], (DISPI + 2 * DISPI_ID) as u64).unwrap();
        let why = guest.lines.wait_for("device 1 unplugged (");
        assert!(why.starts_with("health probe: ID register reads 0x0000)"), "{why}");
        // The silent adapter's node is still there, and comes first in a scan: it must stay retired.
        // A new adapter arrives without any event; the periodic scan finds it.
        fake_sysfs::add(&guest.root, "0000:00:03.0", 0x1234, 0x1111);
        guest.lines.wait_for("bound device 2 at 0000:00:03.0");
        guest.lines.wait_for("device 2 shows pattern 2");
        guest.finish();
    }
}
