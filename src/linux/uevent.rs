//! The kernel's device events on Linux: a `NETLINK_KOBJECT_UEVENT` socket and the parse of its
//! messages (`remove@/devices/...` followed by `KEY=VALUE` lines, each NUL-terminated).
//!
//! Guarantees: only messages the kernel itself sent (sender port 0) are returned, so no other
//! process can make displayd unplug a device; a malformed message is skipped, never a panic; when
//! the kernel had to drop messages (a full receive buffer), the caller is told, so it can look at
//! sysfs again instead of trusting the events it saw.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// One kernel uevent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uevent {
    /// `add`, `remove`, `bind`, `change`, ...
    pub action: String,
    /// The device's path under /sys (`/devices/pci0000:00/0000:00:1c.0/0000:01:00.0`).
    pub devpath: String,
    vars: Vec<(String, String)>,
}

impl Uevent {
    /// Parses one message: a `action@devpath` header, then `KEY=VALUE` entries. `ACTION` and
    /// `DEVPATH` entries, when present, win over the header.
    ///
    /// ```
    /// use displayd::linux::uevent::Uevent;
    /// let event = Uevent::parse(b"remove@/devices/p/0000:01:00.0\0ACTION=remove\0SUBSYSTEM=pci\0PCI_SLOT_NAME=0000:01:00.0\0")
    ///     .unwrap();
    /// assert_eq!(event.action, "remove");
    /// assert_eq!(event.pci_address(), Some("0000:01:00.0"));
    /// assert!(Uevent::parse(b"libudev\0\xfe\xed").is_none());
    /// ```
    pub fn parse(message: &[u8]) -> Option<Uevent> {
        let mut fields = message.split(|&b| b == 0).filter(|f| !f.is_empty());
        let header = std::str::from_utf8(fields.next()?).ok()?;
        let (action, devpath) = header.split_once('@')?;
        let mut event = Uevent { action: action.into(), devpath: devpath.into(), vars: Vec::new() };
        for field in fields {
            let Some((key, value)) = std::str::from_utf8(field).ok().and_then(|f| f.split_once('=')) else {
                continue;
            };
            match key {
                "ACTION" => event.action = value.into(),
                "DEVPATH" => event.devpath = value.into(),
                _ => event.vars.push((key.into(), value.into())),
            }
        }
        Some(event)
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.vars.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The PCI address (`0000:01:00.0`) of a PCI device's event; `None` for any other subsystem.
    pub fn pci_address(&self) -> Option<&str> {
        self.get("SUBSYSTEM").filter(|&s| s == "pci").and(self.get("PCI_SLOT_NAME"))
    }
}

/// What waiting for a device event brought.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Received {
    /// An event.
    Event(Uevent),
    /// Nothing within the timeout.
    Nothing,
    /// Events were lost (the receive buffer overflowed): sysfs is the only truth now.
    Lost,
}

/// Where device events come from: the kernel's uevent socket, or a test's queue.
pub trait DeviceEvents {
    /// The next event, waiting at most `timeout`.
    fn next_event(&mut self, timeout: Duration) -> io::Result<Received>;
}

/// A socket subscribed to the kernel's uevents.
pub struct UeventSocket {
    fd: OwnedFd,
}

/// The kernel's uevent multicast group (udev's re-broadcasts use group 2).
const KERNEL_GROUP: u32 = 1;

impl UeventSocket {
    /// Subscribes. Open it before scanning sysfs, so that no device can come or go unseen between
    /// the scan and the first event.
    pub fn open() -> io::Result<UeventSocket> {
        // SAFETY: plain socket creation; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_KOBJECT_UEVENT,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: an all-zero sockaddr_nl is valid; the fields that matter are set below.
        let mut address: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        address.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        address.nl_groups = KERNEL_GROUP;
        // SAFETY: `address` is a valid sockaddr_nl and the length is its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&address as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(UeventSocket { fd })
    }

    fn wait_readable(&self, timeout: Duration) -> io::Result<bool> {
        let mut poll = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let millis = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd.
        match unsafe { libc::poll(&mut poll, 1, millis) } {
            rc if rc < 0 => {
                let error = io::Error::last_os_error();
                if error.kind() == io::ErrorKind::Interrupted {
                    Ok(false)
                } else {
                    Err(error)
                }
            }
            rc => Ok(rc > 0),
        }
    }
}

impl DeviceEvents for UeventSocket {
    fn next_event(&mut self, timeout: Duration) -> io::Result<Received> {
        if !self.wait_readable(timeout)? {
            return Ok(Received::Nothing);
        }
        let mut buffer = vec![0u8; 16 << 10];
        // SAFETY: as for bind; recvfrom fills at most the given sizes.
        let mut sender: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        let mut sender_len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
        // SAFETY: the buffer and the address are valid for the lengths passed.
        let received = unsafe {
            libc::recvfrom(
                self.fd.as_raw_fd(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                libc::MSG_DONTWAIT,
                (&mut sender as *mut libc::sockaddr_nl).cast(),
                &mut sender_len,
            )
        };
        if received < 0 {
            let error = io::Error::last_os_error();
            return match error.raw_os_error() {
                Some(libc::ENOBUFS) => {
                    log::warn!("uevent: the kernel dropped events (receive buffer full)");
                    Ok(Received::Lost)
                }
                Some(libc::EAGAIN | libc::EINTR) => Ok(Received::Nothing),
                _ => Err(error),
            };
        }
        if sender.nl_pid != 0 {
            log::warn!("uevent: ignored a message from user process {}", sender.nl_pid);
            return Ok(Received::Nothing);
        }
        Ok(Uevent::parse(&buffer[..received as usize]).map_or(Received::Nothing, Received::Event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_kernels_pci_add_and_remove_messages() {
        let add = b"add@/devices/pci0000:00/0000:00:1c.1/0000:02:00.0\0ACTION=add\0\
            DEVPATH=/devices/pci0000:00/0000:00:1c.1/0000:02:00.0\0SUBSYSTEM=pci\0\
            PCI_CLASS=38000\0PCI_ID=1234:1111\0PCI_SLOT_NAME=0000:02:00.0\0SEQNUM=1042\0";
        let event = Uevent::parse(add).unwrap();
        assert_eq!(event.action, "add");
        assert_eq!(event.devpath, "/devices/pci0000:00/0000:00:1c.1/0000:02:00.0");
        assert_eq!(event.pci_address(), Some("0000:02:00.0"));
        assert_eq!(event.get("PCI_ID"), Some("1234:1111"));
        assert_eq!(event.get("SEQNUM"), Some("1042"));
    }

    #[test]
    fn other_subsystems_and_garbage_have_no_pci_address_and_never_panic() {
        let block = Uevent::parse(b"remove@/devices/virtual/block/loop0\0SUBSYSTEM=block\0").unwrap();
        assert_eq!(block.action, "remove");
        assert_eq!(block.pci_address(), None);
        assert!(Uevent::parse(b"").is_none());
        assert!(Uevent::parse(b"no header\0").is_none());
        let odd = Uevent::parse(b"change@/x\0\xff\xfe\0NOEQUALS\0PCI_SLOT_NAME=1\0").unwrap();
        assert_eq!(odd.pci_address(), None, "no SUBSYSTEM=pci");
        for len in 0..64 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 % 256) as u8).collect();
            let _ = Uevent::parse(&bytes);
        }
    }

    #[test]
    fn the_socket_subscribes_and_a_wait_ends_without_error() {
        let mut socket = UeventSocket::open().expect("receiving uevents needs no privilege");
        socket.next_event(Duration::from_millis(30)).unwrap();
    }
}
