"""hdl.crc32 against amaranth.lib.crc's CRC32_ETHERNET and zlib: bit-exact per word."""

from __future__ import annotations

import random
import struct
import zlib

from amaranth.lib.crc.catalog import CRC32_ETHERNET

from hdl.crc32 import CRC32_INIT, CRC32_POLY, CRC32_XOROUT, crc32_word_update_int


def test_parameters_are_the_library_ones() -> None:
    assert CRC32_POLY == 0xEDB88320            # 0x04C11DB7 reflected
    assert CRC32_INIT == CRC32_XOROUT == 0xFFFFFFFF


def test_word_update_matches_library_and_zlib() -> None:
    rng = random.Random(9)
    for n in (1, 2, 7, 64, 67):
        words = [rng.getrandbits(32) for _ in range(n)]
        crc = CRC32_INIT
        for word in words:
            crc = crc32_word_update_int(crc, word)
        ours = crc ^ CRC32_XOROUT
        assert ours == zlib.crc32(struct.pack(f"<{n}I", *words))
        assert ours == CRC32_ETHERNET(data_width=32).compute(words)
