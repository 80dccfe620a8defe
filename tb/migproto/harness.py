"""cocotb bench of the migration-protocol codec (hdl/migproto.py).

``MigProtoHarness`` puts a decoder and an encoder side by side in one top, so one build per
simulator serves both; its parameters are the shared vectors' (``VECTOR_N_VFS``,
``VECTOR_MAX_CHUNK``) so the JSON vectors replay on it.  ``random_message`` draws valid and
malformed messages for the random tests.
"""

from __future__ import annotations

import random

from amaranth.hdl import Module
from amaranth.lib import wiring

from hdl.migproto import (
    MigProtoDecoder,
    MigProtoEncoder,
)
from model.protocol import MAX_VFS, Message, MsgType, Reason, pack_header, payload_bounds
from model.protocol_vectors import VECTOR_MAX_CHUNK, VECTOR_N_VFS
from tb.common.harness import connect_inner, inner_members

HARNESS_PARAMETERS = {"n_vfs": VECTOR_N_VFS, "max_chunk_words": VECTOR_MAX_CHUNK,
                      "counter_bits": 16}


# Harness port -> the decoder's / the encoder's port it exposes.
DECODER_PORTS = {name: name for name in ("rx", "header", "payload", "malformed", "unexpected",
                                         "counts")}
ENCODER_PORTS = {"enc_header": "header", "enc_payload": "payload", "tx": "tx"}


class MigProtoHarness(wiring.Component):
    """Decoder ports (``rx``, ``header``, ``payload``, ``malformed``, ``unexpected``,
    ``counts``) and encoder ports (``enc_header``, ``enc_payload``, ``tx``) of one
    ``MigProtoDecoder`` and one ``MigProtoEncoder``, unconnected to each other."""

    def __init__(self, n_vfs: int, max_chunk_words: int, counter_bits: int):
        self._decoder = MigProtoDecoder(n_vfs, max_chunk_words, counter_bits=counter_bits)
        self._encoder = MigProtoEncoder()
        super().__init__({**inner_members(self._decoder, DECODER_PORTS),
                          **inner_members(self._encoder, ENCODER_PORTS)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.decoder = self._decoder
        m.submodules.encoder = self._encoder
        connect_inner(m, self, self._decoder, DECODER_PORTS)
        connect_inner(m, self, self._encoder, ENCODER_PORTS)
        return m


def build_harness() -> MigProtoHarness:
    return MigProtoHarness(**HARNESS_PARAMETERS)


def random_valid(rng: random.Random, n_vfs: int, max_chunk: int) -> Message:
    """A well-formed message: any type, reason, VF, arg; a payload length its type allows,
    STATE_DATA lengths biased to the edges (1 and ``max_chunk``)."""
    type_ = rng.choice(list(MsgType))
    lo, hi = payload_bounds(type_, max_chunk)
    length = rng.choice([lo, hi, rng.randint(lo, hi)])
    return Message(type_, rng.randrange(n_vfs), rng.getrandbits(32),
                   rng.choice(list(Reason)), [rng.getrandbits(32) for _ in range(length)])


def random_message(rng: random.Random, n_vfs: int, max_chunk: int,
                   p_malformed: float = 0.35) -> list[int]:
    """The words of a random message; with ``p_malformed``, broken in one random way (the
    model's ``classify`` says how it must be reported — a mutation can leave it valid)."""
    words = random_valid(rng, n_vfs, max_chunk).to_words()
    if rng.random() >= p_malformed:
        return words
    head = words[0]
    kind = rng.choice(["type", "reason", "length", "vf", "short", "long", "flip", "crc"])
    if kind == "type":
        words[0] = head & ~0xF | rng.choice([0, 12, 13, 14, 15])
    elif kind == "reason":
        words[0] = head & ~0xF0 | rng.randint(len(Reason), 15) << 4
    elif kind == "length":   # the header lies about the length; the words may match it
        length = rng.choice([0, 1, 2, max_chunk + 1, 0xFFFF, rng.getrandbits(16)])
        words[0] = pack_header(head & 0xF, head >> 8 & 0xFF, length, head >> 4 & 0xF)
        if rng.random() < 0.5:
            words = words[:2] + [rng.getrandbits(32) for _ in range(min(length, 3 * max_chunk))]
    elif kind == "vf":
        words[0] = head & ~0xFF00 | rng.randint(n_vfs, MAX_VFS - 1) << 8
    elif kind == "short":
        words = words[:rng.randrange(1, len(words))]
    elif kind == "long":
        words += [rng.getrandbits(32) for _ in range(rng.randint(1, 3))]
    elif kind == "flip":
        index = rng.randrange(len(words))
        words[index] ^= 1 << rng.randrange(32)
    else:   # a chunk corrupted past the link's LCRC: one bit of its payload or CRC
        chunk = [rng.getrandbits(32) for _ in range(rng.randint(1, max_chunk))]
        words = Message(MsgType.STATE_DATA, rng.randrange(n_vfs), rng.getrandbits(32),
                        payload=chunk).to_words()
        words[rng.randrange(2, len(words))] ^= 1 << rng.randrange(32)
    return words


__all__ = ["HARNESS_PARAMETERS", "MigProtoHarness", "build_harness", "random_message",
           "random_valid"]
