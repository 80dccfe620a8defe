"""tb/system/phase_fault.py without a simulator: parsing, the message tap, the corrupted
frame that still passes the link CRC, and a forced fault hitting exactly its flits."""

from __future__ import annotations

import logging

import pytest

from model.link import (
    FaultConfig,
    FrameKind,
    FrameParser,
    LinkParams,
    TrafficClass,
    frame_to_flits,
    frame_words,
)
from model.protocol import Message, MsgType
from tb.common.link_fault import FaultyChannel
from tb.system.phase_fault import (
    FLITS_HIT,
    CorruptFrame,
    MessageTap,
    PhaseFaultInjector,
    parse_faults,
)

W = 2                      # 64-bit flits, as the system's link
PARAMS = LinkParams(link_width=64)


def frames_of(msg: Message, seq: int, tc=TrafficClass.MIG, split: int = 0) -> list[list]:
    """The frames of one message (split after ``split`` words when given)."""
    words = msg.to_words()
    parts = [words[:split], words[split:]] if split else [words]
    return [frame_to_flits(frame_words(FrameKind.DATA, tc, int(i == len(parts) - 1), seq + i,
                                       part), W) for i, part in enumerate(parts)]


@pytest.mark.parametrize(("text", "message"), [
    ("0:BEGIN", "phase fault '0:BEGIN' is not STEP:PHASE:KIND"),
    ("x:BEGIN:drop", "phase fault 'x:BEGIN:drop' is not STEP:PHASE:KIND"),
    ("0:LATER:drop", "unknown phase 'LATER': phases are BEGIN, PRECOPY, RESIDUAL, "
                     "SWITCHOVER, COMMIT, COMMIT_ACK"),
    ("0:BEGIN:melt", "unknown fault kind 'melt': kinds are burst, drop, duplicate, "
                     "delay, down_short, down_long, corrupt"),
    ("1:COMMIT:corrupt", "fault kind corrupt needs state data: phase COMMIT carries none "
                         "(use one of PRECOPY, RESIDUAL, SWITCHOVER)"),
])
def test_bad_phase_faults_are_one_clear_line(text, message):
    with pytest.raises(ValueError) as info:
        parse_faults(text)
    assert str(info.value) == message


def test_phase_faults_parse():
    faults = parse_faults("0:begin:DROP, 3:COMMIT_ACK:down_long")
    assert [str(f) for f in faults] == ["0:BEGIN:drop", "3:COMMIT_ACK:down_long"]


def test_the_tap_names_each_message_once_and_skips_replays_and_continuations():
    tap = MessageTap(W)
    begin = frames_of(Message(MsgType.BEGIN, 3, 89), seq=0)[0]
    data = frames_of(Message(MsgType.STATE_DATA, 3, 0, payload=list(range(8))), seq=1,
                     split=4)
    io = frames_of(Message(MsgType.COMMIT, 2), seq=3, tc=TrafficClass.IO)[0]
    sent = begin + data[0] + data[1] + begin + io      # ... and a replay of the BEGIN
    seen = [tap.start_of(flit) for flit in sent]
    found = [(m["type"], m["vf"]) for _, m in filter(None, seen)]
    assert found == [(MsgType.BEGIN, 3), (MsgType.STATE_DATA, 3)]
    assert seen[0] is not None and seen[len(begin)] is not None


def test_a_corrupted_frame_passes_the_link_crc_with_one_bit_flipped():
    flits = frames_of(Message(MsgType.STATE_DATA, 1, 0, payload=[7] * 6), seq=5)[0]
    frame = CorruptFrame(W, length=2 + 6 + 1, word=3)   # header, payload, chunk CRC
    edited, done = [], False
    for flit in flits:
        out, done = frame.edit(flit)
        edited.append(out)
    assert done
    parser, reference = FrameParser(PARAMS), FrameParser(PARAMS)
    got = [f for flit in edited for f in parser.push(flit)]
    clean = [f for flit in flits for f in reference.push(flit)]
    assert len(got) == 1 and got[0].ok                     # the link CRC still matches
    diff = [i for i, (a, b) in enumerate(zip(got[0].payload, clean[0].payload, strict=True))
            if a != b]
    assert diff == [2] and got[0].payload[2] ^ clean[0].payload[2] == 1


class _Link:
    """The part of tb.system.link.SystemLink the injector uses."""

    def __init__(self):
        from tb.common.link_fault import WireLane
        self.lanes = {name: WireLane(None, None, FaultyChannel(64, FaultConfig(), seed=1))
                      for name in ("h2o", "o2h")}
        self.log = logging.getLogger("test")
        self.downs = []

    def link_down(self, cycles):
        self.downs.append(cycles)


def _send(link, wire, flits):
    """What the receiver of ``wire`` gets for ``flits`` (one per cycle, then 40 idle)."""
    lane = link.lanes[wire]
    return [lane.channel.step(lane.tap(f)) for f in [*flits, *[None] * 40]]


@pytest.mark.parametrize("kind", ["drop", "duplicate", "burst", "delay"])
def test_a_forced_fault_hits_exactly_its_flits_of_the_phase_message(kind):
    link = _Link()
    inj = PhaseFaultInjector(link, parse_faults(f"0:SWITCHOVER:{kind}"), timeout_cycles=8192)
    inj.arm(0, vf=2, source="h2o")
    before = frames_of(Message(MsgType.STATE_DATA, 2, 0, payload=[1] * 6), seq=0)[0]
    trigger = frames_of(Message(MsgType.SWITCHOVER, 2, 0xABCD), seq=1)[0]
    after = frames_of(Message(MsgType.COMMIT, 2), seq=2)[0] * 3
    _send(link, "h2o", before)
    out = _send(link, "h2o", trigger + after)
    counts = link.lanes["h2o"].channel.counts()
    want = {"drop": "dropped", "duplicate": "duplicated", "burst": "bursts",
            "delay": "delays"}[kind]
    assert counts[want] == FLITS_HIT
    assert inj.fired[0]["message"] == "SWITCHOVER" and inj.problems() == []
    assert link.lanes["h2o"].channel.faults == FaultConfig()      # restored afterwards
    assert sum(f is not None for f in out) == len(trigger + after) + {
        "drop": -FLITS_HIT, "duplicate": FLITS_HIT, "burst": 0, "delay": 0}[kind]


def test_commit_ack_faults_the_wire_back_and_a_fault_never_fired_is_a_problem():
    link = _Link()
    inj = PhaseFaultInjector(link, parse_faults("0:COMMIT_ACK:down_long,1:BEGIN:drop"),
                             timeout_cycles=8192)
    inj.arm(0, vf=0, source="h2o")
    _send(link, "h2o", frames_of(Message(MsgType.COMMIT_ACK, 0), seq=0)[0])   # wrong wire
    assert link.downs == []
    _send(link, "o2h", frames_of(Message(MsgType.COMMIT_ACK, 0), seq=0)[0])
    assert link.downs == [8192 + 2048]
    assert inj.problems() == ["phase fault 1:BEGIN:drop never fired (its phase never "
                              "started for the VF of step 1)"]


def test_residual_waits_for_the_stop_copy_request():
    link = _Link()
    inj = PhaseFaultInjector(link, parse_faults("0:RESIDUAL:drop"), timeout_cycles=8192)
    inj.arm(0, vf=1, source="o2h")
    chunk = frames_of(Message(MsgType.STATE_DATA, 1, 0, payload=[3] * 4), seq=0)[0]
    _send(link, "o2h", chunk)
    assert 0 not in inj.fired                     # a pre-copy chunk: not the residual yet
    inj.stop_copy(0)
    _send(link, "o2h", frames_of(Message(MsgType.STATE_DATA, 1, 4, payload=[3] * 4),
                                 seq=1)[0])
    assert inj.fired[0]["message"] == "STATE_DATA"


def test_the_matrix_table_lists_every_cell_with_its_outcome(tmp_path):
    from tb.system.fault_matrix import CELLS, Rows, render
    rows = Rows(tmp_path)
    report = {"migrations": [{"result": "aborted", "error": "TIMEOUT at COMMIT",
                              "total_cycles": 12000, "downtime_cycles": 900}] * 2,
              "link_faults": {"phase_faults": [{"fired": {"message": "COMMIT"}}]},
              "link": {"replays": 3}, "cycles": 30000}
    rows.write("verilator", CELLS[0], 5, report)
    text = render({"verilator": rows.read("verilator"), "icarus": {}})
    lines = [line for line in text.splitlines() if line.startswith(f"| {CELLS[0]} |")]
    assert lines == [f"| {CELLS[0]} | COMMIT | aborted | TIMEOUT at COMMIT | 12000 | 900 | 3 "
                     f"| 5 |  |"]
    assert all(f"| {cell} |" in text for cell in CELLS)
    assert f"1 of {len(CELLS)} cells have a Verilator row" in text
