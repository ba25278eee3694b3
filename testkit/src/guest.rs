//! The QEMU end-to-end test's scenario (`guest`, run by the guest's `/init`): displayd's Linux
//! platform ([`displayd::linux::hotplug`]) follows the machine's Bochs functions, and in-process
//! clients draw on each device object through the stand-in kernel.
//!
//! Each device object gets a fresh Orbital-like client (Orbital's exact call sequence, through the
//! real display scheme) that draws [`test_pattern`](crate::test_pattern::test_pattern) number
//! `instance` and keeps redrawing a moving band of it, so damage flushes never stop but the picture
//! never changes. A client whose device went away keeps drawing, its calls answered as the unplug
//! policy says. Once the next device shows its pattern, that device's client holds still while the
//! orphan draws on for a while — so anything the orphan still reached of the hardware (a stale
//! mapping of a device re-plugged at the same addresses) would stay on the new screen — then the
//! orphan closes, late, and its device object must be freed by that close.

use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Weak};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use displayd::device_object::DeviceObject;
use displayd::linux::hotplug::{self, Report, Service};
use displayd::linux::uevent::DeviceEvents;
use displayd::scheme::DisplayScheme;

use crate::consumers::{Consumer, ConsumerDisplay, ConsumerError};
use crate::kernel::Kernel;
use crate::test_pattern::pattern_frame;

/// The VT the clients draw on.
const VT: usize = 3;

/// Frames an orphaned client draws while the next device shows its pattern, before it closes.
const FRAMES_BESIDE_NEXT: u64 = 20;

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
    /// Its device object, which must be freed when it closes.
    device: Weak<DeviceObject>,
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

/// The clients, one per device object, and the stand-in kernel they reach the scheme through.
struct Clients {
    kernel: Kernel,
    clients: Vec<Client>,
}

impl Service for Clients {
    fn scheme(&self) -> &DisplayScheme {
        self.kernel.scheme()
    }

    /// Starts the new device object's client.
    fn bound(&mut self, device: &Arc<DeviceObject>) {
        let instance = device.instance;
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
            device: Arc::downgrade(device),
            thread,
        });
    }

    fn unplugged(&mut self, instance: u32) {
        for client in self.clients.iter_mut().filter(|c| c.instance == instance) {
            client.device_gone = true;
        }
    }

    /// Announces patterns on screen, holds the newest client still while orphans draw beside it,
    /// and closes the orphans once they have.
    fn tick(&mut self, report: &mut Report<'_>) {
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
            report.mark(format_args!("{line}"));
        }
        let done = |c: &Client| {
            c.thread.is_finished()
                || c.frames_when_next_shown
                    .is_some_and(|at| c.progress.frames_after_removal.load(SeqCst) >= at + FRAMES_BESIDE_NEXT)
        };
        while let Some(at) = self.clients.iter().position(done) {
            let client = self.clients.remove(at);
            close(client, &self.kernel, report);
        }
        let orphans_left = self.clients.iter().any(|c| c.device_gone);
        for client in &self.clients {
            let hold = orphans_left && !client.device_gone && Some(client.instance) == newest_shown;
            client.progress.still.store(hold, SeqCst);
        }
    }
}

/// Stops a client, closes its handle and checks that its device object went with it.
fn close(client: Client, kernel: &Kernel, report: &mut Report<'_>) {
    client.stop.store(true, SeqCst);
    let instance = client.instance;
    let frames = client.progress.frames_after_removal.load(SeqCst);
    let beside_next = client.frames_when_next_shown.map_or(0, |at| frames - at);
    match client.thread.join() {
        Ok(Ok(())) => report.mark(format_args!(
            "client {instance} drew {frames} frames after its device went away ({beside_next} while the \
             next device showed its pattern), none of them an error it would crash on"
        )),
        Ok(Err(error)) => return report.fail(format_args!("client {instance}: {error:?}")),
        Err(_) => return report.fail(format_args!("client {instance} panicked")),
    }
    let freed = client.device.strong_count() == 0;
    let handles = kernel.scheme().open_handles();
    if freed {
        report.mark(format_args!(
            "client {instance} closed late; device object {instance} freed; {handles} handles open"
        ));
    } else {
        report.fail(format_args!("client {instance} closed but device object {instance} is still alive"));
    }
}

/// Runs the scenario on the Bochs functions under `sysfs` until `stop` is set, writing progress
/// lines to `out`, then stops the clients. Returns how many failures were reported.
pub fn run(
    sysfs: &Path,
    events: &mut dyn DeviceEvents,
    stop: &AtomicBool,
    out: &mut dyn Write,
) -> io::Result<u32> {
    let kernel = Kernel::new(DisplayScheme::new("display.bochs"))
        .map_err(|e| io::Error::from_raw_os_error(e.errno))?;
    let mut clients = Clients { kernel, clients: Vec::new() };
    let failures = hotplug::run(sysfs, events, stop, &mut clients, out);
    for client in clients.clients {
        client.stop.store(true, SeqCst);
        let _ = client.thread.join();
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_sysfs;
    use displayd::device::regs::{DISPI, DISPI_ID};
    use displayd::linux::hotplug::{progress_line, MARK};
    use displayd::linux::uevent::{Received, Uevent};
    use std::os::unix::fs::FileExt;
    use std::path::PathBuf;
    use std::sync::{mpsc, Mutex};
    use std::time::Instant;

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

    fn pci_event(action: &str, address: &str) -> Uevent {
        let message =
            format!("{action}@/devices/pci0000:00/{address}\0SUBSYSTEM=pci\0PCI_SLOT_NAME={address}\0");
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
        // The silent adapter's node is still there, and comes first in a scan: it must stay spent.
        // A new adapter arrives without any event; the periodic scan finds it.
        fake_sysfs::add(&guest.root, "0000:00:03.0", 0x1234, 0x1111);
        guest.lines.wait_for("bound device 2 at 0000:00:03.0");
        guest.lines.wait_for("device 2 shows pattern 2");
        guest.finish();
    }
}
