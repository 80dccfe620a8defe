"""docs/protocol.md, generated from model/protocol.py (transaction layer, acceptance rules)
and model/link.py (link layer): ``python -m model.protocol_doc`` writes it,
tests/model/test_protocol_doc.py checks that it is up to date.

Field positions, enum values and parameter defaults come from the models; the meaning of
each enum member is the comment on its line in the source (one place to edit), and the
worked examples are computed by the encoders themselves.
"""

from __future__ import annotations

import inspect
import re
import sys
from enum import IntEnum
from pathlib import Path

from . import link, protocol
from .link import (
    LINK_HEADER_FIELDS,
    LINK_WIDTHS,
    FrameKind,
    LinkParams,
    TrafficClass,
    frame_words,
    words_to_flits,
)
from .protocol import (
    HEADER_FIELDS,
    HEADER_WORDS,
    MAX_VFS,
    Malformed,
    Message,
    MsgType,
    Reason,
    crc32,
    payload_bounds,
    trailer_words,
)

DOC_PATH = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"
_MEMBER_LINE = re.compile(r"^\s+([A-Z][A-Z0-9_]*)\s*=\s*[^#\n]+#\s*(.*?)\s*$")

WORD0_MEANING = {
    "type": "message type (`MsgType`)",
    "reason": "reason code (`Reason`), 0 when none",
    "vf": f"VF id (0 … {MAX_VFS - 1})",
    "length": "payload words that follow word 1 (not counting a STATE_DATA CRC word)",
}
LINK_FIELD_MEANING = {
    "kind": "frame kind (`FrameKind`)",
    "tc": "traffic class (`TrafficClass`): DATA and FC frames",
    "eom": "end of message: this packet holds the message's last word (DATA)",
    "seq": "DATA: sequence number; ACK/NAK: last packet received in order; "
           "FC: credit limit in receive-buffer rows (all modulo 4096)",
    "length": "payload words (DATA: 1 … max_payload_words; DLLPs: 0)",
}


def member_comments(enum_cls: type[IntEnum]) -> dict[str, str]:
    """The end-of-line comment of each member in the enum's source."""
    comments = {}
    for line in inspect.getsource(enum_cls).splitlines():
        match = _MEMBER_LINE.match(line)
        if match:
            comments[match.group(1)] = match.group(2)
    return comments


def _bits(lsb: int, width: int) -> str:
    return f"{lsb}" if width == 1 else f"{lsb + width - 1}:{lsb}"


def _hex(words) -> str:
    return " ".join(f"{w:08x}" for w in words)


def _table(header: list[str], rows: list[list]) -> list[str]:
    def cell(value) -> str:
        return str(value).replace("|", "\\|")
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return out


def _msg_type_rows() -> list[list]:
    rows = []
    comments = member_comments(MsgType)
    for member in MsgType:
        parts = [part.strip() for part in comments.get(member.name, "").split(";")]
        # The comment's last part names the direction when it has one.
        direction = ""
        if "->" in parts[-1] or parts[-1] == "either way":
            direction = parts.pop()
        rows.append([member.value, f"`{member.name}`", "; ".join(p for p in parts if p) or "—",
                     direction or "—"])
    return rows


def transaction_layer() -> list[str]:
    lines = ["## 1. Transaction layer: VF Migration messages (`model/protocol.py`)", "",
             "A message is a sequence of 32-bit words handed to the link as a stream of "
             "`ChunkBeat`s (`data` 32 bits, `last` on the final word):", ""]
    lines += _table(["word", "content"], [
        ["0", "header (fields below)"],
        ["1", "`arg`: meaning per type"],
        [f"{HEADER_WORDS} … {HEADER_WORDS - 1} + length", "payload (`length` words)"],
        ["last", "STATE_DATA only: CRC-32 of the payload (the DMA's per-chunk CRC)"]])
    lines += ["", "### Header word 0", ""]
    lines += _table(["bits", "field", "meaning"], [
        [_bits(lsb, width), f"`{name}`", WORD0_MEANING.get(name, "")]
        for name, (lsb, width) in sorted(HEADER_FIELDS.items(), key=lambda kv: kv[1][0])])
    lines += ["", "### Message types (`MsgType`)", ""]
    lines += _table(["value", "type", "arg / payload", "direction"], _msg_type_rows())
    lines += ["", "### Reasons (`Reason`)", ""]
    comments = member_comments(Reason)
    lines += _table(["value", "reason", "meaning"],
                    [[r.value, f"`{r.name}`", comments.get(r.name, "—")] for r in Reason])
    chunk = [0x0000_0000, 0x1111_1111, 0xDEAD_BEEF, 0xFFFF_FFFF]
    example = Message(MsgType.STATE_DATA, vf=3, arg=0x40, payload=chunk)
    begin = Message(MsgType.BEGIN, vf=5, arg=301)
    abort = Message(MsgType.ABORT, vf=5, reason=Reason.DIGEST)
    lines += [
        "", "### CRC", "",
        "`crc32(words)` is CRC-32 (IEEE 802.3, reflected, as zlib) over the words taken "
        f"as little-endian bytes: `crc32([0x{chunk[2]:08x}]) = 0x{crc32(chunk[2:3]):08x}`. "
        "The same function is the link's LCRC.", "",
        "### Encoded examples (hex words, as `Message.to_words()` gives them)", ""]
    lines += _table(["message", "words"], [
        [f"STATE_DATA vf=3 offset=0x40, payload `{_hex(chunk)}`", f"`{_hex(example.to_words())}`"],
        ["BEGIN vf=5 image=301 words", f"`{_hex(begin.to_words())}`"],
        ["ABORT vf=5 reason=DIGEST", f"`{_hex(abort.to_words())}`"]])
    lines += [""] + acceptance_rules()
    return lines


def acceptance_rules() -> list[str]:
    """The receiver's rules (``classify``) and the malformed reason codes."""
    lines = ["### What a receiver accepts (`classify`)", "",
             "A receiver built for `n_vfs` VFs and chunks of at most `max_chunk_words` words "
             "(`SystemConfig.max_chunk_words`: the largest of `chunk_words`, `block_words` and "
             "the CSR/MSI-X/PBA words) takes a message only when its header length is one its "
             "type carries:", ""]
    bounds = []
    symbolic = 1 << 31  # stands for max_chunk_words in the table
    for type_ in MsgType:
        lo, hi = payload_bounds(type_, symbolic)
        words = (f"{lo} … `max_chunk_words`" if hi == symbolic
                 else f"{lo}" if lo == hi else f"{lo} … {hi}")
        trailer = trailer_words(type_)
        bounds.append([f"`{type_.name}`", words, f"{trailer} (CRC)" if trailer else "0"])
    lines += _table(["type", "payload words", "words after the payload"], bounds)
    lines += ["", "Anything else is dropped whole (nothing of it is delivered) and counted "
              "under the first reason that applies, in code order: the header word's own "
              "checks, then the framing (`last` exactly after the declared words), then the "
              "CRC. `Message.from_words` raises `MalformedMessage` (a ValueError) with the "
              "same reason; without `n_vfs`/`max_chunk_words` it checks only what the codec "
              "alone can see (type, reason, framing, CRC). `UNEXPECTED` is the migration "
              "engine's verdict on a well-formed message that is wrong in its protocol state "
              "(e.g. STATE_DATA for a VF that is not RESUMING there, COMMIT for no migration, "
              "ERROR): dropped, it changes no VF state or image. In the counters of "
              "`MigProtoDecoder.counts` and `MigEngine.malformed_counts`, indexed by code, "
              "code 0 (`NONE`) holds the total of all drops.", ""]
    comments = member_comments(Malformed)
    lines += _table(["code", "reason", "meaning"],
                    [[r.value, f"`{r.name}`", comments.get(r.name, "—")] for r in Malformed])
    return lines


def link_layer() -> list[str]:
    p = LinkParams()
    W = p.words_per_flit
    kinds = member_comments(FrameKind)
    classes = member_comments(TrafficClass)
    lines = ["", "## 2. Link layer (`model/link.py`, `hdl/link/`)", "",
             "Each device has one `LinkPort`: it drives its TX wire and listens to its RX wire. "
             "One direction of the link is the transmitter of one port, a wire, and the "
             "receiver of the other port. ACK, NAK and flow-control DLLPs of a direction "
             "travel interleaved with packets on the *opposite* wire, as in PCIe: they see "
             "the same faults as data (a lost ACK is what the replay timer is for), and the "
             "two wires are the whole interface between the devices, so a test or the system "
             "top can corrupt, drop, duplicate or delay anything that crosses.", "",
             "### Parameters", ""]
    lines += _table(["parameter", "default", "rule"], [
        ["`link_width`", p.link_width, f"one of {', '.join(map(str, LINK_WIDTHS))} bits "
         "(`link_width / 32` words per flit)"],
        ["`replay_slots`", p.replay_slots, "power of two, 2 … 256: packets kept until "
         "acknowledged"],
        ["`replay_timeout`", p.replay_timeout, "cycles without ACK progress (while no packet "
         "is being sent) before a replay; default 4 maximum frames + 64, at least 2 maximum "
         "frames + 16"],
        ["`mig_share`", p.mig_share, "1 … 255: TC_MIG packets allowed per TC_IO packet "
         "while both classes wait"],
        ["`max_payload_words`", p.max_payload_words, "1 … 1023: words per packet; default = "
         f"one STATE_DATA message of the default {p.max_payload_words - 3}-word chunk; "
         "longer messages are cut into several packets"],
        ["`rx_buffer_flits`", p.rx_buffer_flits, "power of two, at least two maximum packets, "
         "at most 1024: receive-buffer rows per class; default the next power of two of "
         "three maximum packets"]])
    lines += ["", "Both ports of a link must be built with the same parameters.", "",
              "### The wire", "",
              "Per direction: `valid`, `sop` and `flit` (`link_width` bits), no ready (a wire "
              "cannot be stalled). Word *i* of a frame travels in lane *i* mod W of flit "
              "*i* div W (lane *j* = flit bits [32j+31:32j]); lanes after the LCRC are zero. "
              "`sop` marks the first flit of a frame: it is the framing bit (PCIe's K-codes "
              "or sync header), so a receiver finds the next frame after any corruption.", "",
              "### Frames", "",
              "Every frame is a header word, `length` payload words, and the LCRC: "
              "`crc32` of the header and the payload. DATA frames carry one packet of a "
              "message; DLLPs are frames of length 0.", ""]
    lines += _table(["bits", "field", "meaning"], [
        [_bits(lsb, width), f"`{name}`", LINK_FIELD_MEANING.get(name, "")]
        for name, (lsb, width) in sorted(LINK_HEADER_FIELDS.items(), key=lambda kv: kv[1][0])])
    lines += [""]
    lines += _table(["kind", "name", "meaning"],
                    [[k.value, f"`{k.name}`", kinds.get(k.name, "—")] for k in FrameKind])
    lines += [""]
    lines += _table(["tc", "class", "carries"],
                    [[c.value, f"`TC_{c.name}`", classes.get(c.name, "—")]
                     for c in TrafficClass])
    state_data = Message(MsgType.STATE_DATA, vf=1, arg=0x400,
                         payload=[0xA000_0000 + i for i in range(p.max_payload_words - 3)]
                         ).to_words()
    frame = frame_words(FrameKind.DATA, TrafficClass.MIG, 1, 7, state_data)
    flits = words_to_flits(frame, W)
    ack = frame_words(FrameKind.ACK, seq=7)
    fc = frame_words(FrameKind.FC, tc=TrafficClass.MIG, seq=p.rx_buffer_flits)
    lines += ["", "### Packing and the goodput budget", "",
              f"A STATE_DATA message of the default chunk is {len(state_data)} words "
              f"({HEADER_WORDS} header + {len(state_data) - HEADER_WORDS - 1} payload + 1 "
              f"CRC), one packet: {len(frame)} words with the link header and the LCRC, "
              f"{len(flits)} flits of {p.link_width} bits. Packet seq 7 of TC_MIG, vf 1, word "
              "offset 0x400, payload words a0000000, a0000001, … (hex, flit = lane 1 · "
              "lane 0):", ""]
    lines += _table(["flit", "sop", "lanes (high … low)"], [
        [0, 1, f"`{flits[0]:0{W * 8}x}` (header · message word 0)"],
        [1, 0, f"`{flits[1]:0{W * 8}x}`"],
        ["…", 0, "…"],
        [len(flits) - 1, 0, f"`{flits[-1]:0{W * 8}x}` (LCRC in lane "
         f"{(len(frame) - 1) % W})"]])
    lines += ["", f"DLLPs: ACK of seq 7 = `{_hex(ack)}` (header, LCRC), "
              f"FC of TC_MIG with limit {p.rx_buffer_flits} = `{_hex(fc)}`; one flit each "
              f"at {p.link_width} bits.", "",
              "Goodput bound (migration payload words per flit capacity, no errors, no "
              "DLLPs on the data wire) of that message for each width, with the default "
              "packet size:", ""]
    rows = []
    for width in LINK_WIDTHS:
        q = LinkParams(link_width=width)
        n = q.message_flits(len(state_data))
        rows.append([width, n, f"{q.ideal_goodput(len(state_data) - 3, len(state_data)):.3f}"])
    lines += _table(["link_width", "flits per message", "bound"], rows)
    lines += ["", "The receiver repeats both FC DLLPs every `8 × replay_timeout` cycles "
              f"({p.fc_refresh} at the defaults), the only other flits on an otherwise idle "
              "data wire; `python -m tb.bench_link` measures the rest "
              "(`build/bench/link.json`)."]
    lines += ["", "### Reliability (go-back-N, as PCIe's data link layer)", "",
              "- The transmitter numbers packets in one 12-bit sequence space shared by both "
              "classes and keeps each in a replay slot until an ACK or NAK covers it; with "
              "no free slot it accepts no new message.",
              "- The receiver accepts only the next expected sequence number with a good LCRC "
              "and a well-formed header, then schedules an ACK (cumulative: all packets up to "
              "`seq`). An older sequence number is a duplicate: dropped and ACKed again (its "
              "ACK may have been lost).",
              "- A bad LCRC, a malformed header, a frame cut short by the next `sop`, or a "
              "sequence gap on a DATA frame schedules one NAK (`seq` = last packet received in "
              "order); no further NAK until a packet is accepted. Bad DLLPs are dropped.",
              "- On a NAK the transmitter drops the acknowledged packets and, after the frame "
              "it is sending (and at most one more started in the NAK's cycle: the go-back "
              "acts a cycle late, for the clock), resends every unacknowledged one in order. "
              "The replay timer "
              "does the same after `replay_timeout` cycles without ACK progress, counting only "
              "while no packet is on the wire, so lost ACKs, NAKs and tail packets are "
              "recovered.",
              "- At a frame boundary DLLPs go first: NAK, ACK, FC of TC_IO, FC of TC_MIG, then "
              "packets.",
              "", "### Flow control and traffic classes", "",
              "- Each class has its own receive buffer (`rx_buffer_flits` rows) and credits "
              "counted in rows (a packet of L words takes ceil((L + 1) / W) rows: its LCRC-only "
              "last flit is not stored). The receiver advertises a credit limit per class "
              "(rows freed so far + buffer size, modulo 4096) in FC DLLPs whenever it freed "
              f"{p.fc_threshold} rows (half a maximum packet) since the last one, and repeats "
              "both periodically. The transmitter starts a packet of a class only while that "
              "class's limit covers a maximum packet, so a stalled consumer of one class "
              "never blocks the other and a packet in order always has room.",
              "- A packet is taken from TC_IO or TC_MIG when a slot and credits are free. "
              "While both wait, TC_MIG gets at most `mig_share` packets in a row, then TC_IO "
              "gets one; an idle class leaves the whole link to the other. So a TC_IO "
              "message waits for at most `mig_share` migration packets, and a lone one "
              "arriving during a long migration stream (whose share is spent) only for the "
              "packet being filled.",
              "- Messages are cut into packets of at most `max_payload_words` words (`eom` on "
              "the last); the receiver delivers each class's packets in order, so the "
              "message is reassembled without extra state."]
    return lines


def markdown() -> str:
    """docs/protocol.md."""
    lines = ["# VF Migration protocol and link layer", "",
             f"Generated from `{Path(protocol.__file__).name}` and `{Path(link.__file__).name}` "
             "in `model/` (`python -m model.protocol_doc`); do not edit by hand.", ""]
    lines += transaction_layer() + link_layer()
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    path = Path(argv[0]) if argv else DOC_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown())
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
