"""Placement policies (model/manager.py): the seed baseline, VFManager, the static one."""

from __future__ import annotations

import pytest

from model.config import Device, SystemConfig
from model.manager import (
    MigrationOutcome,
    SeedPolicy,
    StaticPolicy,
    SystemModel,
    SystemView,
    VFManager,
    make_policy,
)
from model.profiler import Contention, WindowReport, WorkloadData

H, OFF = Device.HOST, Device.OFFLOAD
WINDOW = 20_000


def wd(vf, device, rate=0.0, words=1.0, mean=0.0, throughput=None, requests=None):
    if requests is None:
        requests = 10 if rate > 0 else 0
    if throughput is None:
        throughput = 4 * rate * words
    return WorkloadData(vf, device, requests, rate, throughput, words, mean, mean, int(mean),
                        0.0, 0.0)


def report(workloads, host_busy=0.5, link=(0.0, 0.0), slots=(8, 4)):
    used = [0, 0]
    for w in workloads:
        used[w.device] += 1
    cont = Contention(WINDOW, host_busy, 0.1, used[0], slots[0], used[1], slots[1], *link)
    return WindowReport(WINDOW, tuple(workloads), cont)


def view(workloads, now=WINDOW, migrating=None, slots=(8, 4)):
    migrating = dict(migrating or {})
    loc = tuple(w.device for w in workloads)
    used = [0, 0]
    for vf, d in enumerate(loc):
        used[migrating.get(vf, d)] += 1
    return SystemView(now, loc, migrating, slots, tuple(used))


def moves(decisions):
    return [(d.vf, d.target) for d in decisions if d.migrate]


# ---------------------------------------------------------------- an independent model
def expected_gain(vfs, vf, m=None):
    """Latency-cycles per cycle saved by moving ``vf``, from the formulas in VFManager's
    docstring (Pollaczek-Khinchine wait per device and for the link, plus fixed latencies).
    ``vfs`` is a list of (rate, words, device)."""
    m = m or SystemModel()

    def total(conf):
        j = 0.0
        for dev in (H, OFF):
            on = [(lam, w) for lam, w, d in conf if d == dev]
            s = [m.service(dev, w) for _, w in on]
            lam = sum(x for x, _ in on)
            rho = sum(x * si for (x, _), si in zip(on, s, strict=True))
            m2 = sum(x * si * si for (x, _), si in zip(on, s, strict=True))
            if lam:
                j += lam * m2 / (2 * (1 - rho))
            j += sum(x * si for (x, _), si in zip(on, s, strict=True))
        off = [(lam, w) for lam, w, d in conf if d == OFF]
        t = [(m.header_words + w / 2) / m.link_words_per_cycle for _, w in off]
        lam = sum(x for x, _ in off)
        rho = sum(x * ti for (x, _), ti in zip(off, t, strict=True))
        m2 = sum(x * ti * ti for (x, _), ti in zip(off, t, strict=True))
        if lam:
            j += lam * m2 / (2 * (1 - rho))
        j += sum(x * 2 * (m.link_latency + ti) for (x, _), ti in zip(off, t, strict=True))
        return j

    after = list(vfs)
    lam, w, d = after[vf]
    after[vf] = (lam, w, OFF if d == H else H)
    return total(vfs) - total(after)


# A loaded host: a small VF, a large-transfer VF and a busy small one; each gains on the
# offload device, VF 2 most, then VF 1.
HEAVY = [(0.002, 1.0, H), (0.004, 64.0, H), (0.03, 1.0, H)]
# Only VF 0 gains there (VF 1 would load the offload device and the link too much).
ONE = [(0.002, 1.0, H), (0.005, 128.0, H)]


def workloads_of(vfs):
    return [wd(i, d, rate=lam, words=w) for i, (lam, w, d) in enumerate(vfs)]


def test_gain_matches_the_queueing_model():
    mgr = VFManager(enter_saving=0, cost_margin=1e12, horizon=1)
    ws = workloads_of(HEAVY)
    decisions = {d.vf: d for d in mgr.decide(report(ws), view(ws))}
    assert set(decisions) == {0, 1, 2}
    for vf in (0, 1, 2):
        d = decisions[vf]
        assert not d.migrate and d.reason.startswith("not worth it")
        assert d.gain == pytest.approx(expected_gain(HEAVY, vf), rel=1e-9)
        assert d.target == OFF and d.source == H


def test_migrates_with_a_reason_when_gain_beats_cost():
    mgr = VFManager()
    ws = workloads_of(HEAVY)
    decisions = mgr.decide(report(ws), view(ws))
    assert {vf for vf, _ in moves(decisions)} <= {0, 1, 2}
    assert all(target == OFF for _, target in moves(decisions))
    first = next(d for d in decisions if d.migrate)
    assert first.vf == 2  # the largest gain goes first
    assert "saves" in first.reason and "cost" in first.reason and "offload slots" in first.reason
    assert first.gain >= mgr.cost_margin * first.cost > 0
    assert str(first).startswith("vf 2 migrate host->offload: ")


def test_hysteresis_dead_band():
    # enter: a host VF moves only when it saves at least enter_saving per request
    saving = expected_gain(ONE, 0) / ONE[0][0]
    assert expected_gain(ONE, 1) < 0
    ws = workloads_of(ONE)
    for enter, moved in ((saving * 0.99, True), (saving * 1.01, False)):
        mgr = VFManager(enter_saving=enter)
        assert moves(mgr.decide(report(ws), view(ws))) == ([(0, OFF)] if moved else [])
    # exit: the same VF on the offload device, where going back saves a little
    light = [(0.001, 1.0, OFF), (0.004, 8.0, H)]
    back = expected_gain(light, 0) / light[0][0]
    assert 0 < back < 10
    ws = workloads_of(light)
    for exit_, moved in ((back * 0.99, True), (back * 1.01, False)):
        mgr = VFManager(exit_saving=exit_, cost_margin=0)
        assert ((0, H) in moves(mgr.decide(report(ws), view(ws)))) is moved
    # ... while from the host, at the same loads, it never goes to the offload device
    on_host = [(0.001, 1.0, H), (0.004, 8.0, H)]
    assert expected_gain(on_host, 0) < 0
    ws = workloads_of(on_host)
    assert moves(VFManager(enter_saving=0, cost_margin=0).decide(report(ws), view(ws))) == []


def test_cooldown_blocks_then_releases():
    mgr = VFManager(cooldown=50_000)
    mgr.observe(MigrationOutcome(2, OFF, H, issued=500, committed=1_000, downtime=90,
                                 words_sent=300))
    ws = workloads_of(HEAVY)
    decisions = mgr.decide(report(ws), view(ws, now=20_000))
    assert (2, OFF) not in moves(decisions)
    blocked = next(d for d in decisions if d.vf == 2)
    assert blocked.reason.startswith("cooldown: moved at cycle 1000, may move again from "
                                     "cycle 51000")
    later = VFManager(cooldown=50_000)
    later.observe(MigrationOutcome(2, OFF, H, issued=500, committed=1_000, downtime=90,
                                   words_sent=300))
    assert (2, OFF) in moves(later.decide(report(ws), view(ws, now=51_000)))


def test_observe_updates_the_downtime_estimate():
    mgr = VFManager(model=SystemModel(downtime_cycles=100))
    mgr.observe(MigrationOutcome(0, H, OFF, 0, 10, downtime=200, words_sent=300))
    assert mgr.downtime_estimate == pytest.approx(125)


def test_no_free_offload_slot():
    # the offload device is full of VFs that moved recently (cooldown): no swap either
    vfs = HEAVY + [(0.0, 1.0, OFF)] * 4
    ws = workloads_of(vfs)
    mgr = VFManager()
    for vf in range(3, 7):
        mgr.observe(MigrationOutcome(vf, H, OFF, 0, 10_000, 90, 300))
    decisions = mgr.decide(report(ws), view(ws, now=20_000))
    assert moves(decisions) == []
    reasons = [d.reason for d in decisions if d.vf in (0, 1, 2)]
    swap = [r for r in reasons if r.startswith("no swap")]
    assert swap == ["no swap, every offloaded VF moved within the cooldown; offload full, "
                    "vf 2 waits with a gain of 1.316 latency-cyc/cyc"]
    assert len(reasons) > 1 and all(r.startswith("no free offload slot: all 4 in use or "
                                                 "reserved") for r in reasons if r not in swap)


def test_swap_sends_an_idle_resident_back():
    vfs = HEAVY + [(0.0, 1.0, OFF)] * 3 + [(0.0001, 1.0, OFF)]
    ws = workloads_of(vfs)
    decisions = VFManager().decide(report(ws), view(ws, now=500_000))
    migrating = [d for d in decisions if d.migrate]
    assert len(migrating) == 1
    swap = migrating[0]
    assert swap.vf in (3, 4, 5) and swap.target == H  # an idle one, not the busy VF 6
    assert swap.reason.startswith("swap: offload full; vf 2 (waiting)")


def test_one_heavy_resident_does_not_block_the_swap_of_an_idle_one():
    # Offload full: VF 3 idle, VFs 4-6 busy (VF 6 moving large transfers, worth a lot there).
    # The idle one goes back for the waiting VF 0 however much VF 6 is worth (a swap margin
    # against the residents' mean value let VF 6 block every exchange).
    vfs = HEAVY + [(0.0001, 1.0, OFF), (0.01, 1.0, OFF), (0.01, 1.0, OFF), (0.01, 48.0, OFF)]
    ws = workloads_of(vfs)
    decisions = VFManager().decide(report(ws, host_busy=0.8), view(ws, now=500_000))
    migrating = [d for d in decisions if d.migrate]
    assert [(d.vf, d.target) for d in migrating] == [(3, H)], [d.reason for d in decisions]
    assert migrating[0].reason.startswith("swap: offload full; vf 0 (waiting)")


def test_reserved_slots_count_as_used():
    vfs = HEAVY + [(0.0, 1.0, H)] * 4
    ws = workloads_of(vfs)
    pending = {vf: OFF for vf in range(3, 7)}  # four migrations toward the offload in flight
    decisions = VFManager().decide(report(ws), view(ws, migrating=pending))
    assert moves(decisions) == []
    assert all(d.vf not in pending for d in decisions)


def test_link_budget_and_max_per_window():
    ws = workloads_of(HEAVY)
    decisions = VFManager(link_budget=0.01).decide(report(ws), view(ws))
    assert moves(decisions) == []
    assert decisions[0].reason.startswith("link budget: 200 words of link_budget 0.01 x window "
                                          "left toward offload, the image needs 296")
    # the I/OFF already on the link comes out of the budget
    busy_link = report(ws, link=(0.3, 0.1))
    assert moves(VFManager(link_budget=0.25).decide(busy_link, view(ws))) == []
    decisions = VFManager(max_per_window=1, enter_saving=0).decide(report(ws), view(ws))
    assert moves(decisions) == [(2, OFF)]
    assert any(d.reason.startswith("max_per_window: 1 migrations already issued")
               for d in decisions)


def test_skips_migrating_and_idle_vfs():
    ws = workloads_of(HEAVY) + [wd(3, H)]
    mgr = VFManager(enter_saving=0, cost_margin=1e12)
    decisions = mgr.decide(report(ws), view(ws, migrating={0: OFF}))
    assert decisions and all(d.vf in (1, 2) and not d.migrate for d in decisions)


@pytest.mark.parametrize("kwargs, message", [
    ({"cooldown": -1}, r"VFManager cooldown must be at least 0, not -1"),
    ({"enter_saving": -5}, r"VFManager enter_saving must be at least 0, not -5"),
    ({"link_budget": 1.5}, r"VFManager link_budget must be between 0 and 1, not 1.5"),
    ({"smoothing": 0}, r"VFManager smoothing must be in \(0, 1\], not 0"),
    ({"rho_cap": 1.0}, r"VFManager rho_cap must be in \(0, 1\), not 1.0"),
    ({"max_per_window": 2.5}, r"VFManager max_per_window must be an integer, not 2.5"),
    ({"horizon": 0}, r"VFManager horizon must be at least 1, not 0"),
    ({"model": "fast"}, r"VFManager.model must be a SystemModel, not 'fast'"),
])
def test_vfmanager_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VFManager(**kwargs)


def test_system_model_parameters_and_costs():
    with pytest.raises(ValueError, match=r"SystemModel migration_link_share must be in "
                                         r"\(0, 1\], not 0"):
        SystemModel(migration_link_share=0)
    with pytest.raises(ValueError, match=r"SystemModel link_words_per_cycle must be greater "
                                         r"than 0, not 0"):
        SystemModel(link_words_per_cycle=0)
    m = SystemModel.from_config(SystemConfig())
    assert m.image_words == 281 and m.copy_words() == 281 + 5 * 3
    assert m.copy_cycles(0.0) == 296 and m.copy_cycles(0.9) == pytest.approx(296 / 0.5)
    assert m.service(H, 4) == 15 and m.service(OFF, 1) == 3
    assert m.link_delay(2) == 2 * (4 + 3)


def test_make_policy():
    assert isinstance(make_policy("static_host"), StaticPolicy)
    assert isinstance(make_policy("static"), StaticPolicy)
    assert make_policy("seed", latency_high=50).latency_high == 50
    model = SystemModel(host_latency=20)
    assert make_policy("vfmanager", model, cooldown=5).model is model
    with pytest.raises(ValueError, match=r"unknown policy 'best': choose one of static_host, "
                                         r"seed, vfmanager"):
        make_policy("best")
    with pytest.raises(ValueError, match=r"policy vfmanager has no parameter colldown"):
        make_policy("vfmanager", colldown=5)
    with pytest.raises(ValueError, match=r"policy static_host takes no parameters, got x"):
        make_policy("static_host", x=1)


def test_static_never_migrates():
    ws = workloads_of(HEAVY)
    assert StaticPolicy().decide(report(ws, host_busy=1.0), view(ws)) == []


# ---------------------------------------------------------------- the seed policy
def test_seed_rule1_latency_to_offload():
    ws = [wd(0, H, rate=0.01, mean=150), wd(1, H, rate=0.01, mean=20)]
    decisions = SeedPolicy().decide(report(ws), view(ws))
    assert moves(decisions) == [(0, OFF)]
    assert decisions[0].reason.startswith("seed rule 1: mean latency 150 > latency_high 100 "
                                          "cycles and 4 free offload slots > min_required 0")


def test_seed_rule1_already_on_offload_is_a_no_op():
    ws = [wd(0, OFF, rate=0.01, mean=150)]
    decisions = SeedPolicy().decide(report(ws), view(ws))
    assert moves(decisions) == [] and "already on offload, nothing to do" in decisions[0].reason


def test_seed_rule2_throughput_to_host_when_offload_full():
    ws = [wd(vf, OFF, rate=0.001, words=128, mean=300) for vf in range(4)]
    decisions = SeedPolicy().decide(report(ws), view(ws))
    # offload full: rule 1 cannot fire, rule 2 sends every high-throughput VF home
    assert moves(decisions) == [(vf, H) for vf in range(4)]
    assert decisions[0].reason.startswith("seed rule 2: throughput 0.512 > throughput_high")


def test_seed_rule3_offloads_active_host_vfs_in_vf_order():
    ws = [wd(0, H, rate=0.001, mean=20), wd(1, H), wd(2, H, rate=0.001, mean=20),
          wd(3, H, rate=0.001, mean=20), wd(4, OFF, rate=0.001, mean=20),
          wd(5, OFF, rate=0.001, mean=20)]
    decisions = SeedPolicy().decide(report(ws, host_busy=0.9), view(ws))
    assert moves(decisions) == [(0, OFF), (2, OFF)]  # 2 free slots; VF 1 is idle
    assert all(d.reason.startswith("seed rule 3 (from vf 0): host busy 0.90 > cpu_high 0.8")
               for d in decisions)
    assert moves(SeedPolicy().decide(report(ws, host_busy=0.8), view(ws))) == []


def test_seed_thrashes_a_throughput_vf():
    """Its quirk, kept: a large-transfer VF has a high latency (rule 1 -> offload); on a full
    offload device rule 2 sends it back, and the freed slot invites rule 1 again."""
    seed = SeedPolicy()
    ws = [wd(0, H, rate=0.001, words=128, mean=300)] + [wd(v, OFF, rate=0.001, mean=10)
                                                        for v in (1, 2, 3)]
    assert moves(seed.decide(report(ws), view(ws))) == [(0, OFF)]
    ws[0] = wd(0, OFF, rate=0.001, words=128, mean=300)
    assert moves(seed.decide(report(ws), view(ws))) == [(0, H)]


def test_seed_min_required_is_strict_and_params_checked():
    ws = [wd(0, H, rate=0.01, mean=150)] + [wd(v, OFF) for v in (1, 2, 3)]
    assert moves(SeedPolicy(min_required=1).decide(report(ws), view(ws))) == []
    assert moves(SeedPolicy(min_required=0).decide(report(ws), view(ws))) == [(0, OFF)]
    with pytest.raises(ValueError, match=r"SeedPolicy cpu_high must be between 0 and 1, "
                                         r"not 2"):
        SeedPolicy(cpu_high=2)
    with pytest.raises(ValueError, match=r"SeedPolicy min_required must be at least 0"):
        SeedPolicy(min_required=-1)
