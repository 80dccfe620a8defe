"""Shapes and small helpers shared by the parts of a link port (``hdl.link``).

Frame format, sequence numbers, LCRC, DLLPs and parameter checks: ``model/link.py`` (the
single source; docs/protocol.md is generated from it).
"""

# No ``from __future__ import annotations``: wiring.Component reads the member annotations.
from amaranth.hdl import Cat, Const, Value, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import Out

from model.common import check_fault_inject
from model.link import LINK_HEADER_FIELDS, SEQ_BITS, STAT_NAMES, LinkParams

from ..crc32 import crc32_word_matrix


def _header_layout() -> data.StructLayout:
    fields, offset = {}, 0
    for name, (lsb, width) in sorted(LINK_HEADER_FIELDS.items(), key=lambda kv: kv[1][0]):
        assert lsb == offset, "model.link.LINK_HEADER_FIELDS must tile the word from bit 0"
        fields[name] = width
        offset += width
    assert offset == 32
    return data.StructLayout(fields)


LinkHeader = _header_layout()
LinkStats = data.StructLayout({name: 32 for name in STAT_NAMES})
READ_FIFO_DEPTH = 4   # rows read ahead per class, so the read-out runs at one word a cycle

# A good ACK or NAK DLLP as the receiver saw it: ``seq`` is the last packet it acknowledges.
AckEvent = data.StructLayout({"valid": 1, "seq": SEQ_BITS, "nak": 1})
# A good FC DLLP: the absolute credit limit (rows, modulo 2**SEQ_BITS) of class ``tc``.
FcEvent = data.StructLayout({"valid": 1, "tc": 1, "limit": SEQ_BITS})
# Per-class modulo-2**SEQ_BITS row counters (credits, buffer pointers).
SeqPair = data.ArrayLayout(unsigned(SEQ_BITS), 2)


def wire_signature(link_width: int) -> wiring.Signature:
    """One direction of the wire, as seen by its transmitter: ``flit`` is valid when
    ``valid``; ``sop`` marks the first flit of a frame (the framing bit, as PCIe's K-codes
    or sync header). There is no ready: a wire cannot be stalled."""
    return wiring.Signature({"valid": Out(1), "sop": Out(1), "flit": Out(link_width)})


def crc32_word_update(crc, word):
    """``hdl.crc32.crc32_word_update`` written as 32 masked parities of the 64 input bits: the
    same logic, about 30 times faster in amaranth.sim than a Cat of bit slices per output."""
    inputs = Cat(crc, word)
    return Cat(*((inputs & mask).xor() for mask in crc32_word_matrix()))


def mod_seq(value) -> Value:
    """``value`` modulo 2**SEQ_BITS: sequence numbers and row counters wrap."""
    return Value.cast(value)[:SEQ_BITS]


class FlitGeometry:
    """Where word ``j`` of a flit row sits for link parameters ``params``."""

    def __init__(self, params: LinkParams):
        self.words = params.words_per_flit
        self.lane_bits = self.words.bit_length() - 1

    def lanes(self, value) -> list[Value]:
        """The 32-bit words of a flit, word 0 first."""
        return [value[32 * j:32 * j + 32] for j in range(self.words)]

    def word_pos(self, row, j: int) -> Value:
        """Position in the packet (word 0 is the header) of word ``j`` of flit ``row``."""
        return Cat(Const(j, self.lane_bits), row) if self.lane_bits else Value.cast(row)

    def stored_rows(self, length) -> Value:
        """ceil((length + 1) / words): the rows holding a packet's header and payload."""
        return (length + self.words) >> self.lane_bits

    def last_row(self, length) -> Value:
        """The row of a frame of ``length`` payload words that holds its LCRC."""
        return (length + 1) >> self.lane_bits


def check_link_part(owner: str, params, fault, faults: tuple[str, ...]) -> None:
    """The constructor checks every link part shares: ``params`` and ``_fault_inject``."""
    if not isinstance(params, LinkParams):
        raise TypeError(f"{owner} params must be a model.link.LinkParams, not {params!r}")
    check_fault_inject(owner, fault, faults)
