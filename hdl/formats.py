"""Amaranth layouts of every stream and record, derived from the model's parameters.

Note: no `from __future__ import annotations` here: `data.Struct` reads its annotations.

The model (``model/``) is the single source of widths and encodings; this module only
turns them into ``amaranth.lib.data`` layouts so blocks and tests agree bit for bit.
"""


from amaranth.hdl import unsigned
from amaranth.lib import data

from model.common import bits_for  # re-exported: hdl blocks import it from here
from model.protocol import HEADER_FIELDS
from model.state import OP_BITS, ImageLayout

from .irq_remap import delivery_layout


def vf_request_layout(layout: ImageLayout, n_slots: int, tag_bits: int) -> data.StructLayout:
    """A request to one slot of a VF unit."""
    return data.StructLayout({
        "slot": bits_for(n_slots), "op": OP_BITS, "addr": layout.addr_bits,
        "data": 32, "tag": tag_bits})


def vf_response_layout(n_slots: int, tag_bits: int) -> data.StructLayout:
    return data.StructLayout({"slot": bits_for(n_slots), "tag": tag_bits, "data": 32,
                              "error": 1})


def irq_layout(layout: ImageLayout, n_slots: int) -> data.StructLayout:
    """An MSI-X message raised by a slot: the vector and its table entry's address/data."""
    return data.StructLayout({"slot": bits_for(n_slots), "vector": bits_for(layout.msix_vectors),
                              "addr": 32, "data": 32})


def descriptor_layout(layout: ImageLayout, n_slots: int) -> data.StructLayout:
    """A DMA descriptor: words [offset, offset+length) of a slot's image."""
    return data.StructLayout({"slot": bits_for(n_slots), "offset": layout.addr_bits + 1,
                              "length": layout.addr_bits + 1})


class ChunkBeat(data.Struct):
    """One beat of a DMA chunk or a protocol message; ``last`` marks the final beat."""
    data: 32
    last: 1


class DmaStatus(data.Struct):
    """Completion of one DMA descriptor."""
    bounds_error: 1   # refused: outside the slot's image (nothing written / read)
    crc_error: 1      # write side: the chunk's CRC beat did not match its data
    length_error: 1   # write side: ``last`` came early or late


def header_field(word, name: str):
    """Slice a message header field (model.protocol.HEADER_FIELDS) out of word 0."""
    lsb, width = HEADER_FIELDS[name]
    return word[lsb:lsb + width]


__all__ = ["bits_for", "vf_request_layout", "vf_response_layout", "irq_layout",
           "system_request_layout", "system_response_layout", "system_irq_layout",
           "descriptor_layout", "VF_ID_BITS", "ChunkBeat", "DmaStatus", "header_field",
           "unsigned"]



# The VF id space a VM can name (model.protocol.MAX_VFS VFs): ids the system does not have
# are representable, so they get an error response instead of aliasing a real VF.
VF_ID_BITS = 8


def system_request_layout(config) -> data.StructLayout:
    """A VM's request to VF ``vf`` (the stable VF id; the system finds its slot)."""
    return data.StructLayout({"vf": VF_ID_BITS, "op": OP_BITS,
                              "addr": config.layout.addr_bits, "data": 32,
                              "tag": config.tag_bits})


def system_response_layout(config) -> data.StructLayout:
    return data.StructLayout({"vf": VF_ID_BITS, "tag": config.tag_bits,
                              "data": 32, "error": 1})


def system_irq_layout(config) -> data.StructLayout:
    """An interrupt as the VM gets it: the remapper's delivery {vm, guest_vector, vf,
    vector} (hdl/irq_remap.py ``delivery_layout``)."""
    return delivery_layout(config.irq_remap)
