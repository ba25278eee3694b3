//! displayd: a Redox OS display driver for the QEMU/Bochs adapter that survives the device
//! disappearing at any moment.
//!
//! The crate is the driver, and it is layered; the arrows point one way: [`guard`] (lifetimes) ←
//! device ← uapi ← kms ← [`device_object`] ← scheme ← platform (Redox) and linux (a real PCI
//! function on Linux) ← the binary. What it is tested and demonstrated with (the emulated device, a stand-in
//! kernel, Orbital's and fbcond's call sequences, the demo, the QEMU guest's scenario) is the
//! `displayd-testkit` crate beside it (`testkit/`), which depends on this one and never the other
//! way. See the README for the architecture and the unplug policy.
//!
//! # Threads and locks
//!
//! * **On Redox** displayd runs two threads. The event loop ([`platform::event_loop`]) serves scheme
//!   requests one at a time, applies inputd's VT switches, looks for a pending SIGTERM at every wake
//!   and unbinds a device that was unplugged. The health probe ([`platform::health_probe`]) reads
//!   the ID register every 250 ms and unplugs a vanished device on its own thread, so no request,
//!   however long, delays detection, and the unplug waits only for the presence section under
//!   way. Clients are other processes, writing their mapped dumb buffers while displayd copies out
//!   of them.
//! * **On a Linux host** (the test kit's demo, tests and QEMU `guest`) the clients are threads of
//!   the same process, calling the scheme through the test kit's stand-in kernel, which holds no
//!   lock across a call: calls, and unplugs from other threads, really overlap. Removal is detected
//!   on a thread that serves no requests (the Linux platform's [`linux::hotplug`]: uevents, sysfs
//!   and the probe; in the QEMU guest that thread also starts and joins the clients between
//!   events) or triggered by a test from any thread.
//!
//! Locks, outermost first; none is taken in the other order:
//! 1. the scheme's handle table, its bound device and its list of readable handles
//!    ([`scheme::DisplayScheme`]): each taken only to look up, insert or remove, never while a
//!    call is served, and never two at once;
//! 2. a device object's KMS state (`Kms`'s `state` mutex): held for one whole ioctl, a VT replay
//!    or a close;
//! 3. `Bochs`'s frame mutex (VRAM with the mode and scan-out offset): held for one hardware
//!    operation, always inside a presence section.
//!
//! `guard::Releases` has its own mutex, taken only while a device object is being built and when
//! it is dropped. The presence guard itself takes no lock: entering a section is a per-thread slot
//! and a fence.
//!
//! A **presence section** ([`guard::Revocable::try_access`] until the returned access drops)
//! protects the hardware, the BAR mappings: unplug refuses new sections, waits for every open one to
//! end, and only then drops the mappings, so no register or VRAM access can run on an unmapped BAR.
//! It says nothing about who else writes VRAM: **VRAM has one writer by type**. Writing a
//! [`device::mmio::Vram`] takes `&mut`, and the Bochs driver keeps its `Vram` inside the frame
//! mutex, so every writer (`blit`, `flip`, `clear`) holds that lock for its whole access.
//!
//! Memory shared with other threads of this process (dumb buffers and the emulated VRAM on Linux
//! hosts) is only ever accessed in atomic words ([`device::words`]), so those threads never race
//! with displayd's copies in Rust's model; memory shared with other processes (Redox clients) or
//! with the device is copied with plain `memcpy`s ([`device::mmio::Shared`]).
//!
//! # Words
//!
//! One concept, one word; the code's names follow these where they differ only in spelling.
//! * **device object**: what open handles hold ([`device_object::DeviceObject`], Linux's
//!   `drm_device`): mode state, per-VT state, managed releases. Freed at the last close.
//! * **hardware**: the BAR mappings, kept in a [`guard::Revocable`]; exists only while bound.
//! * **section**: a presence section, from [`guard::Revocable::try_access`] until its access drops.
//! * **removal**: the device leaving the machine, which the driver does not control: `device_del`
//!   in QEMU, or in the test kit's emulated device `remove` (its BARs fault from then on, the
//!   tripwire) and `yank` (its registers read all-ones or zeros, and nothing says so).
//! * **unplug**: the driver's answer to a removal, or its own orderly stop (control path, SIGTERM):
//!   refuse new sections, wait for the open ones, drop the hardware. *Orderly* or *surprise*.
//! * **revoke**: the step of an unplug that drops the hardware ([`guard::Revocable::revoke`]).
//! * **unbind**: the scheme letting go of a device object after its unplug, so new opens answer
//!   ENODEV; the object lives on while handles hold it.
//! * **gone**: what a call learns when the hardware is already revoked (`DeviceError::Gone`);
//!   **vanished**: the health probe's verdict when the ID register no longer reads a Bochs ID.
//! * **orderly** / **surprise**: the two kinds of unplug ([`device::Unplug`]): the driver's
//!   own stop while the device is still there (scanout off first), or its answer to a removal it
//!   learned of afterwards (nothing touched).
//! * **slot**: only the guard's per-thread presence slot. A PCI function is named by its
//!   **address** (`0000:00:02.0`); a test's emulated device is called `emulated`.
//! * **retired**: a presence that was dropped, so threads forget their slot in it (guard). A sysfs
//!   node the Linux platform will never bind again is **spent**.
//! * **bind**: a device object is bound once ([`device_object::DeviceObject::bind`]: probed and
//!   built), then the scheme binds it (`DisplayScheme::bind`: new opens reach it); **unbind** undoes
//!   the second.
//! * **Linux host**: displayd running on Linux, in-process with its clients: the test kit's demo
//!   and tests on this machine, or the QEMU guest. The **host** alone is the machine running QEMU.
//! * **absent**: the health check's verdict ([`device_object::Absent`]): the ID register vanished,
//!   or the device was already unplugged.
//! * **mapping**: memory mapped into an address space. displayd's own are `HostMapping` (Linux) and
//!   `RedoxMapping` (Redox): BARs and dumb buffers; a `Vram` or `Mmio` reaches its BAR through a
//!   `MappedRange` that owns one; a client's `mmap` of a dumb buffer in the test kit's stand-in
//!   kernel is a `ClientMapping`.
//! * **PCI function**: pcid's `PciFunction` (what pcid-spawner hands over on Redox) and the Linux
//!   platform's `SysfsFunction` (a function found under `/sys/bus/pci`).

pub mod device;
pub mod device_object;
pub mod guard;
pub mod kms;
#[cfg(target_os = "linux")]
pub mod linux;
pub mod platform;
pub mod scheme;
pub mod uapi;
