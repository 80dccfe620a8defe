"""cocotb bench of the migration-protocol codec (hdl/migproto.py).

``MigProtoHarness`` puts a decoder and an encoder side by side in one top, so one build per
simulator serves both; its parameters are the shared vectors' (``VECTOR_N_VFS``,
``VECTOR_MAX_CHUNK``) so the JSON vectors replay on it.  ``random_message`` draws valid and
malformed messages for the random tests.
"""

from __future__ import annotations

import random

from amaranth.hdl import Module
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.formats import ChunkBeat
from hdl.migproto import (
    MigProtoDecoder,
    MigProtoEncoder,
    malformed_event_layout,
    message_header_layout,
)
from model.protocol import MAX_VFS, Malformed, Message, MsgType, Reason, pack_header, payload_bounds
from model.protocol_vectors import VECTOR_MAX_CHUNK, VECTOR_N_VFS

HARNESS_PARAMETERS = {"n_vfs": VECTOR_N_VFS, "max_chunk_words": VECTOR_MAX_CHUNK,
                      "counter_bits": 16}


class MigProtoHarness(wiring.Component):
    """Decoder ports (``rx``, ``header``, ``payload``, ``malformed``, ``unexpected``,
    ``counts``) and encoder ports (``enc_header``, ``enc_payload``, ``tx``) of one
    ``MigProtoDecoder`` and one ``MigProtoEncoder``, unconnected to each other."""

    def __init__(self, n_vfs: int, max_chunk_words: int, counter_bits: int):
        self._decoder = MigProtoDecoder(n_vfs, max_chunk_words, counter_bits=counter_bits)
        self._encoder = MigProtoEncoder()
        super().__init__({
            "rx": In(stream.Signature(ChunkBeat)),
            "header": Out(stream.Signature(message_header_layout())),
            "payload": Out(stream.Signature(ChunkBeat)),
            "malformed": Out(malformed_event_layout()),
            "unexpected": In(1),
            "counts": Out(data.ArrayLayout(counter_bits, len(Malformed))),
            "enc_header": In(stream.Signature(message_header_layout())),
            "enc_payload": In(stream.Signature(32)),
            "tx": Out(stream.Signature(ChunkBeat)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.decoder = dec = self._decoder
        m.submodules.encoder = enc = self._encoder
        wiring.connect(m, wiring.flipped(self.rx), dec.rx)
        wiring.connect(m, dec.header, wiring.flipped(self.header))
        wiring.connect(m, dec.payload, wiring.flipped(self.payload))
        wiring.connect(m, wiring.flipped(self.enc_header), enc.header)
        wiring.connect(m, wiring.flipped(self.enc_payload), enc.payload)
        wiring.connect(m, enc.tx, wiring.flipped(self.tx))
        m.d.comb += [self.malformed.eq(dec.malformed), dec.unexpected.eq(self.unexpected),
                     self.counts.eq(dec.counts)]
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
