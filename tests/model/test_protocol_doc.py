"""docs/protocol.md is generated from the models (model/protocol_doc.py) and up to date."""

from __future__ import annotations

import re

from model.link import LINK_HEADER_FIELDS, FrameKind, TrafficClass
from model.protocol import HEADER_FIELDS, Malformed, Message, MsgType, Reason
from model.protocol_doc import DOC_PATH, markdown, member_comments


def test_docs_protocol_md_is_up_to_date():
    assert DOC_PATH.exists(), "docs/protocol.md is missing: run python -m model.protocol_doc"
    assert DOC_PATH.read_text() == markdown(), (
        "docs/protocol.md is stale: run python -m model.protocol_doc and commit the result")


def test_every_enum_member_is_described():
    for enum in (MsgType, Reason, Malformed, FrameKind, TrafficClass):
        comments = member_comments(enum)
        missing = [m.name for m in enum if m.name not in comments and m.value != 0]
        assert not missing, f"{enum.__name__} members without a comment in the source: {missing}"


def test_every_field_and_type_appears_in_the_document():
    text = markdown()
    for name in [*HEADER_FIELDS, *LINK_HEADER_FIELDS]:
        assert f"`{name}`" in text
    for member in [*MsgType, *Reason, *FrameKind]:
        assert f"`{member.name}`" in text


def test_documented_message_examples_decode_back():
    """The hex words in the document are real encodings: they decode to a message that
    encodes to the same words."""
    rows = re.findall(r"^\| (?:STATE_DATA|BEGIN|ABORT)[^|]*\| `([0-9a-f ]+)` \|$", markdown(),
                      re.MULTILINE)
    assert len(rows) == 3
    for row in rows:
        words = [int(w, 16) for w in row.split()]
        assert Message.from_words(words).to_words() == words


def test_malformed_reason_codes_are_documented():
    """Each reason code of the receiver's counters has its row, code and comment."""
    text = markdown()
    comments = member_comments(Malformed)
    for reason in Malformed:
        assert f"| {reason.value} | `{reason.name}` | {comments[reason.name]} |" in text
    assert "| `STATE_DATA` | 1 … `max_chunk_words` | 1 (CRC) |" in text
    assert "| `ROUND_END` | 1 | 0 |" in text
