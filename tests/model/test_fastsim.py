"""The transaction-level simulator (model/fastsim.py) and the policy bench (tb/bench/policy.py)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from model.config import Device, SystemConfig
from model.fastsim import FastSimConfig, run
from model.manager import Decision, Policy, StaticPolicy, make_policy
from model.state import ImageLayout, Op
from model.workload import Request, TraceWorkload, phase_mix

H, OFF = Device.HOST, Device.OFFLOAD
W = 1000  # a short profiler window keeps the hand-made traces small
LAYOUT = ImageLayout()
META = LAYOUT.meta_words  # CSR + MSI-X + PBA words, re-sent at stop-copy


def trace(*reqs, n_vfs=2):
    return TraceWorkload(tuple(Request(*r) for r in reqs), n_vfs)


def config(n_vfs=2, **kw):
    kw.setdefault("window", W)
    kw.setdefault("offload_slots", 2)
    return FastSimConfig(n_vfs=n_vfs, **kw)


class Scripted(Policy):
    """Asks for the migrations listed per window index (1 = the first window closed); keeps
    every report it was given."""
    name = "scripted"

    def __init__(self, plan: dict[int, list[tuple[int, Device]]]):
        self.plan, self.reports, self.outcomes, self.k = plan, [], [], 0

    def decide(self, report, view):
        self.k += 1
        self.reports.append(report)
        return [Decision(vf, view.location[vf], target, True, f"scripted {self.k}")
                for vf, target in self.plan.get(self.k, [])]

    def observe(self, outcome):
        self.outcomes.append(outcome)


class Toggler(Scripted):
    """Moves two VFs to the other device every window, so requests are held and released
    all the time."""

    def __init__(self):
        super().__init__({})

    def decide(self, report, view):
        super().decide(report, view)
        out = []
        for vf in {(self.k * 5) % 16, (self.k * 3) % 16}:
            if vf not in view.migrating:
                here = view.location[vf]
                out.append(Decision(vf, here, OFF if here == H else H, True, "toggle"))
        return out


# ---------------------------------------------------------------- latency arithmetic
def test_host_latency_and_queueing():
    src = trace((10, 0, Op.READ, 40, 1), (500, 1, Op.WRITE, 40, 4), (500, 0, Op.READ, 40, 1))
    r = run(config(), src, StaticPolicy(), record_completions=True)
    lat = sorted(fin - t0 for _, t0, _, fin in r.completions)
    # 12 cycles per request, +1 per further word; the second at cycle 500 waits for the first
    assert lat == [12, 15, 15 + 12]
    assert r.requests == r.issued == 3 and r.max_latency == 27
    assert r.mean_latency == pytest.approx((12 + 15 + 27) / 3)
    assert r.throughput == pytest.approx(4 * 6 / (500 + 27))
    assert r.migrations == 0 and r.placements[0] == (W, 2, 0)


def test_migration_timing_hold_and_offload_path():
    # VF 0 goes to the offload device at the end of window 1 (cycle 1000): MIG_BEGIN (40),
    # the 281-word image in 5 chunks (+3 words each) at 1 word/cycle, nothing dirty, then the
    # hold: CSR/MSI-X/PBA words + a STATE_DATA header + ROUND_END/SWITCHOVER words, then the
    # commit handshake (50).
    start = W
    held = start + 40 + 281 + 5 * 3
    commit = held + META + 3 + 4 + 50
    src = trace((0, 0, Op.READ, 40, 1), (held + 10, 0, Op.READ, 40, 1),
                (20 * W, 0, Op.READ, 40, 1))
    policy = Scripted({1: [(0, OFF)]})
    r = run(config(), src, policy, record_completions=True)
    assert r.migrations == 1 and r.thrash == 0
    m = r.moves[0]
    assert (m.vf, m.source, m.target, m.issued, m.started) == (0, H, OFF, start, start)
    assert (m.held, m.committed, m.downtime, m.rounds) == (held, commit, commit - held, 0)
    assert m.words_sent == LAYOUT.image_words + META and m.reason == "scripted 1"
    assert policy.outcomes[0].downtime == commit - held
    # offload path of a 1-word READ: 2 header words down, 4 link latency, 3 service,
    # 2 header words + 1 data word up, 4 link latency
    offload = 2 + 4 + 3 + 3 + 4
    lat = {t0: fin - t0 for _, t0, _, fin in r.completions}
    assert lat[0] == 12
    assert lat[held + 10] == commit - (held + 10) + offload  # held, released at commit
    assert lat[20 * W] == offload
    assert r.placements[-1][1:] == (1, 1)


def test_dirty_blocks_cause_another_round():
    blocks = [LAYOUT.block_of(a) for a in (40, 80, 120, 160)]
    assert len(set(blocks)) == 4
    writes = [(W + 100 + i, 0, Op.WRITE, a, 1) for i, a in enumerate((40, 80, 120, 160))]
    r = run(config(), trace(*writes), Scripted({1: [(0, OFF)]}))
    m = r.moves[0]
    round0 = W + 40 + 296
    round1 = 4 * (LAYOUT.block_words + 3) + 4  # the 4 dirty blocks, then ROUND_END
    assert m.rounds == 1 and m.held == round0 + round1
    assert m.words_sent == LAYOUT.image_words + 4 * LAYOUT.block_words + META


def test_engine_runs_one_migration_at_a_time_per_direction():
    src = trace((0, 0, Op.READ, 40, 1), n_vfs=3)
    r = run(config(3, offload_slots=3), src, Scripted({1: [(0, OFF), (1, OFF), (2, OFF)]}))
    ms = sorted(r.moves, key=lambda m: m.started)
    assert [m.vf for m in ms] == [0, 1, 2] and all(m.issued == W for m in ms)
    assert ms[1].started == ms[0].committed and ms[2].started == ms[1].committed


def test_offload_slots_are_never_exceeded():
    src = phase_mix(8, 60_000, seed=3)
    everything = {k: [(vf, OFF) for vf in range(8)] for k in range(1, 60)}
    r = run(config(8, offload_slots=2), src, Scripted(everything))
    assert max(o for _, _, o in r.placements) <= 2
    assert r.refused > 0 and r.migrations == 2


def test_thrash_counts_a_quick_return():
    src = trace((0, 0, Op.READ, 40, 1), (30 * W, 0, Op.READ, 40, 1))
    plan = {1: [(0, OFF)], 3: [(0, H)]}
    assert run(config(thrash_window=100_000), src, Scripted(plan)).thrash == 1
    assert run(config(thrash_window=1000), src, Scripted(plan)).thrash == 0
    r = run(config(thrash_window=100_000), src, Scripted(plan))
    assert [m.thrash for m in r.moves] == [False, True]


# ---------------------------------------------------------------- conservation, windows
def test_every_request_completes_once_under_migrations():
    src = phase_mix(16, 200_000, seed=5)
    policy = Toggler()
    r = run(config(16, offload_slots=4, window=2000), src, policy, record_completions=True)
    sent = Counter((q.vf, q.cycle, q.addr) for q in src.requests())
    done = Counter((vf, t0, addr) for vf, t0, addr, _ in r.completions)
    assert done == sent and r.requests == r.issued == sum(sent.values())
    assert all(fin > t0 for _, t0, _, fin in r.completions)
    assert r.migrations > 20
    # the profiler windows saw every request exactly once
    assert sum(w.requests for rep in policy.reports for w in rep.workloads) == r.requests


def test_profiler_windows_count_busy_cycles():
    src = phase_mix(16, 200_000, seed=6)
    policy = Scripted({})
    r = run(config(16, window=5000), src, policy)
    service = sum(12 + q.words - 1 for q in src.requests())
    busy = sum(rep.contention.host_busy * rep.contention.window for rep in policy.reports)
    assert busy == pytest.approx(service)
    # the profiler's per-VF utilisation adds up to the same
    util = sum(w.utilisation * rep.contention.window for rep in policy.reports
               for w in rep.workloads)
    assert util == pytest.approx(service)
    assert r.host_busy == pytest.approx(service / (5000 * r.windows))


def test_deterministic():
    cfg = config(32, offload_slots=4, window=10_000)
    a = run(cfg, phase_mix(32, 400_000, seed=2), make_policy("vfmanager", cfg.system_model()))
    b = run(cfg, phase_mix(32, 400_000, seed=2), make_policy("vfmanager", cfg.system_model()))
    assert a.summary() == b.summary()
    assert [m.to_dict() for m in a.moves] == [m.to_dict() for m in b.moves]


def test_policies_end_to_end():
    cfg = config(64, offload_slots=8, window=20_000, thrash_window=100_000)
    src = phase_mix(64, 1_000_000, seed=1)
    results = {name: run(cfg, src, make_policy(name, cfg.system_model())
                         if name == "vfmanager" else make_policy(name))
               for name in ("static_host", "seed", "vfmanager")}
    n = results["static_host"].requests
    assert all(r.requests == r.issued == n for r in results.values())
    assert results["static_host"].migrations == 0
    vfm = results["vfmanager"]
    assert vfm.thrash == 0 and vfm.migrations > 0
    assert vfm.p99_latency < results["static_host"].p99_latency
    assert all(m.reason for m in vfm.moves)
    summary = vfm.summary()
    assert set(summary) == {"mean_latency", "p99_latency", "throughput", "migrations", "thrash"}


# ---------------------------------------------------------------- configuration
@pytest.mark.parametrize("kwargs, message", [
    ({"window": 0}, r"FastSimConfig window must be at least 1, not 0"),
    ({"n_vfs": 4, "host_slots": 2}, r"FastSimConfig host_slots must be at least 4, not 2"),
    ({"migration_link_share": 1}, r"FastSimConfig migration_link_share must be in "
                                  r"\(0, 1\), not 1"),
    ({"hist_bins": 1}, r"FastSimConfig hist_bins must be between 2 and 64, not 1"),
])
def test_bad_config(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FastSimConfig(**kwargs)


def test_config_from_system_and_mismatch():
    sc = SystemConfig(n_vfs=8, host_slots=8, offload_slots=4, host_latency=20)
    cfg = FastSimConfig.from_system(sc, window=5000)
    assert (cfg.n_vfs, cfg.host_slots, cfg.offload_slots, cfg.host_latency, cfg.window) == \
        (8, 8, 4, 20, 5000)
    model = cfg.system_model()
    assert model.host_latency == 20 and model.image_words == sc.layout.image_words
    with pytest.raises(ValueError, match=r"the workload has 2 VFs, the configuration 8"):
        run(cfg, trace((0, 0, Op.READ, 40, 1)), StaticPolicy())


# ---------------------------------------------------------------- the bench script
def test_bench_policy_writes_policy_json(tmp_path, capsys):
    from tb.bench import policy as bench_policy

    (tmp_path / "policy.json").write_text(json.dumps({"rtl": {"kept": True}}))
    code = bench_policy.main(["--vfs", "64", "--cycles", "300000", "--no-timing",
                              "--out", str(tmp_path)])
    assert code in (0, 1)
    doc = json.loads((tmp_path / "policy.json").read_text())
    assert doc["rtl"] == {"kept": True}
    assert set(doc["fastsim"]) == {"static_host", "seed", "vfmanager"}
    for entry in doc["fastsim"].values():
        assert set(entry) == {"mean_latency", "p99_latency", "throughput", "migrations",
                              "thrash"}
    assert (tmp_path / "policy.svg").exists() or (tmp_path / "policy.png").exists()
    moves = json.loads((tmp_path / "policy-moves.json").read_text())
    assert all("reason" in m for m in moves["vfmanager"])
    assert "p99 lat" in capsys.readouterr().out
    assert bench_policy.main(["--vfs", "0", "--no-timing", "--out", str(tmp_path)]) == 2
    bad = tmp_path / "bad.csv"
    bad.write_text("0,0,READ,8\n")
    assert bench_policy.main(["--trace", str(bad), "--no-timing", "--out", str(tmp_path)]) == 2
    assert "bad.csv:1: expected 5 or 6 fields" in capsys.readouterr().err
