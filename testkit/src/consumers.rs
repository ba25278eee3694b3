//! Orbital's and fbcond's display sequences (protocol reference §5), replayed call for call against
//! the scheme, with their failure rules: where the real consumer would panic, these return
//! [`ConsumerError::WouldPanic`], so a test can prove displayd never drives them there.

use crate::drm::{self, Connector, Dumb};
use crate::kernel::{ClientMapping, Fd, Kernel};
use displayd::uapi::wire::{cap, client_cap};

/// Which consumer's rules apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consumer {
    /// Orbital: DIRTYFB errors are logged; GET_CONNECTOR errors and zero modes panic.
    Orbital,
    /// fbcond and fbbootlogd: DIRTYFB errors panic too.
    Fbcond,
}

/// How a consumer step failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsumerError {
    /// The real consumer would have panicked here (`unwrap`, an index, an assertion).
    WouldPanic(String),
    /// The real consumer would have exited or given up on the display, with this errno.
    Failed(&'static str, i32),
}

fn panics(what: &str) -> impl FnOnce(syscall::error::Error) -> ConsumerError + '_ {
    move |e| ConsumerError::WouldPanic(format!("{what}: errno {}", e.errno))
}

fn fails(what: &'static str) -> impl FnOnce(syscall::error::Error) -> ConsumerError {
    move |e| ConsumerError::Failed(what, e.errno)
}

/// A consumer's display: its fd, its framebuffer and the mapping it draws into.
pub struct ConsumerDisplay {
    consumer: Consumer,
    fd: Fd,
    connector: u32,
    crtc: u32,
    fb: u32,
    dumb: Dumb,
    mapping: ClientMapping,
    size: (u32, u32),
    /// DIRTYFB errors seen (Orbital only logs them).
    pub logged_errors: u32,
    /// Whether the last poll saw the connector connected.
    pub connected: bool,
}

impl ConsumerDisplay {
    /// Opens `v2/<vt>` and runs the consumer's start-up sequence.
    pub fn start(kernel: &Kernel, consumer: Consumer, vt: usize) -> Result<ConsumerDisplay, ConsumerError> {
        let fd = kernel.open(&format!("v2/{vt}"), 1000).map_err(panics("open of the display path"))?;
        if drm::get_cap(&fd, cap::DUMB_BUFFER).map_err(panics("GET_CAP(DUMB_BUFFER)"))? != 1 {
            return Err(ConsumerError::WouldPanic("dumb buffers unsupported".into()));
        }
        if consumer == Consumer::Orbital {
            drm::set_client_cap(&fd, client_cap::CURSOR_PLANE_HOTSPOT, 1).map_err(fails("SET_CLIENT_CAP"))?;
            // Either failing means "software cursor", which is what Bochs gets.
            let _ = drm::get_cap(&fd, cap::CURSOR_HEIGHT).and_then(|_| drm::get_cap(&fd, cap::CURSOR_WIDTH));
            let resources = drm::card_res(&fd).map_err(panics("resource_handles"))?;
            for &id in &resources.connectors {
                drm::get_connector(&fd, id, true).map_err(fails("GET_CONNECTOR"))?;
            }
        }
        let (connector, _) = drm::first_connected(&fd, true).map_err(panics("first_display"))?;
        let info = drm::get_connector(&fd, connector, true).map_err(panics("GET_CONNECTOR"))?;
        let resources = drm::card_res(&fd).map_err(panics("resource_handles"))?;
        let encoder = *info.encoders.first().ok_or_else(|| ConsumerError::WouldPanic("no encoder".into()))?;
        let (_, possible) = drm::get_encoder(&fd, encoder).map_err(panics("get_encoder"))?;
        let crtc = *resources
            .crtcs
            .iter()
            .enumerate()
            .find(|(i, _)| possible & (1 << i) != 0)
            .map(|(_, c)| c)
            .ok_or_else(|| ConsumerError::WouldPanic("no CRTC for the encoder".into()))?;
        let size = info.size(0).ok_or_else(|| ConsumerError::WouldPanic("modes[0]".into()))?;
        let (dumb, mapping, fb) = Self::framebuffer(&fd, consumer, size)?;
        drm::set_crtc(&fd, crtc, fb, &[connector], Some(&info.modes[0])).map_err(fails("SET_CRTC"))?;
        Ok(ConsumerDisplay {
            consumer,
            fd,
            connector,
            crtc,
            fb,
            dumb,
            mapping,
            size,
            logged_errors: 0,
            connected: true,
        })
    }

    fn framebuffer(
        fd: &Fd,
        consumer: Consumer,
        (w, h): (u32, u32),
    ) -> Result<(Dumb, ClientMapping, u32), ConsumerError> {
        let dumb = drm::create_dumb(fd, w, h).map_err(fails("CREATE_DUMB"))?;
        let offset = drm::map_dumb(fd, dumb.handle).map_err(fails("MAP_DUMB"))?;
        let mapping = fd.mmap(offset, dumb.size as usize).map_err(fails("mmap"))?;
        let _prefer_shadow = drm::get_cap(fd, cap::DUMB_PREFER_SHADOW).unwrap_or(1);
        let depth = if consumer == Consumer::Orbital { 32 } else { 24 };
        let fb = drm::add_fb(fd, w, h, dumb.pitch, depth, dumb.handle).map_err(fails("ADD_FB"))?;
        Ok((dumb, mapping, fb))
    }

    /// The display's size in pixels.
    pub fn size(&self) -> (u32, u32) {
        self.size
    }

    /// The fd (for extra calls in tests).
    pub fn fd(&self) -> &Fd {
        &self.fd
    }

    /// The framebuffer it shows, its CRTC and its connector (for extra calls in tests).
    pub fn ids(&self) -> (u32, u32, u32) {
        (self.fb, self.crtc, self.connector)
    }

    /// One frame: poll the connector size (resizing if it changed), write `pixels` (XRGB8888, rows
    /// of `rect.2 * 4` bytes) into the mapping at `rect`, then DIRTYFB that rectangle.
    pub fn frame(&mut self, rect: (u32, u32, u32, u32), pixels: &[u8]) -> Result<(), ConsumerError> {
        let info =
            drm::get_connector(&self.fd, self.connector, false).map_err(panics("GET_CONNECTOR in redraw"))?;
        let size = info.size(0).ok_or_else(|| ConsumerError::WouldPanic("modes[0] in redraw".into()))?;
        self.connected = info.connection == 1;
        if size != self.size {
            self.resize(&info, size);
        }
        let (x, y, w, h) = rect;
        if x + w > self.size.0 || y + h > self.size.1 || pixels.len() != (w * h * 4) as usize {
            return Err(ConsumerError::Failed("draw outside the screen", syscall::error::EINVAL));
        }
        for row in 0..h {
            let at = ((y + row) * self.dumb.pitch + x * 4) as usize;
            let src = &pixels[(row * w * 4) as usize..((row + 1) * w * 4) as usize];
            self.mapping.write(at, src);
        }
        let clip = [x as u16, y as u16, (x + w) as u16, (y + h) as u16];
        match (drm::dirty_fb(&self.fd, self.fb, &[clip]), self.consumer) {
            (Ok(()), _) => Ok(()),
            (Err(_), Consumer::Orbital) => {
                self.logged_errors += 1;
                Ok(())
            }
            (Err(e), Consumer::Fbcond) => {
                Err(ConsumerError::WouldPanic(format!("DIRTYFB: errno {}", e.errno)))
            }
        }
    }

    /// Orbital's resize path; errors are logged and the display keeps its size.
    fn resize(&mut self, info: &Connector, size: (u32, u32)) {
        let Ok((dumb, mapping, fb)) = Self::framebuffer(&self.fd, self.consumer, size) else {
            self.logged_errors += 1;
            return;
        };
        let _ = drm::destroy_dumb(&self.fd, self.dumb.handle);
        if drm::set_crtc(&self.fd, self.crtc, fb, &[self.connector], Some(&info.modes[0])).is_err() {
            self.logged_errors += 1;
        }
        let _ = drm::rm_fb(&self.fd, self.fb);
        (self.dumb, self.mapping, self.fb, self.size) = (dumb, mapping, fb, size);
    }
}
