//! The daemon's event loop, apart from the operating system: what each wake-up means for the
//! scheme, inputd's handle and the device. Redox (`platform/redox.rs`) drives it with its event
//! queue; `tests/event_loop.rs` drives it from a script on Linux.
//!
//! Guarantees:
//! * a SIGTERM is honoured before anything else: the device is unplugged in order (scanout off
//!   first), and the loop exits with 0 as soon as no client handle is left, serving the open ones
//!   as the unplug policy says until then;
//! * the scheme socket closing (unmounted) unplugs in order and exits with 0;
//! * removal is detected off this loop, by the health probe on its own thread
//!   ([`super::health_probe`]), which unplugs a vanished device at once; this loop unbinds an
//!   unplugged device on its next wake, whatever woke it, so new opens answer ENODEV;
//! * the timer wakes the loop every period (to see a pending SIGTERM and unbind after a probe's
//!   unplug) and is re-armed on each tick; a timer that cannot be re-armed is logged and the loop
//!   goes on without those wakes;
//! * after any unplug, inputd's handle is closed before the loop waits or reads it again: displayd
//!   has no display to offer any more;
//! * every wake drains inputd (it does not signal after every batch), and Activate(vt) replays that
//!   VT's state on the device, also for the events read before a failed read;
//! * only a failing event queue or scheme socket ends the loop with 1.

use super::startup::VtEvent;
use crate::device::Unplug;
use crate::scheme::DisplayScheme;

/// What woke the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// The scheme socket has requests.
    Scheme,
    /// inputd's handle has events.
    Inputd,
    /// The loop's timer fired (every 250 ms on Redox).
    Timer,
    /// A signal interrupted the wait.
    Interrupted,
}

/// What serving the scheme socket found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Served {
    /// Every queued request was answered; the socket stays open.
    Open,
    /// The socket closed: the scheme was unmounted.
    Unmounted,
}

/// The operating system's side of the loop.
pub trait LoopIo {
    /// Its error.
    type Error: std::fmt::Display;
    /// Blocks until a source is ready or a signal arrives.
    fn wait(&mut self) -> Result<Wake, Self::Error>;
    /// Answers every queued request on the scheme socket.
    fn serve(&mut self, scheme: &mut DisplayScheme) -> Result<Served, Self::Error>;
    /// Appends every VtEvent queued on inputd's handle to `events` (none once it is closed); on an
    /// error, the events read before it are still there.
    fn vt_events(&mut self, events: &mut Vec<VtEvent>) -> Result<(), Self::Error>;
    /// Closes inputd's handle.
    fn close_inputd(&mut self);
    /// Arms the loop's timer for its next tick.
    fn arm_timer(&mut self) -> Result<(), Self::Error>;
    /// Whether SIGTERM has arrived.
    fn terminate_requested(&self) -> bool;
}

/// Runs the loop until the daemon should exit; returns its exit code.
pub fn run<L: LoopIo>(io: &mut L, scheme: &mut DisplayScheme) -> i32 {
    let mut inputd = Inputd { open: true };
    loop {
        if io.terminate_requested() {
            if scheme.unplug_bound(Unplug::Orderly) {
                log::info!("SIGTERM: device unplugged; exiting once the last handle is closed");
            }
            inputd.close_after_unplug(io, scheme);
            // The root handle from registration stays; anything more is a client's.
            if scheme.open_handles() <= 1 {
                log::info!("SIGTERM: no handle left; exiting");
                return 0;
            }
        }
        let wake = match io.wait() {
            Ok(wake) => wake,
            Err(error) => {
                log::error!("event queue: {error}");
                return 1;
            }
        };
        match wake {
            Wake::Scheme => match io.serve(scheme) {
                Ok(Served::Open) => {}
                Ok(Served::Unmounted) => {
                    log::info!("scheme unmounted: shutting down");
                    scheme.unplug_bound(Unplug::Orderly);
                    return 0;
                }
                Err(error) => {
                    log::error!("scheme socket: {error}");
                    return 1;
                }
            },
            Wake::Timer => {
                if let Err(error) = io.arm_timer() {
                    log::error!("timer: {error}; no more timed wakes");
                }
            }
            Wake::Inputd | Wake::Interrupted => {}
        }
        // The health probe (on its thread) or a call that found the device gone has unplugged it:
        // unbind it now, so inputd's handle closes and new opens answer ENODEV.
        if scheme.unbind_if_unplugged() {
            log::warn!("the device vanished: unplugged and unbound");
        }
        inputd.close_after_unplug(io, scheme);
        inputd.drain(io, scheme);
    }
}

/// The loop's side of inputd's handle.
struct Inputd {
    open: bool,
}

impl Inputd {
    fn close_after_unplug<L: LoopIo>(&mut self, io: &mut L, scheme: &DisplayScheme) {
        if self.open && scheme.device().is_none() {
            io.close_inputd();
            self.open = false;
            log::info!("device unplugged: inputd handle closed");
        }
    }

    fn drain<L: LoopIo>(&mut self, io: &mut L, scheme: &DisplayScheme) {
        if !self.open {
            return;
        }
        let mut events = Vec::new();
        let read = io.vt_events(&mut events);
        apply_vt_events(scheme, events);
        if let Err(error) = read {
            log::warn!("inputd: {error}");
        }
    }
}

/// Applies inputd's events: Activate(vt) shows that VT's state on the bound device.
pub fn apply_vt_events(scheme: &DisplayScheme, events: Vec<VtEvent>) {
    for event in events {
        match event {
            VtEvent::Activate(vt) => {
                log::info!("inputd: activate VT {vt}");
                scheme.activate(vt);
            }
            VtEvent::Unknown(kind) => log::warn!("inputd: unknown event kind {kind}"),
        }
    }
}
