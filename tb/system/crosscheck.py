"""RTL vs. fastsim on one short trace (issue 5 item 6): same decisions, close latencies.

``crosscheck_trace`` writes a short trace of single-word requests (``crosscheck_workload``,
each multi-word transfer split into one request per word at consecutive cycles, so that the
RTL and the fast model see exactly the same requests); ``run_fastsim`` runs it in
``model.fastsim`` with the RTL configuration; ``compare`` matches the two runs.

What must agree, and the tolerance (tb/system/test_system.py checks it):

- **decisions**: the same migrations, in the same order: (vf, source, target) of every
  migration the policy asked for. The window in which a decision falls may differ by one
  (``WINDOW_SLACK``): the RTL closes a window when the VMM's snapshot write lands, a few
  cycles after the boundary, and its migrations take longer (VMM polling over AXI), so a
  request near a boundary can count in the neighbouring window.
- **latency**: mean and p99 request latency within ``LATENCY_TOLERANCE`` (relative). The
  fast model is a queue per device with the RTL's service times (``host_latency + 1``
  cycles per single-word request, as the VF unit takes one request per ``latency + 1``
  cycles); it does not model the router's per-VF ordering, the request-stream
  arbitration or the migration's exact hold window.
"""

from __future__ import annotations

from pathlib import Path

from model.config import SystemConfig
from model.fastsim import FastSimConfig, SimResult, run
from model.manager import make_policy
from model.workload import (
    Idle,
    LatencySensitive,
    PhaseChanging,
    Request,
    ThroughputHeavy,
    TraceWorkload,
    Workload,
    load_trace,
    write_trace,
)

from .closed_loop import rtl_vfmanager_params

LATENCY_TOLERANCE = 0.25
WINDOW_SLACK = 1


def crosscheck_workload(config: SystemConfig, duration: int, seed: int) -> Workload:
    """Four VFs with clear cases: VF 0 latency-sensitive from the start, VF 1 a throughput
    VF that keeps the host busy, VF 2 idle then latency-sensitive from the middle, VF 3
    idle. A policy's decisions then do not hinge on a measurement at its threshold."""
    if config.n_vfs != 4:
        raise ValueError(f"the cross-check workload has 4 VFs, not {config.n_vfs}")
    half = duration // 2
    return Workload((LatencySensitive(mean_gap=150.0),
                     ThroughputHeavy(mean_gap=700.0, min_words=24, max_words=40),
                     PhaseChanging(((half, Idle(mean_gap=20_000.0)),
                                    (half, LatencySensitive(mean_gap=150.0)))),
                     Idle(mean_gap=20_000.0)), duration, seed, config.layout)


def crosscheck_trace(path: Path, config: SystemConfig, duration: int, seed: int) -> int:
    """Write the cross-check trace; returns the number of requests."""
    mix = crosscheck_workload(config, duration, seed)
    single = []
    for r in mix.requests():
        for i in range(r.words):
            single.append(Request(r.cycle + i, r.vf, r.op, r.addr + i if r.words > 1 else r.addr,
                                  1, r.data))
    single.sort(key=lambda r: (r.cycle, r.vf))
    return write_trace(path, single)


def fastsim_config(config: SystemConfig, window: int) -> FastSimConfig:
    """The fast model of the RTL system: a single-word request keeps a VF unit busy
    ``latency + 1`` cycles."""
    return FastSimConfig.from_system(config, host_latency=config.host_latency + 1,
                                     offload_latency=config.offload_latency + 1,
                                     window=window, thrash_window=6 * window)


def run_fastsim(trace: Path, config: SystemConfig, window: int, policy: str = "vfmanager",
                params: dict | None = None) -> SimResult:
    fast = fastsim_config(config, window)
    source = TraceWorkload(tuple(load_trace(trace, n_vfs=config.n_vfs,
                                            layout=config.layout).records), config.n_vfs)
    params = ({**rtl_vfmanager_params(window), **(params or {})} if policy == "vfmanager"
              else {})
    model = FastSimConfig.from_system(config).system_model() if policy == "vfmanager" else None
    return run(fast, source, make_policy(policy, model, **params) if model
               else make_policy(policy, **params))


def compare(rtl_report: dict, fast: SimResult, window: int) -> list[str]:
    """Differences beyond the stated tolerances (empty: the runs agree)."""
    problems = []
    rtl_moves = [(d["vf"], d["from"], d["to"], d["issued"] // window)
                 for d in rtl_report["decisions"] if d["result"] == "committed"]
    fast_moves = [(m.vf, m.source.label, m.target.label, m.issued // window) for m in fast.moves]
    if [m[:3] for m in rtl_moves] != [m[:3] for m in fast_moves]:
        problems.append(f"decisions differ: RTL {rtl_moves}, fastsim {fast_moves}")
    else:
        for r, f in zip(rtl_moves, fast_moves, strict=True):
            if abs(r[3] - f[3]) > WINDOW_SLACK:
                problems.append(f"VF {r[0]} {r[1]}->{r[2]}: decided in window {r[3]} in RTL, "
                                f"{f[3]} in fastsim")
    policy = rtl_report["policy"]
    for key, rtl_value, fast_value in (("mean_latency", policy["mean_latency"], fast.mean_latency),
                                       ("p99_latency", policy["p99_latency"], fast.p99_latency)):
        if abs(rtl_value - fast_value) > LATENCY_TOLERANCE * max(rtl_value, fast_value):
            problems.append(f"{key}: RTL {rtl_value}, fastsim {fast_value:.1f} (more than "
                            f"{LATENCY_TOLERANCE:.0%} apart)")
    return problems
