# amaranth: UnusedElaboratable=no
"""The parts of hdl.link one at a time in amaranth.sim: receiver, replay buffer, credits,
DLLP scheduler and transmitter, each also with its planted ``_fault_inject`` bug, which its
test must catch (so each test can fail). Frames come from ``model.link.frame_words``."""

from __future__ import annotations

import pytest
from amaranth.sim import Simulator

from hdl.link import DllpScheduler, LinkCredits, LinkReceiver, LinkTransmitter, ReplayBuffer
from model.link import (
    FrameKind,
    LinkParams,
    TrafficClass,
    frame_to_flits,
    frame_words,
    unpack_link_header,
)

PARAMS = LinkParams(link_width=64, replay_slots=4, max_payload_words=8)


def _run(dut, bench, cycles_limit: int = 2000) -> None:
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run_until(cycles_limit * 1e-6)


@pytest.mark.parametrize("cls", [LinkReceiver, ReplayBuffer, LinkCredits, DllpScheduler,
                                 LinkTransmitter])
def test_parts_check_their_arguments(cls) -> None:
    name = cls.__name__
    with pytest.raises(TypeError, match=rf"^{name} params must be a model.link.LinkParams, "
                                        r"not 64$"):
        cls(64)
    with pytest.raises(ValueError, match=rf"^{name} _fault_inject must be None or one of "
                                         r"\w+(, \w+)*, not 'bogus'$"):
        cls(PARAMS, _fault_inject="bogus")


def _receive(fault: str | None, frames: list[list[int]]) -> dict[str, list[int]]:
    """Drive ``frames`` into a LinkReceiver (room in both buffers), record its outputs."""
    dut = LinkReceiver(PARAMS, _fault_inject=fault)
    seen: dict[str, list[int]] = {"commit": [], "ack_request": [], "nak_request": [],
                                  "expected": []}

    async def bench(ctx):
        for words in frames:
            for flit in frame_to_flits(words, PARAMS.words_per_flit):
                ctx.set(dut.rx.valid, 1)
                ctx.set(dut.rx.sop, flit.sop)
                ctx.set(dut.rx.flit, flit.data)
                await ctx.tick()
                for name in seen:
                    seen[name].append(ctx.get(getattr(dut, name)))
        ctx.set(dut.rx.valid, 0)
        for _ in range(3):
            await ctx.tick()
            for name in seen:
                seen[name].append(ctx.get(getattr(dut, name)))

    _run(dut, bench)
    return seen


def test_receiver_commits_in_order_and_acks_a_duplicate() -> None:
    first = frame_words(FrameKind.DATA, TrafficClass.IO, 1, 0, [1, 2, 3])
    again = list(first)
    bad = frame_words(FrameKind.DATA, TrafficClass.IO, 1, 1, [4])
    bad[-1] ^= 1
    seen = _receive(None, [first, again, bad])
    assert sum(seen["commit"]) == 1
    assert seen["expected"][-1] == 1
    assert sum(seen["ack_request"]) == 2          # the packet and its duplicate
    assert sum(seen["nak_request"]) == 1          # the bad LCRC


def test_receiver_fault_accept_duplicate_is_caught() -> None:
    first = frame_words(FrameKind.DATA, TrafficClass.MIG, 1, 0, [7])
    seen = _receive("accept_duplicate", [first, list(first)])
    assert sum(seen["commit"]) == 2               # what the clean receiver never does


async def _push_and_ack(ctx, dut, n_packets: int, ack_seq: int, sent_hi: int) -> tuple:
    for _ in range(n_packets):
        ctx.set(dut.push, 1)
        await ctx.tick()
    ctx.set(dut.push, 0)
    ctx.set(dut.sent_hi, sent_hi)
    ctx.set(dut.ack.valid, 1)
    ctx.set(dut.ack.seq, ack_seq)
    result = (ctx.get(dut.tail_next), ctx.get(dut.progress))
    await ctx.tick()
    ctx.set(dut.ack.valid, 0)
    return (*result, ctx.get(dut.tail), ctx.get(dut.head))


@pytest.mark.parametrize("fault, tail", [(None, 2), ("drop_oldest", 3)])
def test_replay_buffer_frees_what_is_acknowledged(fault, tail) -> None:
    dut = ReplayBuffer(PARAMS, _fault_inject=fault)
    got = {}

    async def bench(ctx):
        got["ack"] = await _push_and_ack(ctx, dut, 3, ack_seq=1, sent_hi=3)
        # An ACK beyond what was sent (stale or foreign) frees nothing.
        ctx.set(dut.ack.valid, 1)
        ctx.set(dut.ack.seq, 5)
        got["foreign"] = (ctx.get(dut.tail_next), ctx.get(dut.progress))

    _run(dut, bench)
    assert got["ack"] == (tail, 1, tail, 3)
    assert got["foreign"] == (tail, 0)


@pytest.mark.parametrize("fault", [None, "no_credit_check"])
def test_credits_gate_a_maximum_packet(fault) -> None:
    dut = LinkCredits(PARAMS, _fault_inject=fault)
    rows = PARAMS.slot_rows
    got = []

    async def bench(ctx):
        got.append(ctx.get(dut.avail))               # no FC DLLP yet: no credit
        ctx.set(dut.fc.valid, 1)
        ctx.set(dut.fc.tc, TrafficClass.MIG)
        ctx.set(dut.fc.limit, rows)
        await ctx.tick()
        ctx.set(dut.fc.valid, 0)
        got.append(ctx.get(dut.avail))
        ctx.set(dut.spend, 1)
        ctx.set(dut.spend_tc, TrafficClass.MIG)
        ctx.set(dut.spend_rows, 1)
        got.append(ctx.get(dut.avail))               # counts this cycle's spend
        await ctx.tick()

    _run(dut, bench)
    assert got == ([0b11] * 3 if fault else [0b00, 0b10, 0b00])


@pytest.mark.parametrize("fault", [None, "never_nak"])
def test_dllp_scheduler_priority_nak_ack_fc(fault) -> None:
    dut = DllpScheduler(PARAMS, _fault_inject=fault)
    kinds = []

    async def bench(ctx):
        ctx.set(dut.expected, 5)
        ctx.set(dut.ack_request, 1)
        ctx.set(dut.nak_request, 1)
        await ctx.tick()
        ctx.set(dut.ack_request, 0)
        ctx.set(dut.nak_request, 0)
        ctx.set(dut.dllp.ready, 1)
        for _ in range(3):   # a NAK carries the last good sequence number: no ACK after it
            assert ctx.get(dut.dllp.valid)
            head = unpack_link_header(ctx.get(dut.dllp.payload.as_value()))
            kinds.append((FrameKind(head["kind"]).name, head["tc"], head["seq"]))
            await ctx.tick()
        assert not ctx.get(dut.dllp.valid)

    _run(dut, bench)
    fc = [("FC", 0, 0), ("FC", 1, 0)]      # both due after reset, ``advertised`` left at 0
    assert kinds == ([("ACK", 0, 4)] if fault else [("NAK", 0, 4)]) + fc


def test_transmitter_replays_on_nak_unless_faulty() -> None:
    results = {}
    for fault in (None, "ignore_nak"):
        dut = LinkTransmitter(PARAMS, _fault_inject=fault)
        counts = {"tx_packets": 0, "tx_replays": 0}

        async def bench(ctx, dut=dut, counts=counts):
            ctx.set(dut.avail, 0b11)
            ctx.set(dut.io_in.valid, 1)
            ctx.set(dut.io_in.payload.data, 0xABCD)
            ctx.set(dut.io_in.payload.last, 1)
            for cycle in range(60):
                taken = ctx.get(dut.io_in.ready) and ctx.get(dut.io_in.valid)
                # NAK of nothing good (seq -1): replay from packet 0.
                ctx.set(dut.ack.valid, cycle == 20)
                ctx.set(dut.ack.nak, 1)
                ctx.set(dut.ack.seq, (1 << 12) - 1)
                for name in counts:
                    counts[name] += ctx.get(getattr(dut.events, name))
                await ctx.tick()
                if taken:
                    ctx.set(dut.io_in.valid, 0)

        _run(dut, bench)
        results[fault] = counts
    assert results[None] == {"tx_packets": 1, "tx_replays": 1}
    assert results["ignore_nak"] == {"tx_packets": 1, "tx_replays": 0}
