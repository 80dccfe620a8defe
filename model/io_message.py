"""TC_IO tunnel messages: VF requests, responses and interrupts of VFs placed on the offload
device, carried over the link's TC_IO class (docs/design.md `link`; hdl/io_tunnel.py).

A message is a sequence of 32-bit words on a ChunkBeat stream, ``last`` on the final word.
Word 0 is the header; its ``kind`` (bits [3:0]) says which record follows:

    REQ  (host -> offload, 4 words)
        word 0   kind=1 [3:0] | slot [11:4] | op [13:12]
        word 1   tag
        word 2   addr
        word 3   data
    RESP (offload -> host, 3 words)
        word 0   kind=2 [3:0] | slot [11:4] | error [12]
        word 1   tag
        word 2   data
    IRQ  (offload -> host, 3 words)
        word 0   kind=3 [3:0] | slot [11:4] | vector [23:12]
        word 1   addr
        word 2   data

Every field sits at a fixed position with a maximum width; a record whose field is
narrower occupies the low bits and the encoder writes zeros above it and in every
reserved bit. The receiver ignores reserved bits and the bits above its own field width.
A message is *malformed* when its kind is not one the receiver accepts (0 and 4..15 are
never valid) or its word count is not the kind's ``MESSAGE_WORDS``; a receiver drops it
and counts it. The link checks every packet's LCRC, so a malformed message means a bug.

``encode``/``decode`` are the Python reference; hdl/io_tunnel.py builds its field
positions from ``IO_FIELDS`` and validates record layouts with ``check_widths``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

MASK32 = 0xFFFF_FFFF


class IoKind(IntEnum):
    REQ = 1    # a VM request to a slot of the offload device
    RESP = 2   # the offload device's response to a request
    IRQ = 3    # an MSI-X message raised by an offload slot


# (lsb, width) of the kind field of word 0.
KIND_FIELD = (0, 4)

# Per kind: record field name -> (word, lsb, maximum width). The field names are those of
# hdl/formats.py's vf_request_layout, vf_response_layout and irq_layout.
IO_FIELDS: dict[IoKind, dict[str, tuple[int, int, int]]] = {
    IoKind.REQ: {"slot": (0, 4, 8), "op": (0, 12, 2), "tag": (1, 0, 32),
                 "addr": (2, 0, 32), "data": (3, 0, 32)},
    IoKind.RESP: {"slot": (0, 4, 8), "error": (0, 12, 1), "tag": (1, 0, 32),
                  "data": (2, 0, 32)},
    IoKind.IRQ: {"slot": (0, 4, 8), "vector": (0, 12, 12), "addr": (1, 0, 32),
                 "data": (2, 0, 32)},
}

MESSAGE_WORDS: dict[IoKind, int] = {
    kind: 1 + max(word for word, _, _ in fields.values()) for kind, fields in IO_FIELDS.items()}
MAX_MESSAGE_WORDS = max(MESSAGE_WORDS.values())


def _check_tiling() -> None:
    """Fields of one kind never overlap each other or the kind field (import-time check)."""
    for kind, fields in IO_FIELDS.items():
        used: dict[int, int] = {0: ((1 << KIND_FIELD[1]) - 1) << KIND_FIELD[0]}
        for name, (word, lsb, width) in fields.items():
            mask = ((1 << width) - 1) << lsb
            assert mask <= MASK32, f"{kind.name}.{name} crosses a word boundary"
            assert not used.get(word, 0) & mask, f"{kind.name}.{name} overlaps another field"
            used[word] = used.get(word, 0) | mask


_check_tiling()


class MalformedIoMessage(ValueError):
    """A word sequence that is not a TC_IO message (unknown kind or wrong length)."""


@dataclass(frozen=True)
class IoMessage:
    kind: IoKind
    fields: dict[str, int] = field(default_factory=dict)


def check_widths(kind: IoKind, widths: Mapping[str, int], what: str) -> None:
    """Raise ValueError unless ``widths`` (field name -> bits) has exactly the fields of
    ``kind`` and each fits its slot in the message. ``what`` names the record in the
    message (e.g. ``"IoTunnelHost request layout"``)."""
    fields = IO_FIELDS[kind]
    missing = sorted(set(fields) - set(widths))
    extra = sorted(set(widths) - set(fields))
    if missing or extra:
        raise ValueError(f"{what} must have the fields {sorted(fields)}; missing {missing}, "
                         f"unexpected {extra}")
    for name, (_, _, limit) in fields.items():
        if not 1 <= widths[name] <= limit:
            raise ValueError(f"{what} field {name!r} is {widths[name]} bits; a {kind.name} "
                             f"message carries 1..{limit}")


def encode(kind: IoKind, values: Mapping[str, int]) -> list[int]:
    """The words of one message; every field of ``kind`` must be given and fit its slot."""
    kind = IoKind(kind)
    fields = IO_FIELDS[kind]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise KeyError(f"{kind.name} messages have no fields {unknown}")
    words = [0] * MESSAGE_WORDS[kind]
    words[0] = int(kind) << KIND_FIELD[0]
    for name, (word, lsb, width) in fields.items():
        value = int(values[name])
        if not 0 <= value < 1 << width:
            raise ValueError(f"{kind.name} field {name!r} = {value} does not fit {width} bits")
        words[word] |= value << lsb
    return words


def decode(words: Sequence[int], accept: Sequence[IoKind] = tuple(IoKind)) -> IoMessage:
    """The message in ``words``; raises MalformedIoMessage for a kind not in ``accept`` or
    a word count other than the kind's. Fields are returned at their maximum width."""
    if not words:
        raise MalformedIoMessage("empty message")
    lsb, width = KIND_FIELD
    raw = words[0] >> lsb & ((1 << width) - 1)
    if raw not in {int(k) for k in accept}:
        raise MalformedIoMessage(f"kind {raw} is not one of "
                                 f"{', '.join(IoKind(k).name for k in accept)}")
    kind = IoKind(raw)
    if len(words) != MESSAGE_WORDS[kind]:
        raise MalformedIoMessage(f"{kind.name} message of {len(words)} words, "
                                 f"expected {MESSAGE_WORDS[kind]}")
    values = {name: words[word] >> lsb & ((1 << w) - 1)
              for name, (word, lsb, w) in IO_FIELDS[kind].items()}
    return IoMessage(kind, values)


def doc_table() -> str:
    """The encoding as a Markdown table (for docs/protocol.md)."""
    lines = ["| kind | words | field | word | bits |", "|---|---|---|---|---|"]
    for kind, fields in IO_FIELDS.items():
        lines.append(f"| {kind.name} = {int(kind)} | {MESSAGE_WORDS[kind]} | kind | 0 | "
                     f"[{KIND_FIELD[0] + KIND_FIELD[1] - 1}:{KIND_FIELD[0]}] |")
        for name, (word, lsb, width) in fields.items():
            lines.append(f"| | | {name} | {word} | [{lsb + width - 1}:{lsb}] |")
    return "\n".join(lines)


__all__ = ["IoKind", "IoMessage", "MalformedIoMessage", "KIND_FIELD", "IO_FIELDS",
           "MESSAGE_WORDS", "MAX_MESSAGE_WORDS", "check_widths", "encode", "decode",
           "doc_table"]
