"""VF Migration protocol encodings (model/protocol.py, DESIGN §5)."""

from __future__ import annotations

import random
import struct
import zlib

import pytest

from model.protocol import (
    HEADER_FIELDS,
    HEADER_WORDS,
    MASK32,
    MAX_VFS,
    Message,
    MsgType,
    Reason,
    crc32,
    pack_header,
    unpack_header,
)

SEED = 7


def _zlib_crc(words: list[int]) -> int:
    return zlib.crc32(struct.pack(f"<{len(words)}I", *words))


@pytest.mark.parametrize("n", [0, 1, 2, 7, 64, 257])
def test_crc32_is_zlib_over_little_endian_words(n):
    rng = random.Random(SEED + n)
    words = [rng.getrandbits(32) for _ in range(n)]
    assert crc32(words) == _zlib_crc(words)


def test_crc32_known_values():
    assert crc32([]) == 0
    # "1234" as one little-endian word is the classic check string's first 4 bytes
    assert crc32([int.from_bytes(b"1234", "little")]) == zlib.crc32(b"1234")
    assert crc32([int.from_bytes(b"1234", "little"), int.from_bytes(b"5678", "little")]) \
        == zlib.crc32(b"12345678")
    assert crc32([0xFFFF_FFFF]) == 0xFFFF_FFFF  # CRC-32 of four 0xFF bytes


def test_header_fields_tile_one_word():
    bits = sorted((lsb, width) for lsb, width in HEADER_FIELDS.values())
    position = 0
    for lsb, width in bits:
        assert lsb == position
        position += width
    assert position == 32
    assert MAX_VFS == 1 << HEADER_FIELDS["vf"][1]


def test_pack_unpack_header():
    word = pack_header(MsgType.ABORT, vf=0xAB, length=0x1234, reason=Reason.DIGEST)
    assert word == MsgType.ABORT | Reason.DIGEST << 4 | 0xAB << 8 | 0x1234 << 16
    assert unpack_header(word) == {"type": MsgType.ABORT, "reason": Reason.DIGEST,
                                   "vf": 0xAB, "length": 0x1234}


@pytest.mark.parametrize(("field", "value"), [
    ("type", 16), ("reason", 16), ("vf", MAX_VFS), ("length", 1 << 16), ("vf", -1)])
def test_pack_header_rejects_values_that_do_not_fit(field, value):
    args = {"type_": 1, "vf": 0, "length": 0, "reason": 0}
    args["type_" if field == "type" else field] = value
    with pytest.raises(ValueError, match=f"message field {field}={value} does not fit in"):
        pack_header(**args)


def _sample(type_: MsgType, rng: random.Random) -> Message:
    payload = []
    if type_ == MsgType.STATE_DATA:
        payload = [rng.getrandbits(32) for _ in range(rng.randrange(1, 65))]
    elif type_ == MsgType.ROUND_END:
        payload = [rng.randrange(1000)]
    reason = Reason(rng.randrange(len(Reason))) if type_ in (
        MsgType.REJECT, MsgType.ABORT, MsgType.ERROR) else Reason.NONE
    return Message(type_, rng.randrange(MAX_VFS), rng.getrandbits(32), reason, payload)


@pytest.mark.parametrize("type_", list(MsgType), ids=lambda t: t.name)
def test_round_trip_every_type(type_):
    rng = random.Random(SEED * 100 + type_)
    for _ in range(20):
        msg = _sample(type_, rng)
        words = msg.to_words()
        crc_words = 1 if type_ == MsgType.STATE_DATA else 0
        assert len(words) == HEADER_WORDS + len(msg.payload) + crc_words
        assert all(0 <= w <= MASK32 for w in words)
        assert unpack_header(words[0])["length"] == len(msg.payload)
        if crc_words:
            assert words[-1] == _zlib_crc(msg.payload)
        assert Message.from_words(words) == msg


def test_state_data_with_empty_payload_round_trips():
    msg = Message(MsgType.STATE_DATA, 3, 0x40)
    assert msg.to_words() == [pack_header(MsgType.STATE_DATA, 3), 0x40, 0]
    assert Message.from_words(msg.to_words()) == msg


def test_arg_is_truncated_to_a_word():
    assert Message(MsgType.BEGIN, 0, 1 << 32 | 5).to_words()[1] == 5


@pytest.mark.parametrize("words", [[], [pack_header(MsgType.COMMIT, 0)]])
def test_decode_shorter_than_header(words):
    with pytest.raises(ValueError, match=f"message of {len(words)} words is shorter than"):
        Message.from_words(words)


@pytest.mark.parametrize("type_", [0, 12, 15])
def test_decode_unknown_type(type_):
    with pytest.raises(ValueError, match="malformed message header"):
        Message.from_words([type_, 0])


def test_decode_unknown_reason():
    with pytest.raises(ValueError, match="malformed message header"):
        Message.from_words([MsgType.ABORT | 15 << 4, 0])


@pytest.mark.parametrize("delta", [-1, 1])
def test_decode_bad_length(delta):
    words = Message(MsgType.STATE_DATA, 1, 0, payload=[1, 2, 3]).to_words()
    bad = words[:-2] + words[-1:] if delta < 0 else words[:-1] + [9, words[-1]]
    with pytest.raises(ValueError, match="STATE_DATA says 3 payload words but has"):
        Message.from_words(bad)
    words = Message(MsgType.ROUND_END, 1, 0, payload=[4]).to_words()
    with pytest.raises(ValueError, match="ROUND_END says 1 payload words but has 0"):
        Message.from_words(words[:-1])


def test_decode_bad_crc():
    rng = random.Random(SEED)
    words = Message(MsgType.STATE_DATA, 2, 16, payload=[rng.getrandbits(32)
                                                        for _ in range(8)]).to_words()
    for index in range(HEADER_WORDS, len(words)):  # any payload word or the CRC itself
        for bit in (0, 17, 31):
            bad = list(words)
            bad[index] ^= 1 << bit
            with pytest.raises(ValueError, match="STATE_DATA payload CRC mismatch"):
                Message.from_words(bad)
