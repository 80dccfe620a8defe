"""The blocks ``make formal`` checks, by name."""

from __future__ import annotations

from . import csr, irq_remap, link_receiver, router, vfio_walker
from .core import FormalBlock

BLOCKS: dict[str, FormalBlock] = {
    b.name: b for b in (csr.BLOCK, irq_remap.BLOCK, link_receiver.BLOCK, router.BLOCK,
                        vfio_walker.BLOCK)}
