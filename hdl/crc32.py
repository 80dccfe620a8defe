"""CRC-32 (IEEE 802.3, reflected, as zlib) over one 32-bit word per cycle.

The chunk CRC of the DMA and of STATE_DATA messages is ``model.protocol.crc32``: zlib's
CRC-32 over the words as little-endian bytes. Feeding a word little-endian and LSB first is
the same as XOR-ing the whole word into the (reflected) register and shifting 32 times, so
one word's update is a fixed XOR matrix over the 32 register bits and the 32 data bits,
computed here once in Python and emitted as 32 XOR trees (at most ~20 inputs each).

The algorithm's parameters come from ``amaranth.lib.crc.catalog.CRC32_ETHERNET``; its
``Processor`` is not used in the netlist: it registers one word per cycle, while the link
chains up to eight gated word updates in one cycle, and its XOR chains simulate about 4x
slower than the masked parities here (docs/design.md, "CRC-32").

Use: start the register at ``CRC32_INIT``, update it with every word, and XOR the final
register with ``CRC32_XOROUT`` to get the value ``model.protocol.crc32`` returns.
"""

# No ``from __future__ import annotations``: wiring.Component reads the member annotations.
from functools import cache

from amaranth.hdl import Cat, Module, Value
from amaranth.lib import wiring
from amaranth.lib.crc.catalog import CRC32_ETHERNET
from amaranth.lib.wiring import In, Out

# The word update below is the reflected (LSB-first) form, as zlib computes it.
assert CRC32_ETHERNET.crc_width == 32 and CRC32_ETHERNET.reflect_input
assert CRC32_ETHERNET.reflect_output
CRC32_POLY = int(f"{CRC32_ETHERNET.polynomial:032b}"[::-1], 2)   # 0xEDB88320
CRC32_INIT = CRC32_ETHERNET.initial_crc      # register value before the first word
CRC32_XOROUT = CRC32_ETHERNET.xor_output     # XOR applied to the register after the last word


@cache
def crc32_word_matrix() -> tuple[int, ...]:
    """For each output bit, a 64-bit mask of the inputs it XORs: bits 0-31 are the
    register, bits 32-63 the data word."""
    state = [(1 << i) | (1 << (32 + i)) for i in range(32)]
    for _ in range(32):
        lsb = state[0]
        state = state[1:] + [0]
        state = [bit ^ (lsb if CRC32_POLY >> i & 1 else 0) for i, bit in enumerate(state)]
    return tuple(state)


def crc32_word_update_int(crc: int, word: int) -> int:
    """Software twin of ``crc32_word_update`` (the same matrix), for tests and models."""
    inputs = (crc & 0xFFFF_FFFF) | (word & 0xFFFF_FFFF) << 32
    return sum((bin(mask & inputs).count("1") & 1) << i
               for i, mask in enumerate(crc32_word_matrix()))


def crc32_word_update(crc: Value, data: Value) -> Value:
    """The raw register after absorbing ``data`` (32 bits) into register ``crc`` (32 bits)."""
    crc, data = Value.cast(crc), Value.cast(data)
    if len(crc) != 32 or len(data) != 32:
        raise ValueError(f"crc32_word_update takes 32-bit values, not {len(crc)} and "
                         f"{len(data)} bits")
    inputs = Cat(crc, data)
    return Cat(*(Cat(*(inputs[j] for j in range(64) if mask >> j & 1)).xor()
                 for mask in crc32_word_matrix()))


class CRC32Word(wiring.Component):
    """One-word CRC-32 register update, purely combinational (latency 0).

    Members
    -------
    crc_in : In(32)
        Raw register state: ``CRC32_INIT`` before a chunk's first word.
    data : In(32)
        The next word of the chunk (its bytes are taken little-endian).
    crc_out : Out(32)
        Raw register state after ``data``; XOR with ``CRC32_XOROUT`` after the last word
        gives ``model.protocol.crc32`` of the chunk.
    """

    crc_in: In(32)
    data: In(32)
    crc_out: Out(32)

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.crc_out.eq(crc32_word_update(self.crc_in, self.data))
        return m


__all__ = ["CRC32_POLY", "CRC32_INIT", "CRC32_XOROUT", "crc32_word_matrix",
           "crc32_word_update", "crc32_word_update_int", "CRC32Word"]
