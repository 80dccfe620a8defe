"""The VF Migration protocol (transaction layer, docs/design.md): message encodings.

A message is a sequence of 32-bit beats on a stream with a ``last`` flag:

    word 0   type[3:0] | reason[7:4] | vf[15:8] | length[31:16]
    word 1   arg (meaning per type, below)
    payload  ``length`` words
    crc      STATE_DATA only: CRC-32 of the payload (the DMA's per-chunk CRC)

The HDL takes these field positions from here (``HEADER_FIELDS``).

This module is also the single source of the protocol's *acceptance rules*: the payload
words each type carries (``payload_bounds``, ``trailer_words``) and the reasons a receiver
drops a message (``Malformed``, in priority order).  ``classify`` is the receiver's golden
model (``hdl/migproto.py``'s ``MigProtoDecoder`` implements it); ``Message.from_words``
applies the same checks, the receiver-specific ones (VF id range, payload bounds) only when
given the receiver's ``n_vfs`` / ``max_chunk_words``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from enum import IntEnum

from .common import pack_fields, unpack_fields

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
DEFAULT_CHUNK_WORDS = 64  # STATE_DATA payload of a full-image round (SystemConfig.chunk_words)


class Malformed(IntEnum):
    """Why a receiver dropped a message.  When several apply, the lowest code is reported:
    the header word's own checks first (a header that makes no sense gives no framing to
    check), then the framing, then the CRC (meaningless on a mis-framed chunk)."""
    NONE = 0        # well formed
    TYPE = 1        # type is not a MsgType
    REASON = 2      # reason is not a Reason
    LENGTH = 3      # header length impossible for the type (see payload_bounds)
    VF = 4          # vf >= the receiver's n_vfs
    FRAMING = 5     # last came before or after the length the header declares
    CRC = 6         # STATE_DATA payload CRC mismatch
    UNEXPECTED = 7  # well formed, but wrong for the protocol state (judged by the engine)


class MalformedMessage(ValueError):
    """A message a receiver must drop; ``reason`` says why (``Malformed``)."""

    def __init__(self, reason: Malformed, text: str):
        super().__init__(text)
        self.reason = reason


# The payload words each type carries (docs/design.md): STATE_DATA a chunk, ROUND_END the dirty
# blocks left, every other message none.  STATE_DATA's upper bound is the receiver's chunk.
_FIXED_PAYLOAD = {MsgType.ROUND_END: 1}


def payload_bounds(type_: MsgType, max_chunk_words: int) -> tuple[int, int]:
    """Inclusive (min, max) payload words of a well-formed ``type_`` message."""
    if type_ == MsgType.STATE_DATA:
        return 1, max_chunk_words
    words = _FIXED_PAYLOAD.get(MsgType(type_), 0)
    return words, words


def trailer_words(type_: int) -> int:
    """Words after the payload: the CRC of a STATE_DATA chunk."""
    return 1 if type_ == MsgType.STATE_DATA else 0


def crc32(words) -> int:
    """CRC-32 (IEEE 802.3, as zlib) over 32-bit words, little-endian bytes."""
    return zlib.crc32(b"".join((w & MASK32).to_bytes(4, "little") for w in words))


def pack_header(type_: int, vf: int, length: int = 0, reason: int = 0) -> int:
    return pack_fields("message", HEADER_FIELDS, type=type_, reason=reason, vf=vf,
                       length=length)


def unpack_header(word: int) -> dict[str, int]:
    return unpack_fields(HEADER_FIELDS, word)


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
    def from_words(cls, words: list[int], n_vfs: int | None = None,
                   max_chunk_words: int | None = None) -> Message:
        """Decode one message; raises ``MalformedMessage`` (a ValueError) on a malformed one.

        Without ``n_vfs``/``max_chunk_words`` only what the codec alone can see is checked
        (type, reason, framing, CRC); with them, also the receiver's VF range and the
        type's payload bounds, exactly as ``classify``."""
        if not words:
            raise MalformedMessage(Malformed.FRAMING,
                                   "message of 0 words is shorter than its header")
        check_message(words, n_vfs, max_chunk_words)
        head = unpack_header(words[0])
        payload = list(words[HEADER_WORDS:HEADER_WORDS + head["length"]])
        return cls(MsgType(head["type"]), head["vf"], words[1], Reason(head["reason"]), payload)


def check_message(words: list[int], n_vfs: int | None = None,
                  max_chunk_words: int | None = None) -> None:
    """Raise ``MalformedMessage`` with the first ``Malformed`` reason (in code order) that
    applies to the message ``words`` (at least one word); the VF and LENGTH rules apply only
    when ``n_vfs`` / ``max_chunk_words`` are given."""
    head = unpack_header(words[0])
    if head["type"] not in MsgType._value2member_map_:
        raise MalformedMessage(Malformed.TYPE, f"malformed message header {words[0]:#010x}: "
                                               f"type {head['type']} is not a MsgType")
    type_ = MsgType(head["type"])
    if head["reason"] not in Reason._value2member_map_:
        raise MalformedMessage(Malformed.REASON, f"malformed message header {words[0]:#010x}: "
                                                 f"reason {head['reason']} is not a Reason")
    if max_chunk_words is not None:
        lo, hi = payload_bounds(type_, max_chunk_words)
        if not lo <= head["length"] <= hi:
            allowed = f"{lo}" if lo == hi else f"{lo} … {hi}"
            raise MalformedMessage(Malformed.LENGTH, f"{type_.name} of {head['length']} payload "
                                                     f"words (allowed: {allowed})")
    if n_vfs is not None and head["vf"] >= n_vfs:
        raise MalformedMessage(Malformed.VF, f"{type_.name} for VF {head['vf']}, but the "
                                             f"receiver has {n_vfs} VFs")
    if len(words) < HEADER_WORDS:
        raise MalformedMessage(Malformed.FRAMING, f"message of {len(words)} words is shorter "
                                                  f"than its header")
    trailer = trailer_words(type_)
    if len(words) != HEADER_WORDS + head["length"] + trailer:
        raise MalformedMessage(Malformed.FRAMING, f"{type_.name} says {head['length']} payload "
                                                  f"words but has "
                                                  f"{len(words) - HEADER_WORDS - trailer}")
    if trailer and words[-1] != crc32(words[HEADER_WORDS:HEADER_WORDS + head["length"]]):
        raise MalformedMessage(Malformed.CRC, f"{type_.name} payload CRC mismatch")


def classify(words: list[int], n_vfs: int,
             max_chunk_words: int) -> tuple[Malformed, Message | None]:
    """The receiver's verdict on one message (the words up to and including ``last``): the
    ``Malformed`` reason it must be dropped for, or ``NONE`` and the decoded ``Message``."""
    if not words:
        raise ValueError("a message has at least one word (the one carrying last)")
    try:
        return Malformed.NONE, Message.from_words(words, n_vfs, max_chunk_words)
    except MalformedMessage as exc:
        return exc.reason, None
