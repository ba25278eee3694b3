//! displayd on a real Bochs PCI function under Linux, with in-process clients: what the QEMU
//! end-to-end test boots (`displayd guest`, run by the guest's `/init`).
//!
//! displayd binds the Bochs function it finds in sysfs and follows the device's life. Its removal
//! is learnt from whichever comes first of the kernel's `remove@` uevent, the sysfs node vanishing,
//! or the health probe (the ID register no longer reads a Bochs id); the device is then unplugged as
//! a surprise, never touched again. A Bochs function's `add@` uevent becomes a new device object.
//!
//! Each device object gets a fresh Orbital-like client (Orbital's exact call sequence, through the
//! real display scheme) that draws [`test_pattern`] number `instance` and keeps redrawing a moving
//! band of it, so damage flushes never stop but the picture never changes. A client whose device
//! went away keeps drawing, its calls answered as the unplug policy says, until the next device
//! shows its pattern; then it closes, late, and its device object must be freed by that close.
//!
//! Progress is written as lines starting with [`MARK`], which the host waits on.

use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::pci::{find_bochs, PciFunction};
use super::uevent::{DeviceEvents, Uevent};
use crate::device::bochs::{Health, Removal};
use crate::platform::host::consumers::{Consumer, ConsumerDisplay, ConsumerError};
use crate::platform::host::kernel::Kernel;
use crate::platform::host::plug_hardware;
use crate::scheme::{DeviceObject, DisplayScheme};

/// How every progress line starts.
pub const MARK: &str = "displayd-guest:";

/// The VT the clients draw on.
const VT: usize = 3;

/// Frames an orphaned client must draw after its device went away before it may close.
const FRAMES_AFTER_REMOVAL: u64 = 20;

/// How long a hot-plugged function may take to get its BARs assigned.
const ASSIGNMENT_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the device's presence is checked when no event comes.
const PROBE_INTERVAL: Duration = Duration::from_millis(20);

/// The colour (red, green, blue) of pixel (`x`, `y`) in test pattern `number`. Every channel of
/// every pixel depends on its coordinates and differs between patterns 1 and 2, so a wrong pitch,
/// offset, byte order or device shows up in an exact comparison.
///
/// ```
/// use displayd::platform::linux::guest::test_pattern;
/// assert_ne!(test_pattern(1, 10, 20), test_pattern(2, 10, 20));
/// assert_ne!(test_pattern(1, 10, 20), test_pattern(1, 11, 20));
/// assert_ne!(test_pattern(1, 10, 20), test_pattern(1, 10, 21));
/// ```
pub fn test_pattern(number: u32, x: u32, y: u32) -> [u8; 3] {
    let key = (number as u8).wrapping_mul(0x5b);
    let tile = (x >> 8) as u8 ^ ((y >> 8) as u8) << 4;
    [x as u8 ^ key, y as u8 ^ key.rotate_left(3), tile ^ (x as u8 >> 5) ^ key.rotate_left(5)]
}

/// Test pattern `number` as a `width`×`height` XRGB8888 frame (little-endian words: B, G, R, X).
fn pattern_frame(number: u32, width: u32, height: u32) -> Vec<u8> {
    (0..height)
        .flat_map(|y| (0..width).flat_map(move |x| test_pattern(number, x, y)))
        .collect::<Vec<u8>>()
        .chunks(3)
        .flat_map(|rgb| [rgb[2], rgb[1], rgb[0], 0])
        .collect()
}

/// What one client has done so far.
#[derive(Default)]
struct Progress {
    /// Its display's size once the whole pattern is on screen (`width << 16 | height`), 0 before.
    shown: AtomicU32,
    frames_after_removal: AtomicU64,
}

/// A client drawing on one device object, and what tells the host it was freed.
struct Client {
    instance: u32,
    stop: Arc<AtomicBool>,
    progress: Arc<Progress>,
    announced: bool,
    device_gone: bool,
    device_freed: Arc<AtomicBool>,
    thread: JoinHandle<Result<(), ConsumerError>>,
}

/// The client loop: Orbital's start-up, the whole pattern, then a band of it moving down the screen.
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
    for step in 0u32.. {
        if stop.load(SeqCst) {
            break;
        }
        let y = step.wrapping_mul(16) % (height - band + 1);
        let rows = &frame[y as usize * row..(y + band) as usize * row];
        display.frame((0, y, width, band), rows)?;
        if !display.connected {
            progress.frames_after_removal.fetch_add(1, SeqCst);
        }
        thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

/// The device being driven.
struct Bound {
    function: PciFunction,
    device: Arc<DeviceObject>,
}

/// displayd's side of the guest: the scheme, the bound device and the clients.
struct Guest<'a> {
    kernel: Kernel,
    bound: Option<Bound>,
    /// Hot-plugged Bochs functions waiting for their BARs, and since when.
    pending: Vec<(PciFunction, Instant)>,
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

    /// Binds `function` as the next device object and starts its client.
    fn bind(&mut self, function: PciFunction) {
        if let Some(bound) = &self.bound {
            let (slot, instance) = (function.slot.clone(), bound.device.instance);
            self.mark(format_args!("ignored {slot}: already driving device {instance}"));
            return;
        }
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
            Err(error) => return self.fail(format_args!("binding {}: {error}", function.slot)),
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
        self.bound = Some(Bound { function, device });
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
            device_freed,
            thread,
        });
    }

    /// Why the bound device is gone, if it is, judged from `event`, sysfs and the ID register.
    fn removal(&self, event: Option<&Uevent>) -> Option<String> {
        let bound = self.bound.as_ref()?;
        if let Some(event) =
            event.filter(|e| e.action == "remove" && e.pci_slot() == Some(&bound.function.slot))
        {
            return Some(format!("uevent remove@{}", event.devpath));
        }
        if !bound.function.path.exists() {
            return Some("its sysfs node vanished".into());
        }
        match bound.device.kms.adapter().health() {
            Health::Vanished(id) => Some(format!("health probe: ID register reads {id:#06x}")),
            Health::Present | Health::Unplugged => None,
        }
    }

    fn unplug(&mut self, why: &str) {
        let Some(bound) = self.bound.take() else { return };
        let started = Instant::now();
        self.kernel.scheme().unplug(Removal::Surprise);
        let took = started.elapsed();
        let instance = bound.device.instance;
        for client in self.clients.iter_mut().filter(|c| c.instance == instance) {
            client.device_gone = true;
        }
        self.mark(format_args!(
            "device {instance} unplugged ({why}) in {} us; its handles stay open",
            took.as_micros()
        ));
    }

    /// A new PCI function: if it is a Bochs adapter, it is bound once its BARs have addresses.
    fn added(&mut self, sysfs: &Path, slot: &str) {
        match PciFunction::bochs_at(&sysfs.join("bus/pci/devices").join(slot)) {
            Ok(Some(function)) => self.pending.push((function, Instant::now())),
            Ok(None) => {}
            Err(error) => self.fail(format_args!("reading the new function {slot}: {error}")),
        }
    }

    /// Binds the pending functions whose BARs are now assigned; drops those that left again.
    fn bind_pending(&mut self) {
        for (function, since) in std::mem::take(&mut self.pending) {
            match function.bars_assigned() {
                Ok(true) => self.bind(function),
                Ok(false) if since.elapsed() < ASSIGNMENT_TIMEOUT => self.pending.push((function, since)),
                Ok(false) => self.fail(format_args!("{}: BARs never assigned", function.slot)),
                Err(_) if !function.path.exists() => {
                    self.mark(format_args!("{} left before it was bound", function.slot))
                }
                Err(error) => self.fail(format_args!("{}: {error}", function.slot)),
            }
        }
    }

    /// Announces patterns on screen; closes orphaned clients once a newer one shows its pattern.
    fn tend_clients(&mut self) {
        let mut newest_shown = 0;
        let mut lines = Vec::new();
        for client in &mut self.clients {
            let shown = client.progress.shown.load(SeqCst);
            if shown != 0 {
                newest_shown = newest_shown.max(client.instance);
                if !client.announced {
                    client.announced = true;
                    lines.push(format!(
                        "device {0} shows pattern {0} at {1}x{2}",
                        client.instance,
                        shown >> 16,
                        shown & 0xffff
                    ));
                }
            }
        }
        for line in lines {
            self.mark(format_args!("{line}"));
        }
        let ready = |c: &Client| {
            c.device_gone
                && newest_shown > c.instance
                && c.progress.frames_after_removal.load(SeqCst) >= FRAMES_AFTER_REMOVAL
        };
        while let Some(at) = self.clients.iter().position(|c| ready(c) || c.thread.is_finished()) {
            let client = self.clients.remove(at);
            self.close(client);
        }
    }

    /// Stops a client, closes its handle and checks that its device object went with it.
    fn close(&mut self, client: Client) {
        client.stop.store(true, SeqCst);
        let instance = client.instance;
        let frames = client.progress.frames_after_removal.load(SeqCst);
        match client.thread.join() {
            Ok(Ok(())) => self.mark(format_args!(
                "client {instance} drew {frames} frames after its device went away, none of them an error it would crash on"
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
        kernel,
        bound: None,
        pending: Vec::new(),
        clients: Vec::new(),
        next_instance: 1,
        out,
        failures: 0,
    };
    match find_bochs(sysfs)?.into_iter().next() {
        Some(function) => guest.bind(function),
        None => guest.mark(format_args!("no Bochs adapter yet; waiting for one to be plugged in")),
    }
    let mut wait = PROBE_INTERVAL;
    while !stop.load(SeqCst) {
        // Every queued event first (waiting only when none is queued), then the checks that catch a
        // removal no event announced.
        let Some(event) = events.next_event(wait)? else {
            wait = PROBE_INTERVAL;
            if let Some(why) = guest.removal(None) {
                guest.unplug(&why);
            }
            guest.bind_pending();
            guest.tend_clients();
            continue;
        };
        wait = Duration::ZERO;
        if event.pci_slot().is_some() {
            log::info!("uevent: {}@{}", event.action, event.devpath);
        }
        if let Some(why) = guest.removal(Some(&event)) {
            guest.unplug(&why);
        }
        if let Some(slot) = Some(&event).filter(|e| e.action == "add").and_then(|e| e.pci_slot()) {
            guest.added(sysfs, slot);
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
        fn next_event(&mut self, timeout: Duration) -> io::Result<Option<Uevent>> {
            Ok(self.0.recv_timeout(timeout).ok())
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
            let wanted = format!("{MARK} {start}");
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let text = self.text();
                if let Some(line) = text.lines().find(|l| l.starts_with(&wanted)) {
                    return line[wanted.len()..].to_string();
                }
                assert!(Instant::now() < deadline, "no `{wanted}` in:\n{text}");
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
        thread::sleep(PROBE_INTERVAL * 3);
        assert!(!guest.lines.text().contains("bound device 2"), "bound before its BARs were assigned");
        fake_sysfs::assign_bars(&second, true);
        guest.lines.wait_for("bound device 2 at 0000:02:00.0");
        guest.lines.wait_for("device 2 shows pattern 2 at 1024x768");
        assert!(vram_shows(&second, 2));

        let orphan = guest.lines.wait_for("client 1 drew ");
        let frames: u64 = orphan.split(' ').next().unwrap().parse().unwrap();
        assert!(frames >= FRAMES_AFTER_REMOVAL, "{orphan}");
        guest.lines.wait_for("client 1 closed late; device object 1 freed");
        assert!(vram_shows(&second, 2), "nothing the orphaned client drew reached the new device");

        // A removal nobody announces: the sysfs node just vanishes.
        std::fs::remove_dir_all(&second).unwrap();
        guest.lines.wait_for("device 2 unplugged (its sysfs node vanished)");
        guest.finish();
    }

    #[test]
    fn a_vanished_id_register_is_a_removal_and_other_functions_events_change_nothing() {
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
        let text = guest.finish();
        assert!(!text.contains("bound device 2") && !text.contains("ignored"), "{text}");
    }
}
