"""Policy benchmark in RTL: static_host vs. seed vs. vfmanager in the closed loop.

    python -m tb.bench.policy_rtl [--sim verilator] [--seed 1] [--vfs 8] [--duration 150000]
                                  [--window 5000] [--out build/bench]

Runs ``make sim``'s closed loop (tb/system/closed_loop.py: the phase-changing workload, the
hardware profiler read over AXI4-Lite every window, migrations through the VFIO procedure)
once per policy on the same workload, and writes the ``"rtl"`` section of
``build/bench/policy.json`` (other keys, such as ``"fastsim"``, are kept)::

    {"rtl": {"static_host": {"mean_latency", "p99_latency", "throughput", "migrations",
                             "thrash"}, "seed": {...}, "vfmanager": {...}},
     "rtl_run": {configuration, per-policy decisions with reasons and placements}}

(latencies in cycles from each request's arrival to its response; throughput in payload
bytes per cycle), and the plot ``policy_rtl.png``. Every run must also pass the system's own
checks (0 mismatches, nothing lost, interrupts exactly once).

Exit status: 0 when vfmanager has a lower p99 latency than seed and static_host, fewer
migrations than seed and no thrash; 1 when a target is missed or a run fails; 2 on bad
arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tb.bench.policy import policy_figure, target_failures
from tb.common.runner import BUILD, SimulatorError, check_simulator, default_simulator
from tb.system.env import Knobs
from tb.system.sim import make_config, run_system

POLICIES = {"static_host": "static", "seed": "seed", "vfmanager": "vfmanager"}


def write_plot(path: Path, summary: dict[str, dict], runs: dict[str, dict], title: str,
               end: int) -> Path:
    """Each policy's VFs-on-offload over the run, drawn to ``end`` (the workload's last
    cycle), beside the summary bars."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax, names, colours = policy_figure(plt, summary)
    for name, colour in zip(names, colours, strict=True):
        on_offload, xs, ys = set(), [0], [0]
        for p in sorted(runs[name]["placements"], key=lambda p: p["cycle"]):
            if p["device"] == "offload":
                on_offload.add(p["vf"])
            else:
                on_offload.discard(p["vf"])
            xs.append(p["cycle"])
            ys.append(len(on_offload))
        xs.append(max(end, xs[-1]))
        ys.append(ys[-1])
        ax.step(xs, ys, where="post", color=colour, label=name)
    ax.set_xlabel("cycle")
    ax.set_ylabel("VFs on offload")
    ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tb.bench.policy_rtl",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--sim", default=default_simulator())
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--vfs", type=int, default=8)
    parser.add_argument("--duration", type=int, default=Knobs.duration)
    parser.add_argument("--window", type=int, default=Knobs.window)
    parser.add_argument("--out", default=str(BUILD / "bench"))
    args = parser.parse_args(argv)
    try:
        sim = check_simulator(args.sim)
        config = make_config(args.vfs)
        if not 0 < args.window <= args.duration:
            raise ValueError(f"--window must be in (0, --duration], not {args.window}")
    except (SimulatorError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    summary, runs, problems = {}, {}, []
    for name, policy in POLICIES.items():
        report_path = out / f"policy_rtl_{name}.json"
        report_path.unlink(missing_ok=True)
        knobs = Knobs(seed=args.seed, policy=policy, duration=args.duration,
                      window=args.window, report=str(report_path), workload="phase-mix")
        start = time.monotonic()
        try:
            run_system(sim, config, knobs)
        except SystemExit:
            pass   # the report says what failed
        if not report_path.exists():
            problems.append(f"{name}: no report (see build/sim_build/*/runs/ClosedLoopScenario)")
            continue
        report = json.loads(report_path.read_text())
        if not report["passed"]:
            problems.append(f"{name}: the run failed its checks: {report['problems'][:3]}")
        p = report["policy"]
        summary[name] = {k: p[k] for k in ("mean_latency", "p99_latency", "throughput",
                                           "migrations", "thrash")}
        runs[name] = {"decisions": report["decisions"], "placements": report["placements"],
                      "requests": p["requests"], "windows": p["windows"],
                      "held_back": p["held_back"], "cycles": report["cycles"],
                      "wall_seconds": round(time.monotonic() - start, 1)}
        print(f"{name:>12}: mean {p['mean_latency']:>8} p99 {p['p99_latency']:>7} cycles, "
              f"throughput {p['throughput']} B/cycle, {p['migrations']} migrations, "
              f"{p['thrash']} thrash ({runs[name]['wall_seconds']} s)", flush=True)
    if problems:
        for text in problems:
            print(f"error: {text}", file=sys.stderr)
        return 1
    policy_json = out / "policy.json"
    data = json.loads(policy_json.read_text()) if policy_json.exists() else {}
    data["rtl"] = summary
    data["rtl_run"] = {"sim": sim, "seed": args.seed, "config": config.to_dict(),
                       "duration": args.duration, "window": args.window,
                       "workload": "phase_mix (tb/system/closed_loop.make_source)",
                       "policies": runs}
    policy_json.write_text(json.dumps(data, indent=2) + "\n")
    plot = write_plot(out / "policy_rtl.png", summary, runs,
                      f"RTL closed loop: {args.vfs} VFs, phase-changing workload, "
                      f"{args.duration:,} cycles", args.duration)
    print(f"wrote {policy_json} (\"rtl\") and {plot}")
    failures = target_failures(summary, None)   # the same targets as fastsim's, no timing
    for text in failures:
        print(f"target missed: {text}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
