"""The blocks ``make formal`` checks, by name."""

from __future__ import annotations

from . import (
    csr,
    irq_remap,
    link_credits,
    link_dllp,
    link_receiver,
    link_transmitter,
    router,
    vfio_walker,
)
from .core import FormalBlock

BLOCKS: dict[str, FormalBlock] = {b.name: b for b in (
    csr.BLOCK, irq_remap.BLOCK, link_credits.BLOCK, link_dllp.BLOCK, link_receiver.BLOCK,
    link_transmitter.BLOCK, router.BLOCK, vfio_walker.BLOCK)}
