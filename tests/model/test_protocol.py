"""VF Migration protocol encodings and acceptance rules (model/protocol.py, DESIGN §5)."""

from __future__ import annotations

import random
import re
import struct
import zlib

import pytest

from model.protocol import (
    HEADER_FIELDS,
    HEADER_WORDS,
    MASK32,
    MAX_VFS,
    Malformed,
    MalformedMessage,
    Message,
    MsgType,
    Reason,
    classify,
    crc32,
    pack_header,
    payload_bounds,
    trailer_words,
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


# ---------------------------------------------------------------- acceptance rules
def test_the_rules_have_one_source():
    """model/protocol_vectors.py and the HDL decoder take the rules from model/protocol.py."""
    import model.protocol_vectors as vectors
    for name in ("Malformed", "payload_bounds", "trailer_words", "classify"):
        assert getattr(vectors, name) is globals()[name], name


def test_payload_bounds_per_type():
    for type_ in MsgType:
        expected = {MsgType.STATE_DATA: (1, 48), MsgType.ROUND_END: (1, 1)}.get(type_, (0, 0))
        assert payload_bounds(type_, 48) == expected, type_
        assert trailer_words(type_) == (1 if type_ == MsgType.STATE_DATA else 0)


@pytest.mark.parametrize(("words", "reason", "text"), [
    ([pack_header(0, 9, 3), 1, 2], Malformed.TYPE, "malformed message header 0x00030900: type 0"),
    ([pack_header(MsgType.ERROR, 9, reason=12), 0], Malformed.REASON,
     "reason 12 is not a Reason"),
    ([pack_header(MsgType.STATE_DATA, 9, 17), 0], Malformed.LENGTH,
     "STATE_DATA of 17 payload words (allowed: 1 … 16)"),
    ([pack_header(MsgType.ROUND_END, 1, 0), 0], Malformed.LENGTH,
     "ROUND_END of 0 payload words (allowed: 1)"),
    ([pack_header(MsgType.COMMIT, 4)], Malformed.VF, "COMMIT for VF 4, but the receiver has 4"),
    ([pack_header(MsgType.COMMIT, 3)], Malformed.FRAMING, "message of 1 words is shorter"),
    ([pack_header(MsgType.ABORT_ACK, 3), 0, 0], Malformed.FRAMING,
     "ABORT_ACK says 0 payload words but has 1"),
    ([pack_header(MsgType.STATE_DATA, 3, 1), 0, 5, crc32([5]) ^ 1], Malformed.CRC,
     "STATE_DATA payload CRC mismatch"),
])
def test_receiver_rules_in_priority_order(words, reason, text):
    """``from_words`` with the receiver's parameters raises ``MalformedMessage`` with the
    reason ``classify`` reports: the lowest code that applies."""
    assert classify(words, 4, 16) == (reason, None)
    with pytest.raises(MalformedMessage, match=re.escape(text)) as info:
        Message.from_words(words, n_vfs=4, max_chunk_words=16)
    assert info.value.reason == reason
    assert isinstance(info.value, ValueError)


def test_codec_alone_skips_the_receiver_rules():
    """Without ``n_vfs``/``max_chunk_words`` only what the words themselves show is checked."""
    for message in (Message(MsgType.STATE_DATA, 200, 0), Message(MsgType.BEGIN, 9, 1, payload=[2]),
                    Message(MsgType.STATE_DATA, 1, 0, payload=list(range(40)))):
        words = message.to_words()
        assert Message.from_words(words) == message
        assert classify(words, 8, 16)[0] in (Malformed.LENGTH, Malformed.VF)


def test_classify_decodes_a_good_message():
    message = Message(MsgType.ROUND_END, 3, 0x0102, payload=[7])
    assert classify(message.to_words(), 4, 16) == (Malformed.NONE, message)
    assert Message.from_words(message.to_words(), 4, 16) == message
