"""Random VF-unit requests, shared by the cocotb bench (tb/vf_unit/test_vf_unit.py) and the
amaranth.sim tests (tests/hdl/test_vf_unit.py)."""

from __future__ import annotations

import random

from model.state import MSIX_ADDR_LO, MSIX_CTRL, MSIX_DATA, ImageLayout, Op


def random_request(rng: random.Random, layout: ImageLayout, n_slots: int,
                   addr_limit: int | None = None) -> tuple[int, Op, int, int]:
    """``(slot, op, addr, data)``, biased toward the MSI-X table and the PBA, where the
    interesting rules are: NOTIFYs mostly of a valid vector (sometimes not), MSI-X control
    words with mask/unmask values, PBA writes, image words, and (without ``addr_limit``,
    which bounds the plain image accesses) addresses past the image in the stride."""
    lay = layout
    limit = addr_limit or lay.image_words
    op = rng.choice([Op.READ, Op.WRITE, Op.ADD, Op.NOTIFY, Op.NOTIFY])
    vector = rng.randrange(lay.msix_vectors)
    kind = rng.random()
    if op == Op.NOTIFY:
        addr = rng.randrange(lay.stride)
        data = vector if kind < 0.9 else rng.choice([lay.msix_vectors, rng.getrandbits(32)])
    elif kind < 0.35:
        addr, data = lay.msix_word(vector, MSIX_CTRL), rng.choice([0, 1, 1, 0xFFFF_FFFF])
    elif kind < 0.5:
        addr = lay.msix_word(vector, rng.choice([MSIX_ADDR_LO, MSIX_DATA]))
        data = rng.getrandbits(32)
    elif kind < 0.58:
        addr = lay.pba_base + rng.randrange(lay.pba_words)
        data = rng.getrandbits(32) & rng.getrandbits(32)
    elif kind < 0.95 or addr_limit:
        addr, data = rng.randrange(limit), rng.getrandbits(32)
    else:
        addr, data = rng.randrange(lay.image_words, lay.stride), rng.getrandbits(32)
    return rng.randrange(n_slots), op, addr, data
