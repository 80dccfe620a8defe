"""Fast tests of the full-system scoreboard and traffic generator (tb/system/traffic.py)."""

from __future__ import annotations

import json
import random

import pytest

from model.config import Device, SystemConfig
from model.irq_remap import RemapParams, handle_of_address
from model.state import GoldenVF, ImageLayout, Op
from tb.system.env import Knobs, config_to_json
from tb.system.traffic import (
    Scoreboard,
    TrafficGenerator,
    VmInterrupt,
    VmResponse,
    irte_destination,
    msix_message,
)
from tb.system.vmm import (
    _placement,
    check_plan,
    default_plan,
    format_plan,
    heavy_vfs,
    parse_plan,
    plan_groups,
)

LAYOUT = ImageLayout(csr_words=8, msix_vectors=4, mem_words=64)
N_VFS = 3
REMAP = RemapParams(N_VFS, LAYOUT.msix_vectors)


class PerfectDut:
    """A DUT stand-in built on its own golden models: answers exactly as the spec says."""

    def __init__(self):
        self.vfs = [GoldenVF(LAYOUT) for _ in range(N_VFS)]

    def answer(self, req) -> VmResponse:
        data, error = self.vfs[req.vf].request(req.op, req.addr, req.data)
        return VmResponse(req.vf, req.tag, data, int(error))

    def irqs(self, vf: int) -> list[VmInterrupt]:
        """What a perfect remapper delivers: the messages naming the VF's own entries."""
        return [VmInterrupt(*irte_destination(vf, i.vector), vf, i.vector)
                for i in self.vfs[vf].interrupts
                if handle_of_address(i.addr) == REMAP.handle(vf, i.vector)]


def _setup(seed: int = 1, n: int = 200, error_prob: float = 0.05):
    gen = TrafficGenerator(LAYOUT, N_VFS, tag_bits=8, rng=random.Random(seed), heavy_vfs=(1,),
                           error_prob=error_prob)
    reqs = gen.msix_init() + [gen.random_request() for _ in range(n)]
    return gen, reqs, Scoreboard(LAYOUT, N_VFS), PerfectDut()


def _msix_programmed():
    """A generator, scoreboard and perfect DUT after the MSI-X programming requests."""
    gen, _, sb, dut = _setup(n=0)
    for req in gen.msix_init():
        sb.issued(req)
        sb.response(dut.answer(req))
    return gen, sb, dut


def test_perfect_dut_passes_and_counts():
    gen, reqs, sb, dut = _setup()
    for req in reqs:
        sb.issued(req)
    for req in reqs:
        sb.response(dut.answer(req))
    for vf in range(N_VFS):
        for irq in dut.irqs(vf):
            sb.interrupt(irq)
    totals = sb.finish()
    assert sb.ok(), sb.messages
    assert totals.requests == totals.responses_checked == len(reqs)
    assert totals.irq_raised == totals.irq_delivered > 0
    # the error path was exercised: some responses carry error=1
    assert any(dut.answer(r).error for r in [gen.random_request() for _ in range(300)])


def test_responses_of_different_vfs_may_interleave():
    _, reqs, sb, dut = _setup(n=60)
    for req in reqs:
        sb.issued(req)
    answers = [dut.answer(r) for r in reqs]
    # per VF in order, VFs in reverse order of each other
    for vf in reversed(range(N_VFS)):
        for resp in answers:
            if resp.vf == vf:
                sb.response(resp)
        for irq in dut.irqs(vf):
            sb.interrupt(irq)
    assert sb.ok(), sb.messages


def test_wrong_data_is_a_mismatch():
    gen, _, sb, dut = _setup(n=0)
    sb.issued(req := gen.request(0, Op.WRITE, LAYOUT.mem_base, 5))
    sb.response(dut.answer(req))
    sb.issued(req := gen.request(0, Op.READ, LAYOUT.mem_base))
    good = dut.answer(req)
    assert good.data == 5
    sb.response(VmResponse(0, good.tag, 6, 0))
    assert sb.finish().mismatches == 1
    assert not sb.ok()
    assert "expected data=0x00000005" in sb.messages[0]


def test_wrong_error_flag_is_a_mismatch():
    gen, _, sb, dut = _setup(n=0)
    sb.issued(req := gen.request(2, Op.READ, LAYOUT.image_words))  # past the image
    assert dut.answer(req).error == 1
    sb.response(VmResponse(2, req.tag, 0, 0))
    assert sb.finish().mismatches == 1


def test_readback_mismatch_counts_as_image_mismatch():
    gen, _, sb, dut = _setup(n=0)
    for req in gen.readback(1):
        sb.issued(req)
        resp = dut.answer(req)
        if req.addr == LAYOUT.mem_base + 3:
            resp = VmResponse(resp.vf, resp.tag, resp.data ^ 1, resp.error)
        sb.response(resp)
    totals = sb.finish()
    assert (totals.mismatches, totals.image_mismatches) == (1, 1)


def test_lost_response_is_flagged_without_cascade():
    gen, _, sb, dut = _setup(n=0)
    reqs = [gen.request(0, Op.ADD, LAYOUT.mem_base, 1) for _ in range(5)]
    for req in reqs:
        sb.issued(req)
    for i, req in enumerate(reqs):
        if i != 2:
            sb.response(dut.answer(req))
        else:
            dut.answer(req)  # the DUT executed it but the response vanished
    totals = sb.finish()
    assert totals.lost == 1
    assert totals.mismatches == 0 and totals.reordered == 0
    assert f"tag {reqs[2].tag}" in sb.messages[0] or f"tag={reqs[2].tag}" in sb.messages[0]


def test_lost_at_the_end_is_flagged():
    gen, _, sb, dut = _setup(n=0)
    sb.issued(gen.request(1, Op.READ, 0))
    assert sb.outstanding() == 1
    assert sb.finish().lost == 1
    assert not sb.ok()


def test_duplicate_response_is_flagged():
    gen, _, sb, dut = _setup(n=0)
    sb.issued(req := gen.request(0, Op.READ, 1))
    resp = dut.answer(req)
    sb.response(resp)
    sb.response(resp)
    totals = sb.finish()
    assert totals.duplicates == 1 and totals.responses_checked == 1
    assert not sb.ok()


def test_reordered_responses_of_one_vf_are_flagged():
    gen, _, sb, dut = _setup(n=0)
    reqs = [gen.request(0, Op.READ, 1), gen.request(0, Op.READ, 2)]
    for req in reqs:
        sb.issued(req)
    answers = [dut.answer(r) for r in reqs]
    sb.response(answers[1])
    sb.response(answers[0])
    totals = sb.finish()
    assert totals.reordered == 1 and totals.lost == 0
    assert not sb.ok()


def test_response_for_unknown_vf_is_flagged():
    _, _, sb, _ = _setup(n=0)
    sb.response(VmResponse(N_VFS + 1, 0, 0, 0))
    assert not sb.ok()


def _notify(gen, sb, dut, vf, vector, times=1):
    for _ in range(times):
        sb.issued(req := gen.request(vf, Op.NOTIFY, 0, vector))
        sb.response(dut.answer(req))


def _irq(vf: int, vector: int) -> VmInterrupt:
    """The delivery the VMM's remapping entry for (vf, vector) makes."""
    return VmInterrupt(*irte_destination(vf, vector), vf, vector)


def test_interrupts_may_coalesce_but_not_vanish_or_multiply():
    gen, sb, dut = _msix_programmed()
    _notify(gen, sb, dut, 0, 1, times=3)
    addr, data = msix_message(REMAP, 0, 1)
    assert (dut.vfs[0].interrupts[0].addr, dut.vfs[0].interrupts[0].data) == (addr, data)
    sb.interrupt(_irq(0, 1))  # coalesced: 3 raised, 1 delivered
    assert sb.ok(), sb.messages
    assert sb.irq_summary()["0.1"] == {"raised": 3, "delivered": 1}


def test_interrupt_never_delivered_is_flagged():
    gen, sb, dut = _msix_programmed()
    _notify(gen, sb, dut, 2, 3)
    assert sb.finish().irq_errors == 1
    assert "never delivered" in sb.messages[0]


@pytest.mark.parametrize("irq", [
    _irq(0, 2),                                   # vector never raised
    VmInterrupt(*irte_destination(1, 1), 0, 1),   # right entry, another VF's VM (misdelivered)
    _irq(1, 1),                                   # right vector, wrong VF
])
def test_wrong_interrupt_is_flagged(irq):
    gen, sb, dut = _msix_programmed()
    _notify(gen, sb, dut, 0, 1)
    sb.interrupt(_irq(0, 1))
    sb.interrupt(irq)
    assert sb.finish().irq_errors >= 1


def test_interrupt_delivered_more_often_than_raised_is_flagged():
    gen, sb, dut = _msix_programmed()
    _notify(gen, sb, dut, 0, 0)
    sb.interrupt(_irq(0, 0))
    sb.interrupt(_irq(0, 0))
    assert sb.finish().irq_errors == 1


def test_requests_to_unknown_vf_ids_expect_an_error_response():
    gen = TrafficGenerator(LAYOUT, N_VFS, 8, random.Random(2), unknown_vf_prob=0.5)
    reqs = [gen.random_request() for _ in range(40)]
    unknown = [r for r in reqs if r.vf >= N_VFS]
    assert unknown and all(N_VFS <= r.vf <= 255 for r in unknown)
    sb = Scoreboard(LAYOUT, N_VFS)
    for req in unknown:
        sb.issued(req)
    first, *rest = unknown
    sb.response(VmResponse(first.vf, first.tag, 0, 1))
    assert sb.ok() is False  # the rest are still outstanding: lost
    sb2 = Scoreboard(LAYOUT, N_VFS)
    sb2.issued(first)
    sb2.response(VmResponse(first.vf, first.tag, 0, 0))   # no error: a mismatch
    assert sb2.finish().mismatches == 1


def test_spoofed_raise_is_counted_not_expected_delivered():
    gen, sb, dut = _msix_programmed()
    for req in gen.spoof(1, 0, victim=0, times=2):
        sb.issued(req)
        sb.response(dut.answer(req))
    totals = sb.finish()
    assert totals.irq_spoofed == 2 and totals.irq_raised == 0
    assert sb.ok(), sb.messages


def test_generator_is_reproducible_from_its_seed():
    a = [TrafficGenerator(LAYOUT, N_VFS, 8, random.Random(7)).random_request()
         for _ in range(50)]
    b = [TrafficGenerator(LAYOUT, N_VFS, 8, random.Random(7)).random_request()
         for _ in range(50)]
    assert a == b


def test_generator_stays_out_of_msix_and_pba_after_init():
    gen = TrafficGenerator(LAYOUT, N_VFS, 8, random.Random(3), heavy_vfs=(0,), error_prob=0.0)
    for _ in range(2000):
        req = gen.random_request()
        if req.op != Op.NOTIFY:
            assert req.addr < LAYOUT.msix_base or LAYOUT.mem_base <= req.addr < LAYOUT.image_words


def test_write_heavy_vf_dirties_many_blocks_normal_vf_few():
    gen = TrafficGenerator(LAYOUT, N_VFS, 8, random.Random(5), heavy_vfs=(1,), error_prob=0.0)
    golden = [GoldenVF(LAYOUT) for _ in range(N_VFS)]
    for _ in range(3000):
        req = gen.random_request()
        golden[req.vf].request(req.op, req.addr, req.data)
    heavy_blocks = len(golden[1].read_and_clear_dirty())
    mem_blocks = len({LAYOUT.block_of(a) for a in range(LAYOUT.mem_base, LAYOUT.image_words)})
    assert heavy_blocks >= mem_blocks
    for vf in (0, 2):
        assert len(golden[vf].read_and_clear_dirty()) <= 2  # converges at threshold 2


def test_readback_covers_image_except_pba():
    gen = TrafficGenerator(LAYOUT, N_VFS, 8, random.Random(1))
    addrs = [r.addr for r in gen.readback(0)]
    assert set(addrs) == set(range(LAYOUT.image_words)) - set(range(LAYOUT.pba_base,
                                                                      LAYOUT.mem_base))
    assert all(r.op == Op.READ and r.phase == "readback" for r in gen.readback(2))


def test_msix_messages_name_their_own_entry_and_are_unique():
    params = RemapParams(16, 16)
    values = {msix_message(params, vf, v) for vf in range(16) for v in range(16)}
    assert len(values) == 256
    for vf, vector in ((0, 0), (3, 7), (15, 15)):
        addr, _ = msix_message(params, vf, vector)
        assert handle_of_address(addr) == params.handle(vf, vector)
    assert len({irte_destination(vf, v) for vf in range(16) for v in range(16)}) == 256


def test_tags_wrap_per_vf():
    gen = TrafficGenerator(LAYOUT, N_VFS, tag_bits=2, rng=random.Random(1))
    assert [gen.tag(0) for _ in range(5)] == [0, 1, 2, 3, 0]
    assert gen.tag(1) == 0


# ---------------------------------------------------------------- scenario plan and knobs
def _config(**kw):
    return SystemConfig(**kw)


def test_default_plan_covers_the_make_sim_requirements():
    config = _config()
    steps = default_plan(config)
    check_plan(steps, config)
    moves = [s for s in steps if s.mode in ("pre", "stop")]
    assert len(moves) >= 4
    where = [Device.HOST] * config.n_vfs
    directions = set()
    for step in moves:
        directions.add((where[step.vf], Device(1 - where[step.vf])))
        where[step.vf] = Device(1 - where[step.vf])
    assert len(directions) == 2                              # both directions
    assert [s.mode for s in steps].count("abort") == 1
    assert any(s.vf in heavy_vfs(config) and s.mode == "pre" for s in steps)
    assert any(s.mode == "invalid" for s in steps) and any(s.probe for s in steps)
    assert _placement(steps, config) == where


def test_plan_text_round_trips_and_rejects_nonsense():
    text = "0:pre,1:abort,3:invalid,0:stop:probe"
    assert format_plan(parse_plan(text)) == text
    for bad, message in [("0:fly", "migration mode 'fly'"), ("x:pre", "is not an integer"),
                         ("0:pre:probe:x", "is not VF:MODE[:probe]")]:
        with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
            parse_plan(bad)


def test_check_plan_knows_slot_counts_and_vf_ids():
    config = _config(n_vfs=4, host_slots=4, offload_slots=1)
    check_plan(parse_plan("0:pre,0:stop,1:pre,2:abort"), config)
    with pytest.raises(ValueError, match="plan step 1:pre: offload has no free slot"):
        check_plan(parse_plan("0:pre,1:pre"), config)
    with pytest.raises(ValueError, match="VF 4 does not exist"):
        check_plan(parse_plan("4:pre"), config)


def test_plan_groups_run_steps_together_and_never_one_vf_twice():
    text = "0:pre,0:pre+1:pre,2:pre+1:stop:probe"
    steps = parse_plan(text)
    assert format_plan(steps) == text
    assert [[str(s) for s in g] for g in plan_groups(steps)] == [
        ["0:pre"], ["0:pre", "1:pre"], ["2:pre", "1:stop:probe"]]
    with pytest.raises(ValueError, match="a VF cannot make two moves at once"):
        check_plan(parse_plan("0:pre+0:abort"), _config())


@pytest.mark.parametrize("n", [2, 6, 12])
def test_migrations_knob_truncates_or_extends_within_capacity(n):
    config = _config()
    steps = default_plan(config, n, random.Random(4))
    check_plan(steps, config)
    assert len([s for s in steps if s.mode != "invalid"]) == n


def test_small_systems_get_a_plan_that_fits():
    for n_vfs, offload in [(1, 1), (2, 1), (4, 2)]:
        config = _config(n_vfs=n_vfs, host_slots=n_vfs, offload_slots=offload)
        check_plan(default_plan(config), config)


def test_knobs_and_config_travel_through_the_environment():
    knobs = Knobs(seed=9, plan="0:pre", idle_prob=0.5, migrations=3)
    assert Knobs.from_env(knobs.to_env()) == knobs
    config = SystemConfig(n_vfs=3, offload_slots=2, layout=ImageLayout(mem_words=64))
    assert SystemConfig.from_dict(json.loads(config_to_json(config))) == config


def test_crosscheck_compare_flags_different_decisions_and_latencies():
    from types import SimpleNamespace

    from model.config import Device as D
    from tb.system.crosscheck import compare
    rtl = {"decisions": [{"vf": 0, "from": "host", "to": "offload", "issued": 8000,
                          "result": "committed"}],
           "policy": {"mean_latency": 100.0, "p99_latency": 400.0}}
    same = SimpleNamespace(moves=[SimpleNamespace(vf=0, source=D.HOST, target=D.OFFLOAD,
                                                  issued=8000)],
                           mean_latency=110.0, p99_latency=420.0)
    assert compare(rtl, same, 4000) == []
    other_vf = SimpleNamespace(**{**same.__dict__, "moves": [SimpleNamespace(
        vf=1, source=D.HOST, target=D.OFFLOAD, issued=8000)]})
    assert "decisions differ" in compare(rtl, other_vf, 4000)[0]
    late = SimpleNamespace(**{**same.__dict__, "moves": [SimpleNamespace(
        vf=0, source=D.HOST, target=D.OFFLOAD, issued=20000)]})
    assert "window 2 in RTL, 5 in fastsim" in compare(rtl, late, 4000)[0]
    slow = SimpleNamespace(**{**same.__dict__, "mean_latency": 200.0})
    assert compare(rtl, slow, 4000)[0].startswith("mean_latency")
