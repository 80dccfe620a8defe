"""The VF Migration protocol (transaction layer, DESIGN §5): message encodings.

A message is a sequence of 32-bit beats on a stream with a ``last`` flag:

    word 0   type[3:0] | reason[7:4] | vf[15:8] | length[31:16]
    word 1   arg (meaning per type, below)
    payload  ``length`` words
    crc      STATE_DATA only: CRC-32 of the payload (the DMA's per-chunk CRC)

The HDL takes these field positions from here (``HEADER_FIELDS``).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from enum import IntEnum

MASK32 = 0xFFFF_FFFF


class MsgType(IntEnum):
    BEGIN = 1        # arg = image words of the VF;                source -> target
    ACCEPT = 2       # arg = slot allocated at the target;         target -> source
    REJECT = 3       # reason;                                     target -> source
    STATE_DATA = 4   # arg = word offset; payload; crc;            source -> target
    ROUND_END = 5    # arg = round[7:0] | blocks_sent[31:8]; payload[0] = dirty blocks left
    SWITCHOVER = 6   # arg = image digest (final data sent);       source -> target
    COMMIT = 7       #                                             source -> target
    COMMIT_ACK = 8   # arg = slot now serving;                     target -> source
    ABORT = 9        # reason;                                     either way
    ABORT_ACK = 10   #                                             either way
    ERROR = 11       # reason: a message that made no sense here


class Reason(IntEnum):
    NONE = 0
    NO_SLOT = 1      # target has no free slot
    BUSY = 2         # target is already receiving a VF
    UNSUPPORTED = 3  # image layout differs
    REQUESTED = 4    # the VMM asked for it (abort)
    TIMEOUT = 5      # a handshake reply did not arrive in time
    DIGEST = 6       # image digest mismatch at the target
    CRC = 7          # a STATE_DATA chunk failed its CRC
    PROTOCOL = 8     # message unexpected in this protocol state / for this VF


# (lsb, width) of each header word-0 field.
HEADER_FIELDS = {"type": (0, 4), "reason": (4, 4), "vf": (8, 8), "length": (16, 16)}
HEADER_WORDS = 2
MAX_VFS = 1 << HEADER_FIELDS["vf"][1]


def crc32(words) -> int:
    """CRC-32 (IEEE 802.3, as zlib) over 32-bit words, little-endian bytes."""
    return zlib.crc32(b"".join((w & MASK32).to_bytes(4, "little") for w in words))


def pack_header(type_: int, vf: int, length: int = 0, reason: int = 0) -> int:
    word = 0
    for name, value in (("type", type_), ("reason", reason), ("vf", vf), ("length", length)):
        lsb, width = HEADER_FIELDS[name]
        if not 0 <= value < 1 << width:
            raise ValueError(f"message field {name}={value} does not fit in {width} bits")
        word |= value << lsb
    return word


def unpack_header(word: int) -> dict[str, int]:
    return {name: (word >> lsb) & ((1 << width) - 1)
            for name, (lsb, width) in HEADER_FIELDS.items()}


@dataclass
class Message:
    type: MsgType
    vf: int
    arg: int = 0
    reason: Reason = Reason.NONE
    payload: list[int] = field(default_factory=list)

    def to_words(self) -> list[int]:
        words = [pack_header(self.type, self.vf, len(self.payload), self.reason),
                 self.arg & MASK32, *self.payload]
        if self.type == MsgType.STATE_DATA:
            words.append(crc32(self.payload))
        return words

    @classmethod
    def from_words(cls, words: list[int]) -> Message:
        """Decode one message; raises ValueError on a malformed one."""
        if len(words) < HEADER_WORDS:
            raise ValueError(f"message of {len(words)} words is shorter than its header")
        head = unpack_header(words[0])
        try:
            type_ = MsgType(head["type"])
            reason = Reason(head["reason"])
        except ValueError as exc:
            raise ValueError(f"malformed message header {words[0]:#010x}: {exc}") from None
        crc_words = 1 if type_ == MsgType.STATE_DATA else 0
        if len(words) != HEADER_WORDS + head["length"] + crc_words:
            raise ValueError(f"{type_.name} says {head['length']} payload words but has "
                             f"{len(words) - HEADER_WORDS - crc_words}")
        payload = list(words[HEADER_WORDS:HEADER_WORDS + head["length"]])
        if crc_words and words[-1] != crc32(payload):
            raise ValueError(f"{type_.name} payload CRC mismatch")
        return cls(type_, head["vf"], words[1], reason, payload)
