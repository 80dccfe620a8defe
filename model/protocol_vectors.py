"""Shared bit-exact test vectors of the VF Migration protocol.

``model/protocol.py`` encodes and decodes messages (``Message.to_words``/``from_words``) and
holds the receiver's acceptance rules: ``Malformed``, ``payload_bounds``, ``trailer_words``
and ``classify``, the golden model of what a receiver (``hdl/migproto.py``) must report for
a received word sequence.  They are re-exported here for the tests and benches that import
them with the vectors.

``python -m model.protocol_vectors`` writes ``tests/vectors/protocol_vectors.json``: every
message type, edge lengths and values, random payloads (seeded), and one or more malformed
cases of each reason with the reason expected.  The file is generated, never edited; a test
asserts it equals ``build_document()``.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from .protocol import (
    MASK32,
    Malformed,
    Message,
    MsgType,
    Reason,
    classify,
    pack_header,
    payload_bounds,
    trailer_words,
)

__all__ = ["SEED", "VECTOR_N_VFS", "VECTOR_MAX_CHUNK", "DEFAULT_OUT", "Malformed",
           "payload_bounds", "trailer_words", "classify", "build_vectors", "build_document",
           "render", "main"]

SEED = 20240604
# The receiver the vectors are written for: the default system's VF count and its longest
# STATE_DATA chunk (``SystemConfig().max_chunk_words`` = 64).
VECTOR_N_VFS = 8
VECTOR_MAX_CHUNK = 64
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "tests" / "vectors" / "protocol_vectors.json"


# ---------------------------------------------------------------------------- vectors
def _message_fields(msg: Message) -> dict:
    return {"type": int(msg.type), "reason": int(msg.reason), "vf": msg.vf,
            "arg": f"{msg.arg & MASK32:08x}", "payload": [f"{w:08x}" for w in msg.payload]}


def _vector(name: str, words: list[int], msg: Message | None = None) -> dict:
    """``msg`` is given when ``words`` is its model encoding (an encoder must produce it)."""
    if msg is not None and msg.to_words() != words:
        raise AssertionError(f"vector {name}: words are not the encoding of its message")
    verdict, decoded = classify(words, VECTOR_N_VFS, VECTOR_MAX_CHUNK)
    return {"name": name, "words": [f"{w:08x}" for w in words],
            "malformed": verdict.name,
            "message": None if msg is None else _message_fields(msg),
            "decoded": None if decoded is None else _message_fields(decoded)}


def _encoded(name: str, msg: Message) -> dict:
    return _vector(name, msg.to_words(), msg)


def build_vectors(seed: int = SEED) -> list[dict]:
    rng = random.Random(seed)
    n_vfs, chunk = VECTOR_N_VFS, VECTOR_MAX_CHUNK
    vectors: list[dict] = []

    def payload(n: int) -> list[int]:
        return [rng.getrandbits(32) for _ in range(n)]

    def vf() -> int:
        return rng.randrange(n_vfs)

    # Every well-formed type; edge VF ids and arguments.
    for type_ in MsgType:
        lo, _ = payload_bounds(type_, chunk)
        for tag, vf_id, arg in (("min", 0, 0), ("max", n_vfs - 1, MASK32),
                                ("rand", vf(), rng.getrandbits(32))):
            vectors.append(_encoded(f"{type_.name.lower()}_{tag}",
                                    Message(type_, vf_id, arg, Reason.NONE, payload(lo))))
    # Every reason on the messages that carry one (and one on a message that does not:
    # the codec allows a reason on any type).
    for type_ in (MsgType.REJECT, MsgType.ABORT, MsgType.ERROR):
        for reason in Reason:
            vectors.append(_encoded(f"{type_.name.lower()}_{reason.name.lower()}",
                                    Message(type_, vf(), 0, reason)))
    vectors.append(_encoded("commit_with_reason", Message(MsgType.COMMIT, vf(), 0,
                                                          Reason.PROTOCOL)))
    # STATE_DATA edge lengths and payload patterns.
    for n in (1, 2, 3, chunk - 1, chunk):
        vectors.append(_encoded(f"state_data_len{n}",
                                Message(MsgType.STATE_DATA, vf(), rng.randrange(1 << 16),
                                        Reason.NONE, payload(n))))
    for tag, word in (("zeros", 0), ("ones", MASK32)):
        vectors.append(_encoded(f"state_data_{tag}",
                                Message(MsgType.STATE_DATA, vf(), 0, Reason.NONE, [word] * 8)))
    for i in range(8):
        vectors.append(_encoded(f"state_data_random{i}",
                                Message(MsgType.STATE_DATA, vf(), rng.getrandbits(32),
                                        Reason.NONE, payload(rng.randint(1, chunk)))))
    vectors.append(_encoded("round_end_ones",
                            Message(MsgType.ROUND_END, vf(), MASK32, Reason.NONE, [MASK32])))

    # ---- malformed, one group per reason (cases that also break a later rule check the
    # priority order).
    good = Message(MsgType.STATE_DATA, 1, 0x40, Reason.NONE, payload(4)).to_words()
    for type_ in (0, 12, 13, 14, 15):
        vectors.append(_vector(f"bad_type_{type_}", [pack_header(type_, vf()), 0]))
    vectors.append(_vector("bad_type_and_framing", [pack_header(0, 0, 3), 1, 2]))
    vectors.append(_vector("bad_type_single_word", [pack_header(15, 1)]))
    for reason in (9, 15):
        vectors.append(_vector(f"bad_reason_{reason}",
                               [pack_header(MsgType.ABORT, vf(), reason=reason), 0]))
    vectors.append(_vector("bad_reason_and_vf",
                           [pack_header(MsgType.ERROR, n_vfs, reason=12), 0]))
    # LENGTH: consistent words, but a length the type never carries.
    for type_ in (MsgType.BEGIN, MsgType.COMMIT, MsgType.ABORT_ACK):
        vectors.append(_encoded(f"length_{type_.name.lower()}_with_payload",
                                Message(type_, vf(), 0, Reason.NONE, payload(1))))
    vectors.append(_encoded("length_state_data_empty", Message(MsgType.STATE_DATA, vf(), 0)))
    vectors.append(_encoded("length_state_data_over_chunk",
                            Message(MsgType.STATE_DATA, vf(), 0, Reason.NONE,
                                    payload(chunk + 1))))
    vectors.append(_encoded("length_round_end_empty", Message(MsgType.ROUND_END, vf(), 0)))
    vectors.append(_encoded("length_round_end_two",
                            Message(MsgType.ROUND_END, vf(), 0, Reason.NONE, payload(2))))
    vectors.append(_vector("length_state_data_max_field_short",
                           [pack_header(MsgType.STATE_DATA, 1, 0xFFFF), 0, 0]))
    vectors.append(_vector("length_and_vf",
                           [pack_header(MsgType.SWITCHOVER, n_vfs, 1), 0, 0]))
    # VF out of range.
    for vf_id in (n_vfs, 0xFF):
        vectors.append(_encoded(f"vf_{vf_id}", Message(MsgType.COMMIT, vf_id)))
    vectors.append(_vector("vf_and_bad_crc",
                           [pack_header(MsgType.STATE_DATA, n_vfs, 4), *good[1:-1],
                            good[-1] ^ 1]))
    # FRAMING: last early or late.
    vectors.append(_vector("framing_header_only", [pack_header(MsgType.COMMIT, 1)]))
    vectors.append(_vector("framing_control_extra_word",
                           [pack_header(MsgType.ABORT_ACK, 2), 0, 0x1234]))
    vectors.append(_vector("framing_state_data_no_crc", good[:-1]))
    vectors.append(_vector("framing_state_data_header_and_arg", good[:2]))
    vectors.append(_vector("framing_state_data_extra_word", [*good, 0]))
    vectors.append(_vector("framing_state_data_missing_word_and_crc", good[:-2]))
    vectors.append(_vector("framing_round_end_no_payload",
                           [pack_header(MsgType.ROUND_END, 3, 1), 7]))
    vectors.append(_vector("framing_round_end_extra_word",
                           [pack_header(MsgType.ROUND_END, 3, 1), 7, 1, 2]))
    # CRC: any flipped bit of payload or CRC word.
    for i, (index, bit) in enumerate(((2, 0), (3, 17), (5, 31), (6, 0), (6, 31))):
        bad = list(good)
        bad[index] ^= 1 << bit
        vectors.append(_vector(f"crc_flip{i}", bad))
    full = Message(MsgType.STATE_DATA, n_vfs - 1, 0, Reason.NONE, payload(chunk)).to_words()
    vectors.append(_vector("crc_full_chunk", full[:-1] + [full[-1] ^ 0x8000_0000]))
    vectors.append(_vector("crc_swapped_words", [*good[:2], good[3], good[2], *good[4:]]))
    return vectors


def build_document(seed: int = SEED) -> dict:
    return {
        "generator": "python -m model.protocol_vectors (do not edit)",
        "seed": seed, "n_vfs": VECTOR_N_VFS, "max_chunk_words": VECTOR_MAX_CHUNK,
        "malformed_reasons": {r.name: int(r) for r in Malformed},
        "vectors": build_vectors(seed),
    }


def render(document: dict) -> str:
    """The file's exact text (one vector per line keeps diffs readable)."""
    head = {k: v for k, v in document.items() if k != "vectors"}
    lines = [json.dumps(head, sort_keys=True)[:-1] + ', "vectors": [']
    lines += [json.dumps(v, sort_keys=True) + ("," if i + 1 < len(document["vectors"]) else "")
              for i, v in enumerate(document["vectors"])]
    lines.append("]}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(build_document(args.seed)))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
