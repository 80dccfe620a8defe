"""hdl/crc32.py against zlib (model.protocol.crc32), in software and in amaranth.sim."""

from __future__ import annotations

import random
import zlib

import pytest
from amaranth.hdl import Const
from amaranth.sim import Simulator

from hdl.crc32 import CRC32_INIT, CRC32_XOROUT, CRC32Word, crc32_word_update, crc32_word_update_int
from model.protocol import crc32


def _chunk_crc(words) -> int:
    crc = CRC32_INIT
    for word in words:
        crc = crc32_word_update_int(crc, word)
    return crc ^ CRC32_XOROUT


def test_matrix_matches_zlib_on_random_chunks():
    rng = random.Random(0xC0C0)
    for _ in range(200):
        words = [rng.getrandbits(32) for _ in range(rng.randint(1, 12))]
        data = b"".join(w.to_bytes(4, "little") for w in words)
        assert _chunk_crc(words) == zlib.crc32(data) == crc32(words)


def test_known_value():
    # zlib.crc32(b"\x00\x00\x00\x00") == 0x2144DF1C
    assert _chunk_crc([0]) == 0x2144DF1C


def test_hdl_word_update_matches_zlib():
    rng = random.Random(1234)
    dut = CRC32Word()
    cases = [(CRC32_INIT, 0), (0, 0xFFFF_FFFF), (0x1234_5678, 0x8000_0001)]
    cases += [(rng.getrandbits(32), rng.getrandbits(32)) for _ in range(300)]

    async def bench(ctx):
        for crc_in, word in cases:
            ctx.set(dut.crc_in, crc_in)
            ctx.set(dut.data, word)
            got = ctx.get(dut.crc_out)
            # zlib continues a CRC from its *final* (xored) value
            expected = zlib.crc32(word.to_bytes(4, "little"), crc_in ^ CRC32_XOROUT)
            assert got ^ CRC32_XOROUT == expected, f"crc_in={crc_in:#x} data={word:#x}"

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()


def test_hdl_chunk_matches_model():
    rng = random.Random(99)
    dut = CRC32Word()
    words = [rng.getrandbits(32) for _ in range(64)]

    async def bench(ctx):
        crc = CRC32_INIT
        for word in words:
            ctx.set(dut.crc_in, crc)
            ctx.set(dut.data, word)
            crc = ctx.get(dut.crc_out)
        assert crc ^ CRC32_XOROUT == crc32(words)

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()


def test_update_rejects_wrong_widths():
    with pytest.raises(ValueError, match=r"^crc32_word_update takes 32-bit values, not 16 and "
                                         r"32 bits$"):
        crc32_word_update(Const(0, 16), Const(0, 32))
