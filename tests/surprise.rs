//! The surprise-removal window: the device is yanked (its registers read all ones or all zeros, as
//! on real PCI and on QEMU) and, before the health probe has looked, a client or inputd drives it.
//! From the first moment the device is gone every call must get the README's unplug-policy answer
//! (or, for a call that only writes and so cannot notice, the answer a present device gives), so
//! neither fbcond nor Orbital ever meets an error it would crash on or log.
#![cfg(not(loom))]

use displayd::scheme::DisplayScheme;
use displayd_testkit::consumers::{Consumer, ConsumerDisplay};
use displayd_testkit::drm;
use displayd_testkit::emulated::{Config, EmulatedDevice, YankedReads};
use displayd_testkit::kernel::Kernel;
use displayd_testkit::plug;
use syscall::error::{ENODEV, ENXIO};

#[derive(Clone, Copy, Debug)]
enum Trigger {
    /// inputd switches VTs: the VT's mode is replayed on the dead device.
    VtSwitch,
    /// The client sets its mode again (as Orbital's resize path does).
    SetCrtc,
    /// The client flips to another framebuffer.
    PageFlip,
    /// The client flushes damage.
    DirtyFb,
    /// The client sets a cursor (Bochs has none).
    Cursor,
}

const VT: usize = 2;

fn pixels(w: u32, h: u32, value: u8) -> Vec<u8> {
    vec![value; (w * h * 4) as usize]
}

/// One run: `consumer` draws on VT 2, the device is yanked with `reads`, `trigger` happens before
/// any probe, then the consumer draws on, the probe runs, and the device is removed. Returns
/// what went wrong, if anything.
fn window(consumer: Consumer, reads: YankedReads, trigger: Trigger) -> Result<(), String> {
    let kernel = Kernel::new(DisplayScheme::new("display.bochs")).unwrap();
    let emulated = EmulatedDevice::new(Config::default()).unwrap();
    let device = plug(&kernel, &emulated, 1, || {}).unwrap();
    let mut display = ConsumerDisplay::start(&kernel, consumer, VT).map_err(|e| format!("start: {e:?}"))?;
    kernel.scheme().activate(VT);
    let (fb, crtc, connector) = display.ids();
    let (w, h) = display.size();
    display.frame((0, 0, 64, 64), &pixels(64, 64, 1)).map_err(|e| format!("first frame: {e:?}"))?;

    emulated.yank(reads);
    let fd = display.fd();
    let answer = match trigger {
        Trigger::VtSwitch => {
            kernel.scheme().activate(VT);
            Ok(())
        }
        Trigger::SetCrtc => {
            let info =
                drm::get_connector(fd, connector, false).map_err(|e| format!("GET_CONNECTOR: {e:?}"))?;
            drm::set_crtc(fd, crtc, fb, &[connector], Some(&info.modes[0]))
        }
        Trigger::PageFlip => {
            let dumb = drm::create_dumb(fd, w, h).map_err(|e| format!("CREATE_DUMB: {e:?}"))?;
            let depth = if consumer == Consumer::Orbital { 32 } else { 24 }; // the format it shows
            let other = drm::add_fb(fd, w, h, dumb.pitch, depth, dumb.handle)
                .map_err(|e| format!("ADD_FB: {e:?}"))?;
            drm::page_flip(fd, crtc, other, 0, 0)
        }
        Trigger::DirtyFb => drm::dirty_fb(fd, fb, &[[0, 0, 32, 32]]),
        Trigger::Cursor => drm::cursor(fd, crtc, 0, 0, 0),
    };
    // Success (a write that cannot notice), or the policy's answer; ENXIO is what a cursor call
    // gets from a present Bochs device too.
    match answer {
        Ok(()) => {}
        Err(e) if e.errno == ENODEV || (e.errno == ENXIO && matches!(trigger, Trigger::Cursor)) => {}
        Err(e) => return Err(format!("the trigger got errno {}", e.errno)),
    }
    let draw = |display: &mut ConsumerDisplay, when: &str| -> Result<(), String> {
        for value in 2..5 {
            display.frame((0, 0, 64, 64), &pixels(64, 64, value)).map_err(|e| format!("{e:?} ({when})"))?;
        }
        if display.logged_errors != 0 {
            return Err(format!("{} DIRTYFB errors logged ({when})", display.logged_errors));
        }
        Ok(())
    };
    draw(&mut display, "in the window")?;
    if matches!(trigger, Trigger::VtSwitch | Trigger::SetCrtc) {
        // A mode set read back wrong and the ID register said why: unplugged on the spot.
        if !device.kms.adapter().is_unplugged() {
            return Err("the failed mode set did not unplug the vanished device".into());
        }
        if display.connected {
            return Err("GET_CONNECTOR still says connected after the unplug".into());
        }
        match kernel.open("v2/5", 1000) {
            Err(e) if e.errno == ENODEV => {}
            other => return Err(format!("a new open got {:?}, not ENODEV", other.map(drop))),
        }
    }
    displayd_testkit::probe_now(kernel.scheme());
    if kernel.scheme().device().is_some() {
        return Err("still bound after the health probe".into());
    }
    emulated.remove(); // from here any hardware access aborts the test
    draw(&mut display, "after the probe")?;
    if display.connected {
        return Err("GET_CONNECTOR still says connected after the probe".into());
    }
    match drm::set_crtc(display.fd(), crtc, fb, &[connector], None) {
        Err(e) if e.errno == ENODEV => Ok(()),
        other => Err(format!("SET_CRTC after the unplug got {:?}, not ENODEV", other)),
    }
}

#[test]
fn every_call_in_the_surprise_removal_window_gets_a_policy_answer() {
    let mut failures = Vec::new();
    for consumer in [Consumer::Fbcond, Consumer::Orbital] {
        for reads in [YankedReads::Ones, YankedReads::Zeros] {
            for trigger in
                [Trigger::VtSwitch, Trigger::SetCrtc, Trigger::PageFlip, Trigger::DirtyFb, Trigger::Cursor]
            {
                if let Err(what) = window(consumer, reads, trigger) {
                    failures.push(format!("{trigger:?} {consumer:?} {reads:?}: {what}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
