//! Dumb-buffer memory on Linux hosts: each buffer its own anonymous mapping.

use std::sync::Arc;

use syscall::error::{Error, Result, ENOMEM};

use crate::device::anon::AnonymousMapping;
use crate::kms::{Allocator, BufferMemory};

/// Hands out one fresh anonymous mapping per dumb buffer.
pub struct HostAllocator;

impl Allocator for HostAllocator {
    fn allocate(&self, len: usize) -> Result<Arc<dyn BufferMemory>> {
        let mapping = AnonymousMapping::new(len, false).map_err(|_| Error::new(ENOMEM))?;
        Ok(Arc::new(mapping))
    }
}

impl BufferMemory for AnonymousMapping {
    fn address(&self) -> usize {
        self.base().as_ptr() as usize
    }
    fn len(&self) -> usize {
        AnonymousMapping::len(self)
    }
    fn shared(&self) -> crate::device::mmio::Shared<'_> {
        AnonymousMapping::shared(self)
    }
}
