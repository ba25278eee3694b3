//! The Redox platform: pcid's channel and BAR mappings, dumb-buffer memory, the scheme socket,
//! inputd, the timer, the health probe's thread and the event loop (protocol reference §1–§3, §6).
//!
//! Cross-built against Redox's relibc and run under QEMU by `tests/redox` on every CI run. Its
//! logic lives in [`super::startup`] (start-up order), [`super::event_loop`] (what each wake-up
//! means) and [`crate::scheme`], which are tested on Linux; this file only talks to the system.

use std::io::{Read, Write};
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use libredox::flag::{
    MAP_PRIVATE, MAP_SHARED, O_CLOEXEC, O_CREAT, O_RDONLY, O_RDWR, O_WRONLY, PROT_READ, PROT_WRITE,
};
use redox_scheme::scheme::{register_sync_scheme, SchemeState, SchemeSync};
use redox_scheme::{RequestKind, Response, SignalBehavior, Socket};
use syscall::error::{Error, Result, EAGAIN, EINTR, EINVAL, ENOMEM, EWOULDBLOCK};
use syscall::flag::{EventFlags, CLOCK_MONOTONIC};

use super::event_loop::{self, LoopIo, Served, Wake};
use super::health_probe::HealthProbe;
use super::pcid::{bar_mmap_offset, MemoryType, PciFunction, PcidClient, PcidError};
use super::startup::{decode_vt_events, Env, Platform, VtEvent, READY_BYTE, VT_EVENT_BYTES};
use crate::device::bochs::{Hardware, PciId};
use crate::device::mmio::{Mmio, Vram};
use crate::device_object::DeviceObject;
use crate::guard::Releases;
use crate::kms::{Allocator, BufferMemory, PAGE};
use crate::scheme::DisplayScheme;

/// Blocks SIGTERM for good: displayd never takes a signal while it runs. The event loop finds a
/// SIGTERM among the pending signals instead ([`sigterm_pending`]), at its next wake; the
/// timer wakes it at least every [`HEALTH_PERIOD_NS`]. Blocked before any other thread starts (the
/// health probe's), so every thread inherits the mask.
///
/// Why no handler: relibc's signal entry (redox-rt `__relibc_internal_sigentry`, x86_64, at relibc
/// e8d4ce48) uses RCX as scratch before it saves it, so a signal that arrives while a process runs
/// user code returns with RCX changed. On the first Redox run, SIGTERM landed inside the row copy of
/// a flush, whose loop bound lives in RCX: memcpy ran off the end of the client's buffer and
/// displayd died of a page fault.
fn block_sigterm() -> std::result::Result<(), String> {
    let mut set: libc::sigset_t = 0;
    // SAFETY: `set` is a valid signal set that the calls only write or read.
    let blocked = unsafe {
        libc::sigemptyset(&mut set) == 0
            && libc::sigaddset(&mut set, libc::SIGTERM) == 0
            && libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) == 0
    };
    blocked.then_some(()).ok_or_else(|| format!("blocking SIGTERM: {}", std::io::Error::last_os_error()))
}

/// Whether a SIGTERM is waiting (it stays blocked, so it stays pending once sent).
fn sigterm_pending() -> bool {
    let mut set: libc::sigset_t = 0;
    // SAFETY: as in `block_sigterm`.
    unsafe { libc::sigpending(&mut set) == 0 && libc::sigismember(&set, libc::SIGTERM) == 1 }
}

/// How often the health probe reads the ID register, and the event loop's timer wakes it.
const HEALTH_PERIOD_NS: i64 = 250_000_000;

fn io(error: libredox::error::Error) -> std::io::Error {
    std::io::Error::from_raw_os_error(error.errno())
}

/// The pcid channel fd as a byte stream.
struct Channel(usize);

impl Read for Channel {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        libredox::call::read(self.0, buf).map_err(io)
    }
}

impl Write for Channel {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        libredox::call::write(self.0, buf).map_err(io)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Closes the pcid channel when dropped. It travels with the MMIO mapping inside the revocable
/// hardware, so the channel closes when the device is unplugged, like the BARs (devres).
struct ClosesChannel(usize);

impl Drop for ClosesChannel {
    fn drop(&mut self) {
        log::info!("pcid channel closed");
        let _ = libredox::call::close(self.0);
    }
}

/// A region this process mapped; unmapped when dropped (BARs, dumb buffers).
struct RedoxMapping {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: a mapping is plain memory (or device memory) accessed only through raw copies and
// volatile accesses whose ordering is the driver's protocol.
unsafe impl Send for RedoxMapping {}
// SAFETY: as above.
unsafe impl Sync for RedoxMapping {}

impl RedoxMapping {
    fn new(fd: usize, offset: u64, len: usize, flags: u32) -> Result<RedoxMapping> {
        let args = libredox::call::MmapArgs {
            addr: std::ptr::null_mut(),
            length: len,
            prot: PROT_READ | PROT_WRITE,
            flags,
            fd,
            offset,
        };
        // SAFETY: a fresh mapping at an address the kernel chooses aliases nothing of ours.
        let base = unsafe { libredox::call::mmap(args) }.map_err(|e| Error::new(e.errno()))?;
        let base = NonNull::new(base.cast::<u8>()).ok_or(Error::new(ENOMEM))?;
        Ok(RedoxMapping { base, len })
    }
}

impl Drop for RedoxMapping {
    fn drop(&mut self) {
        // SAFETY: our own mapping, unmapped once; nothing refers to it after drop.
        let _ = unsafe { libredox::call::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

impl BufferMemory for RedoxMapping {
    fn address(&self) -> usize {
        self.base.as_ptr() as usize
    }
    fn len(&self) -> usize {
        self.len
    }
    fn shared(&self) -> crate::device::mmio::Shared<'_> {
        // SAFETY: mapped readable for as long as `self` is borrowed, and not a BAR; only clients
        // (other processes) write it, through their own mappings; displayd itself only reads it.
        unsafe { crate::device::mmio::Shared::foreign(self.base, self.len) }
    }
}

/// Dumb buffers: each its own anonymous mapping (`fd = !0`), never from the heap, never reused.
struct AnonymousAllocator;

impl Allocator for AnonymousAllocator {
    fn allocate(&self, len: usize) -> Result<Arc<dyn BufferMemory>> {
        if !len.is_multiple_of(PAGE) {
            return Err(Error::new(EINVAL));
        }
        Ok(Arc::new(RedoxMapping::new(usize::MAX, 0, len, MAP_PRIVATE)?))
    }
}

/// Everything the driver holds on Redox.
pub struct Redox {
    env: Env,
    pcid: PcidClient<Channel>,
    scheme: DisplayScheme,
    state: SchemeState,
    socket: Option<Socket>,
    inputd: Option<libredox::Fd>,
    events: Option<libredox::Fd>,
    timer: Option<libredox::Fd>,
    probe: Option<HealthProbe>,
    graphical_debug: Option<libredox::Fd>,
}

/// Event-queue tags of the sources.
const SOURCE_SCHEME: usize = 0;
const SOURCE_INPUTD: usize = 1;
const SOURCE_TIMER: usize = 2;

impl Redox {
    /// The platform on the fds pcid-spawner handed over.
    pub fn new(env: Env) -> Redox {
        Redox {
            env,
            pcid: PcidClient::new(Channel(env.pcid_channel)),
            scheme: DisplayScheme::new("display.bochs"),
            state: SchemeState::new(),
            socket: None,
            inputd: None,
            events: None,
            timer: None,
            probe: None,
            graphical_debug: None,
        }
    }

    /// Serves requests until the daemon should exit (see [`event_loop`]); returns the exit code.
    pub fn run(&mut self) -> i32 {
        let Some(events) = &self.events else { return 1 };
        let mut io = RedoxIo {
            socket: self.socket.as_ref(),
            state: &mut self.state,
            inputd: &mut self.inputd,
            events,
            timer: self.timer.as_ref(),
            graphical_debug: &mut self.graphical_debug,
        };
        event_loop::run(&mut io, &mut self.scheme)
    }

    fn subscribe_fd(&self, fd: usize, source: usize) -> Result<()> {
        let Some(events) = &self.events else { return Err(Error::new(EINVAL)) };
        let event = syscall::Event { id: fd, flags: EventFlags::EVENT_READ, data: source };
        events.write(&event).map_err(|e| Error::new(e.errno()))?;
        Ok(())
    }
}

/// Arms the health-probe timer one period from now (a `/scheme/time` timer fires once per write).
fn arm_timer(timer: &libredox::Fd) -> Result<()> {
    let mut time = syscall::TimeSpec::default();
    timer.read(&mut time).map_err(|e| Error::new(e.errno()))?;
    let nanos = i64::from(time.tv_nsec) + HEALTH_PERIOD_NS;
    time.tv_sec += nanos / 1_000_000_000;
    time.tv_nsec = (nanos % 1_000_000_000) as i32;
    timer.write(&time).map_err(|e| Error::new(e.errno()))?;
    Ok(())
}

/// Appends every VtEvent inputd has queued to `events` (it answers 0 bytes when none is left).
fn read_vt_events(inputd: &libredox::Fd, events: &mut Vec<VtEvent>) -> std::result::Result<(), String> {
    loop {
        let mut buf = [0u8; VT_EVENT_BYTES];
        let read = inputd.read(&mut buf).map_err(|e| e.to_string())?;
        if read == 0 {
            return Ok(());
        }
        events.extend(decode_vt_events(&buf[..read]).ok_or("inputd sent a partial VtEvent")?);
    }
}

/// Turns the kernel's graphical debug console off at the first VT activation, as Redox's graphics
/// drivers do: until then the kernel draws its log into the boot framebuffer, which is this
/// device's VRAM, so its lines would land on displayd's frames (seen on the first real run).
fn end_graphical_debug(graphical_debug: &mut Option<libredox::Fd>, events: &[VtEvent]) {
    if events.is_empty() {
        return;
    }
    if let Some(fd) = graphical_debug.take() {
        match fd.write(&[1]) {
            Ok(_) => log::info!("kernel console: graphical debug output turned off"),
            Err(error) => log::warn!("kernel console: graphical debug output stays on: {error}"),
        }
    }
}

/// The event loop's view of Redox: the event queue and its sources, everything but the scheme.
struct RedoxIo<'a> {
    socket: Option<&'a Socket>,
    state: &'a mut SchemeState,
    inputd: &'a mut Option<libredox::Fd>,
    events: &'a libredox::Fd,
    timer: Option<&'a libredox::Fd>,
    graphical_debug: &'a mut Option<libredox::Fd>,
}

impl LoopIo for RedoxIo<'_> {
    type Error = String;

    fn wait(&mut self) -> std::result::Result<Wake, String> {
        let mut event = syscall::Event::default();
        match self.events.read(&mut event) {
            Ok(n) if n == std::mem::size_of::<syscall::Event>() => Ok(match event.data {
                SOURCE_SCHEME => Wake::Scheme,
                SOURCE_TIMER => Wake::Timer,
                _ => Wake::Inputd,
            }),
            Ok(_) => Ok(Wake::Interrupted),
            Err(error) if error.errno() == EINTR => Ok(Wake::Interrupted),
            Err(error) => Err(error.to_string()),
        }
    }

    fn serve(&mut self, scheme: &mut DisplayScheme) -> std::result::Result<Served, String> {
        let Some(socket) = self.socket else { return Ok(Served::Open) };
        loop {
            match socket.next_request(SignalBehavior::Restart) {
                Ok(Some(request)) => match request.kind() {
                    RequestKind::Call(call) => {
                        let response = call.handle_sync(scheme, self.state);
                        socket
                            .write_response(response, SignalBehavior::Restart)
                            .map_err(|e| e.to_string())?;
                        // A flip-completion event became readable: tell the kernel, which wakes
                        // the clients waiting on that handle in their event queues.
                        for id in scheme.take_readable() {
                            let ready = Response::post_fevent(id, EventFlags::EVENT_READ.bits());
                            socket
                                .write_response(ready, SignalBehavior::Restart)
                                .map_err(|e| e.to_string())?;
                        }
                    }
                    RequestKind::OnClose { id } => scheme.on_close(id),
                    _ => {}
                },
                Ok(None) => return Ok(Served::Unmounted),
                Err(error) if error.errno == EAGAIN || error.errno == EWOULDBLOCK => return Ok(Served::Open),
                Err(error) => return Err(error.to_string()),
            }
        }
    }

    fn vt_events(&mut self, events: &mut Vec<VtEvent>) -> std::result::Result<(), String> {
        let read = self.inputd.as_ref().map_or(Ok(()), |inputd| read_vt_events(inputd, events));
        end_graphical_debug(self.graphical_debug, events);
        read
    }

    fn close_inputd(&mut self) {
        *self.inputd = None;
    }

    fn arm_timer(&mut self) -> std::result::Result<(), String> {
        self.timer.map_or(Ok(()), |timer| arm_timer(timer).map_err(|e| e.to_string()))
    }

    fn terminate_requested(&self) -> bool {
        sigterm_pending()
    }
}

impl Platform for Redox {
    type Error = String;

    fn pci_config(&mut self) -> std::result::Result<PciFunction, String> {
        self.pcid.config().map(|config| config.func).map_err(|e: PcidError| e.to_string())
    }

    fn bind_device(&mut self, function: &PciFunction) -> std::result::Result<(), String> {
        let size = |bar: usize| {
            function.bars[bar]
                .memory_size()
                .and_then(|s| usize::try_from(s).ok())
                .ok_or(format!("BAR{bar} is not memory"))
        };
        let (vram_len, mmio_len) = (size(0)?, size(2)?);
        let map = |bar: u8, kind: MemoryType, len: usize| {
            let offset = bar_mmap_offset(bar, kind, 0).ok_or("bad BAR")?;
            RedoxMapping::new(self.env.pcid_channel, offset, len, MAP_SHARED)
                .map_err(|e| format!("mapping BAR{bar}: {e}"))
        };
        let vram_map = map(0, MemoryType::WriteCombining, vram_len)?;
        let mmio_map = map(2, MemoryType::Uncacheable, mmio_len)?;
        let (vram_base, mmio_base) = (vram_map.base, mmio_map.base);
        // SAFETY: each BAR mapping covers its length and lives as long as its region (the owner);
        // the driver reaches it only through those regions.
        let vram = unsafe { Vram::mapped(vram_base, vram_len, Box::new(vram_map)) };
        let mmio_owner = Box::new((mmio_map, ClosesChannel(self.env.pcid_channel)));
        // SAFETY: as above.
        let mmio =
            unsafe { Mmio::mapped(mmio_base, mmio_len, mmio_owner) }.ok_or("the MMIO BAR is too small")?;
        let id = function.full_device_id;
        let pci = PciId {
            vendor: id.vendor_id,
            device: id.device_id,
            class: id.class,
            subclass: id.subclass,
            revision: id.revision,
        };
        let unique = format!("pci:{}", function.addr);
        let hardware = Hardware { mmio, vram };
        let device =
            DeviceObject::bind(pci, hardware, Arc::new(AnonymousAllocator), unique, 1, Releases::new())
                .map_err(|e| e.to_string())?;
        self.scheme.bind(device);
        Ok(())
    }

    fn register_scheme(&mut self, name: &str) -> std::result::Result<(), String> {
        self.scheme.rename(name);
        let socket = Socket::nonblock().map_err(|e| format!("scheme socket: {e}"))?;
        register_sync_scheme(&socket, name, &mut self.scheme)
            .map_err(|e| format!("registering {name}: {e}"))?;
        self.socket = Some(socket);
        Ok(())
    }

    fn open_inputd(&mut self, name: &str) -> std::result::Result<(), String> {
        let path = format!("/scheme/input/handle/{name}");
        let fd = libredox::Fd::open(&path, O_RDONLY | O_CLOEXEC, 0).map_err(|e| format!("{path}: {e}"))?;
        self.inputd = Some(fd);
        Ok(())
    }

    fn subscribe(&mut self) -> std::result::Result<(), String> {
        block_sigterm()?;
        let events = libredox::Fd::open("/scheme/event", O_CREAT | O_RDWR | O_CLOEXEC, 0)
            .map_err(|e| e.to_string())?;
        let timer = libredox::Fd::open(&format!("/scheme/time/{CLOCK_MONOTONIC}"), O_RDWR | O_CLOEXEC, 0)
            .map_err(|e| e.to_string())?;
        self.events = Some(events);
        // Opened now, written at the first activation (see `end_graphical_debug`).
        self.graphical_debug =
            libredox::Fd::open("/scheme/debug/disable-graphical-debug", O_WRONLY | O_CLOEXEC, 0)
                .map_err(|error| log::warn!("/scheme/debug/disable-graphical-debug: {error}"))
                .ok();
        let socket = self.socket.as_ref().map(|s| s.inner().raw()).ok_or("no scheme socket")?;
        let inputd = self.inputd.as_ref().map(libredox::Fd::raw).ok_or("no inputd handle")?;
        self.subscribe_fd(socket, SOURCE_SCHEME).map_err(|e| e.to_string())?;
        self.subscribe_fd(inputd, SOURCE_INPUTD).map_err(|e| e.to_string())?;
        self.subscribe_fd(timer.raw(), SOURCE_TIMER).map_err(|e| e.to_string())?;
        arm_timer(&timer).map_err(|e| e.to_string())?;
        self.timer = Some(timer);
        // After SIGTERM is blocked: the probe's thread inherits the mask, so no thread of displayd
        // ever takes the signal.
        let device = self.scheme.device().ok_or("no device bound")?;
        let period = Duration::from_nanos(HEALTH_PERIOD_NS as u64);
        self.probe =
            Some(HealthProbe::spawn(&device, period).map_err(|e| format!("health probe thread: {e}"))?);
        Ok(())
    }

    fn drain_inputd(&mut self) -> std::result::Result<(), String> {
        let Some(inputd) = &self.inputd else { return Ok(()) };
        let mut events = Vec::new();
        let read = read_vt_events(inputd, &mut events);
        end_graphical_debug(&mut self.graphical_debug, &events);
        event_loop::apply_vt_events(&self.scheme, events);
        read
    }

    fn notify_ready(&mut self) -> std::result::Result<(), String> {
        libredox::call::write(self.env.init_notify, &READY_BYTE).map_err(|e| format!("INIT_NOTIFY: {e}"))?;
        libredox::call::close(self.env.init_notify).map_err(|e| format!("INIT_NOTIFY: {e}"))
    }
}
