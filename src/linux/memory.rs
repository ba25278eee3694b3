//! Dumb-buffer memory on Linux hosts: each buffer its own anonymous mapping.

use std::sync::Arc;

use syscall::error::{Error, Result, ENOMEM};

use crate::device::host_mapping::HostMapping;
use crate::kms::{Allocator, BufferMemory};

/// Hands out one fresh anonymous mapping per dumb buffer.
pub struct HostAllocator;

impl Allocator for HostAllocator {
    fn allocate(&self, len: usize) -> Result<Arc<dyn BufferMemory>> {
        let mapping = HostMapping::anonymous(len, false).map_err(|_| Error::new(ENOMEM))?;
        Ok(Arc::new(mapping))
    }
}

impl BufferMemory for HostMapping {
    fn address(&self) -> usize {
        self.base().as_ptr() as usize
    }
    fn len(&self) -> usize {
        HostMapping::len(self)
    }
    fn shared(&self) -> crate::device::mmio::Shared<'_> {
        HostMapping::shared(self)
    }
}
