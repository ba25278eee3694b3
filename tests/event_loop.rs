//! The daemon's event loop (`platform::event_loop`) driven from a script on Linux: what each wake-up
//! means for the scheme, inputd's handle and the device, with the emulated device bound.

use std::collections::VecDeque;
use std::sync::Arc;

use displayd::device::bochs::{Hardware, QEMU_BOCHS_DISPLAY};
use displayd::device::regs::DISPI_ENABLE;
use displayd::device_object::DeviceObject;
use displayd::guard::Releases;
use displayd::linux::memory::HostAllocator;
use displayd::platform::event_loop::{run, LoopIo, Served, Wake};
use displayd::platform::health_probe::HealthProbe;
use displayd::platform::startup::VtEvent;
use displayd::scheme::DisplayScheme;
use displayd_testkit::emulated::{Config, EmulatedDevice, YankedReads};
use displayd_testkit::kernel::caller;
use redox_scheme::scheme::SchemeSync;
use redox_scheme::OpenResult;

/// A request a client makes, answered when the loop serves the socket.
type Request = Box<dyn FnOnce(&mut DisplayScheme)>;

/// The operating system, scripted: wakes in order, what each source holds, failures to inject,
/// and a record of what the loop did.
#[derive(Default)]
struct Script {
    wakes: VecDeque<Wake>,
    requests: VecDeque<Request>,
    /// What inputd holds; `None` in it is a failed read at that point.
    vt_events: VecDeque<Option<VtEvent>>,
    unmounted: bool,
    /// The signal behind the first `Interrupted` wake is SIGTERM.
    sigterm: bool,
    serve_fails: bool,
    timer_fails: bool,
    terminated: bool,
    inputd_closed: bool,
    inputd_reads: u32,
    timer_armed: u32,
}

impl LoopIo for Script {
    type Error = String;
    fn wait(&mut self) -> Result<Wake, String> {
        let wake = self.wakes.pop_front().ok_or("the script ended")?;
        self.terminated |= wake == Wake::Interrupted && self.sigterm;
        Ok(wake)
    }
    fn serve(&mut self, scheme: &mut DisplayScheme) -> Result<Served, String> {
        if self.serve_fails {
            return Err("socket broken".into());
        }
        while let Some(request) = self.requests.pop_front() {
            request(scheme);
        }
        Ok(if self.unmounted { Served::Unmounted } else { Served::Open })
    }
    fn vt_events(&mut self, events: &mut Vec<VtEvent>) -> Result<(), String> {
        assert!(!self.inputd_closed, "inputd read after it was closed");
        self.inputd_reads += 1;
        while let Some(next) = self.vt_events.pop_front() {
            events.push(next.ok_or("inputd read failed")?);
        }
        Ok(())
    }
    fn close_inputd(&mut self) {
        self.inputd_closed = true;
    }
    fn arm_timer(&mut self) -> Result<(), String> {
        self.timer_armed += 1;
        if self.timer_fails {
            return Err("no timer".into());
        }
        Ok(())
    }
    fn terminate_requested(&self) -> bool {
        self.terminated
    }
}

/// A registered scheme (its root handle open) with the emulated device bound.
fn scheme_with_device() -> (DisplayScheme, EmulatedDevice, usize) {
    let emulated = EmulatedDevice::new(Config::default()).unwrap();
    let (vram, mmio) = emulated.map_bars();
    let hardware = Hardware { mmio, vram };
    let unique = "pci:0000:00:02.0".to_string();
    let device =
        DeviceObject::bind(QEMU_BOCHS_DISPLAY, hardware, Arc::new(HostAllocator), unique, 1, Releases::new())
            .unwrap();
    let scheme = DisplayScheme::new("display.bochs");
    let root = scheme.scheme_root().unwrap();
    scheme.bind(device);
    (scheme, emulated, root)
}

fn open_display(scheme: &mut DisplayScheme, root: usize) -> usize {
    match scheme.openat(root, "v2/3", 0, 0, &caller(1000)).unwrap() {
        OpenResult::ThisScheme { number, .. } => number,
        _ => panic!("not a handle of this scheme"),
    }
}

#[test]
fn activate_from_inputd_replays_the_vt_on_the_device() {
    let (mut scheme, _emulated, _root) = scheme_with_device();
    let device = scheme.device().unwrap();
    let mut script = Script::default();
    script.vt_events.extend([Some(VtEvent::Activate(3)), Some(VtEvent::Unknown(9))]);
    script.wakes.push_back(Wake::Inputd);
    assert_eq!(run(&mut script, &mut scheme), 1, "ends only when the script does");
    assert_eq!(device.kms.active_vt(), Some(3));
    assert!(!script.inputd_closed);
}

#[test]
fn inputd_is_drained_on_every_wake_and_events_before_a_failed_read_still_apply() {
    let (mut scheme, _emulated, _root) = scheme_with_device();
    let device = scheme.device().unwrap();
    let mut script = Script::default();
    // inputd signals only after some batches: its events must be read on other wakes too.
    script.vt_events.extend([Some(VtEvent::Activate(2)), None, Some(VtEvent::Activate(4))]);
    script.wakes.push_back(Wake::Timer);
    assert_eq!(run(&mut script, &mut scheme), 1);
    assert_eq!(device.kms.active_vt(), Some(2), "applied although the read after it failed");

    let mut script = Script::default();
    script.vt_events.push_back(Some(VtEvent::Activate(5)));
    script.wakes.push_back(Wake::Scheme);
    assert_eq!(run(&mut script, &mut scheme), 1);
    assert_eq!(device.kms.active_vt(), Some(5), "read on a scheme wake");
}

#[test]
fn a_probe_unplug_is_unbound_at_the_next_wake_closing_inputd_and_serving_on() {
    let (mut scheme, emulated, root) = scheme_with_device();
    let device = scheme.device().unwrap();
    let _probe = HealthProbe::spawn(&device, std::time::Duration::from_millis(1)).unwrap();
    emulated.yank(YankedReads::Zeros);
    // The probe's thread unplugs it; nothing here serves or ticks meanwhile.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !device.is_unplugged() {
        assert!(std::time::Instant::now() < deadline, "the probe did not unplug the yanked device");
        std::thread::yield_now();
    }
    drop(device);
    let mut script = Script::default();
    script.wakes.extend([Wake::Timer, Wake::Scheme, Wake::Timer]);
    let served = std::rc::Rc::new(std::cell::Cell::new(false));
    let seen = std::rc::Rc::clone(&served);
    script.requests.push_back(Box::new(move |scheme| {
        // After the unplug a new open finds no device.
        let error = scheme.openat(root, "v2/3", 0, 0, &caller(1000)).unwrap_err();
        assert_eq!(error.errno, syscall::error::ENODEV);
        seen.set(true);
    }));
    script.vt_events.push_back(Some(VtEvent::Activate(2)));
    assert_eq!(run(&mut script, &mut scheme), 1);
    assert!(scheme.device().is_none(), "unbound at the first wake after the probe's unplug");
    assert!(script.inputd_closed, "inputd's handle closed after the unplug");
    assert_eq!(script.vt_events.len(), 1, "nothing read from inputd once it was closed");
    assert!(served.get(), "requests are still answered");
    assert_eq!(script.timer_armed, 2, "re-armed after every tick");
}

#[test]
fn sigterm_unplugs_in_order_and_exits_once_the_last_client_handle_closes() {
    let (mut scheme, emulated, root) = scheme_with_device();
    let client = open_display(&mut scheme, root);
    scheme.device().unwrap().kms.adapter().set_mode(640, 480).unwrap();
    let mut script = Script { sigterm: true, ..Script::default() };
    // The signal, then the client's close: only after it may the daemon exit.
    script.wakes.extend([Wake::Interrupted, Wake::Scheme]);
    script.requests.push_back(Box::new(move |scheme| scheme.on_close(client)));
    assert_eq!(run(&mut script, &mut scheme), 0);
    assert!(script.wakes.is_empty(), "it waited for the close");
    assert!(script.inputd_closed);
    assert_eq!(emulated.dispi(DISPI_ENABLE), 0, "orderly: scanout turned off before the hardware went");
}

#[test]
fn after_sigterm_inputd_is_closed_before_the_loop_waits_again() {
    let (mut scheme, _emulated, root) = scheme_with_device();
    let _client = open_display(&mut scheme, root);
    let mut script = Script { sigterm: true, ..Script::default() };
    script.wakes.push_back(Wake::Interrupted);
    assert_eq!(run(&mut script, &mut scheme), 1, "the client never closed; the script ended");
    assert!(script.inputd_closed, "closed at the unplug, not at some later wake");
    assert_eq!(script.inputd_reads, 1, "read once, on the signal's wake, before the unplug");
}

#[test]
fn only_the_event_queue_and_the_scheme_socket_end_the_loop_with_1() {
    // A broken timer and a failed inputd read are logged; the loop goes on (here to SIGTERM).
    let (mut scheme, _emulated, _root) = scheme_with_device();
    let mut script = Script { sigterm: true, timer_fails: true, ..Script::default() };
    script.vt_events.push_back(None);
    script.wakes.extend([Wake::Timer, Wake::Inputd, Wake::Interrupted]);
    assert_eq!(run(&mut script, &mut scheme), 0);
    assert_eq!(script.timer_armed, 1);

    let (mut scheme, _emulated, _root) = scheme_with_device();
    let mut script = Script { serve_fails: true, ..Script::default() };
    script.wakes.extend([Wake::Scheme, Wake::Interrupted]);
    assert_eq!(run(&mut script, &mut scheme), 1);
    assert_eq!(script.wakes.len(), 1, "it stopped at the broken socket");
}

#[test]
fn sigterm_with_no_client_exits_at_once() {
    let (mut scheme, _emulated, _root) = scheme_with_device();
    let mut script = Script { sigterm: true, ..Script::default() };
    script.wakes.extend([Wake::Interrupted, Wake::Scheme, Wake::Scheme]);
    assert_eq!(run(&mut script, &mut scheme), 0);
    assert_eq!(script.wakes.len(), 2, "exited right after the signal");
    assert!(scheme.device().is_none());
}

#[test]
fn an_unmounted_scheme_unplugs_in_order_and_exits_with_0() {
    let (mut scheme, emulated, _root) = scheme_with_device();
    scheme.device().unwrap().kms.adapter().set_mode(640, 480).unwrap();
    let mut script = Script { unmounted: true, ..Script::default() };
    script.wakes.push_back(Wake::Scheme);
    assert_eq!(run(&mut script, &mut scheme), 0);
    assert!(scheme.device().is_none());
    assert_eq!(emulated.dispi(DISPI_ENABLE), 0);
}
