"""Policy benchmark in the fast simulator: static_host vs. seed vs. vfmanager.

    python -m tb.bench.policy [--vfs 256] [--cycles 6000000] [--seed 1] [--window 20000]
                              [--offload-slots N] [--trace FILE] [--timing-vfs 1024]
                              [--timing-requests 1000000] [--no-timing] [--out build/bench]

Runs the phase-changing mixed workload (``model.workload.phase_mix``; or a trace file) in
``model.fastsim`` once per policy and writes ``build/bench/policy.json``::

    {"fastsim": {"static_host": {"mean_latency", "p99_latency", "throughput", "migrations",
                                 "thrash"}, "seed": {...}, "vfmanager": {...}},
     "fastsim_run": {configuration, workload, per-policy details and placements timeline},
     "fastsim_timing": {"n_vfs", "requests", "wall_seconds", ...}}

(latencies in cycles, throughput in payload bytes per cycle; other top-level keys already in
the file, such as "rtl", are kept), every migration with its reason in
``policy-moves.json``, and a plot ``policy.png`` when matplotlib is installed, else a
hand-written ``policy.svg``. The timing run simulates ``--timing-vfs`` VFs and at least
``--timing-requests`` requests under vfmanager and reports the wall time.

Exit status: 0 when the issue's targets hold (vfmanager: lower p99 than seed and
static_host, fewer migrations than seed, no thrash; the timing run under 60 s), 1 when one
is missed, 2 on bad arguments or a bad trace.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from model.fastsim import FastSimConfig, SimResult, run
from model.manager import POLICIES, make_policy
from model.workload import Source, TraceError, load_trace, phase_mix
from tb.bench.cli import usage_error
from tb.common.runner import BUILD

TIMING_LIMIT_S = 60.0


def run_policies(config: FastSimConfig, source: Source,
                 policies=POLICIES) -> dict[str, SimResult]:
    results = {}
    for name in policies:
        policy = (make_policy(name, config.system_model()) if name == "vfmanager"
                  else make_policy(name))
        results[name] = run(config, source, policy)
    return results


def timing_run(n_vfs: int, requests: int, seed: int, window: int) -> dict:
    """Simulate at least ``requests`` requests of ``n_vfs`` VFs under vfmanager, timed
    (workload generation included: it runs inside the simulation, request by request)."""
    probe = phase_mix(n_vfs, 1_000_000, seed)
    per_cycle = probe.expected_requests() / probe.duration
    duration = math.ceil(1.05 * requests / per_cycle)
    config = FastSimConfig(n_vfs=n_vfs, offload_slots=max(1, n_vfs // 8), window=window)
    for _ in range(3):
        source = phase_mix(n_vfs, duration, seed)
        t0 = time.perf_counter()
        result = run(config, source, make_policy("vfmanager", config.system_model()))
        wall = time.perf_counter() - t0
        if result.requests >= requests:
            break
        duration = math.ceil(duration * 1.1 * requests / max(result.requests, 1))
    return {"n_vfs": n_vfs, "requests": result.requests, "cycles": result.makespan,
            "windows": result.windows, "policy": "vfmanager",
            "wall_seconds": round(wall, 2),
            "requests_per_second": round(result.requests / wall),
            "limit_seconds": TIMING_LIMIT_S}


def target_failures(summary: dict[str, dict], timing: dict | None) -> list[str]:
    """What misses the policy targets (vfmanager's p99 below seed's and static_host's, fewer
    migrations than seed, no thrash; fastsim's timing run when given): one line each; the
    RTL policy bench (tb/bench/policy_rtl.py) checks the same ones without ``timing``."""
    out = []
    vfm, seed, static = summary["vfmanager"], summary["seed"], summary["static_host"]
    if not vfm["p99_latency"] < seed["p99_latency"]:
        out.append(f"vfmanager p99 {vfm['p99_latency']} is not below seed's "
                   f"{seed['p99_latency']}")
    if not vfm["p99_latency"] < static["p99_latency"]:
        out.append(f"vfmanager p99 {vfm['p99_latency']} is not below static_host's "
                   f"{static['p99_latency']}")
    if not vfm["migrations"] < seed["migrations"]:
        out.append(f"vfmanager made {vfm['migrations']} migrations, seed {seed['migrations']}")
    if vfm["thrash"]:
        out.append(f"vfmanager thrashed {vfm['thrash']} times")
    if timing is not None and timing["wall_seconds"] >= TIMING_LIMIT_S:
        out.append(f"fastsim took {timing['wall_seconds']} s for {timing['requests']} "
                   f"requests of {timing['n_vfs']} VFs (limit {TIMING_LIMIT_S:g} s)")
    return out


def format_table(summary: dict[str, dict], results: dict[str, SimResult]) -> str:
    head = (f"{'policy':<12} {'mean lat':>9} {'p99 lat':>9} {'bytes/cyc':>9} {'migr':>6} "
            f"{'thrash':>6} {'host busy':>9} {'downtime':>8}")
    lines = [head, "-" * len(head)]
    for name, s in summary.items():
        r = results[name]
        lines.append(f"{name:<12} {s['mean_latency']:>9.1f} {s['p99_latency']:>9.0f} "
                     f"{s['throughput']:>9.3f} {s['migrations']:>6} {s['thrash']:>6} "
                     f"{r.host_busy:>9.2f} {r.mean_downtime:>8.0f}")
    return "\n".join(lines)


# ---------------------------------------------------------------- plots
def _svg_text(x: float, y: float, text: str, size: int = 12, anchor: str = "start",
              weight: str = "normal") -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'font-weight="{weight}" font-family="sans-serif">{text}</text>')


COLOURS = {"static_host": "#888888", "seed": "#d62728", "vfmanager": "#1f77b4"}


def _bars(x0: float, y0: float, w: float, h: float, title: str,
          values: dict[str, float], unit: str) -> list[str]:
    out = [_svg_text(x0 + w / 2, y0 - 8, title, 13, "middle", "bold")]
    top = max(values.values(), default=0) or 1
    bw = w / (len(values) * 1.5 + 0.5)
    out.append(f'<line x1="{x0}" y1="{y0 + h}" x2="{x0 + w}" y2="{y0 + h}" stroke="black"/>')
    for i, (name, v) in enumerate(values.items()):
        x = x0 + bw * (0.5 + 1.5 * i)
        bh = h * v / top
        out.append(f'<rect x="{x:.1f}" y="{y0 + h - bh:.1f}" width="{bw:.1f}" '
                   f'height="{bh:.1f}" fill="{COLOURS.get(name, "#2ca02c")}"/>')
        out.append(_svg_text(x + bw / 2, y0 + h - bh - 4, f"{v:g}{unit}", 11, "middle"))
        out.append(_svg_text(x + bw / 2, y0 + h + 14, name, 11, "middle"))
    return out


def _timeline(x0: float, y0: float, w: float, h: float, results: dict[str, SimResult],
              slots: int) -> list[str]:
    out = [_svg_text(x0 + w / 2, y0 - 8, "VFs on the offload device per profiler window",
                     13, "middle", "bold")]
    end = max((r.placements[-1][0] for r in results.values() if r.placements), default=1)
    top = max(slots, 1)
    out.append(f'<rect x="{x0}" y="{y0}" width="{w}" height="{h}" fill="none" '
               f'stroke="black"/>')
    out.append(_svg_text(x0 - 4, y0 + 4, str(top), 10, "end"))
    out.append(_svg_text(x0 - 4, y0 + h, "0", 10, "end"))
    out.append(_svg_text(x0 + w, y0 + h + 14, f"{end:,} cycles", 10, "end"))
    for k, (name, r) in enumerate(results.items()):
        pts = " ".join(f"{x0 + w * c / end:.1f},{y0 + h - h * min(o, top) / top:.1f}"
                       for c, _, o in r.placements)
        out.append(f'<polyline points="{pts}" fill="none" stroke-width="1.5" '
                   f'stroke="{COLOURS.get(name, "#2ca02c")}"/>')
        out.append(_svg_text(x0 + 8 + 110 * k, y0 + h + 30, f"— {name}", 11))
    return out


def write_svg(path: Path, summary: dict[str, dict], results: dict[str, SimResult],
              slots: int, title: str) -> None:
    width, height = 960, 640
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}">', '<rect width="100%" height="100%" '
             'fill="white"/>', _svg_text(width / 2, 24, title, 15, "middle", "bold")]
    parts += _bars(40, 70, 260, 200, "p99 latency (cycles)",
                   {k: v["p99_latency"] for k, v in summary.items()}, "")
    parts += _bars(350, 70, 260, 200, "mean latency (cycles)",
                   {k: v["mean_latency"] for k, v in summary.items()}, "")
    parts += _bars(660, 70, 260, 200, "migrations (thrash)",
                   {k: v["migrations"] for k, v in summary.items()}, "")
    for i, v in enumerate(summary.values()):
        parts.append(_svg_text(660 + 260 / (len(summary) * 1.5 + 0.5) * (1 + 1.5 * i),
                               70 + 200 + 28, f"thrash {v['thrash']}", 10, "middle"))
    parts += _timeline(60, 360, 860, 220, results, slots)
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n")


def policy_figure(plt, summary: dict[str, dict]):
    """A figure with one bar chart per figure of merit (p99, mean latency, migrations) on
    top and a wide axis below for a placements timeline; returns (figure, timeline axis,
    policy names, their colours)."""
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    names = list(summary)
    colours = [COLOURS.get(n, "#2ca02c") for n in names]
    for ax, key, label in zip(axes[0], ("p99_latency", "mean_latency", "migrations"),
                              ("p99 latency (cycles)", "mean latency (cycles)", "migrations"),
                              strict=True):
        ax.bar(names, [summary[n][key] for n in names], color=colours)
        ax.set_title(label)
    gs = axes[1, 0].get_gridspec()
    for ax in axes[1]:
        ax.remove()
    return fig, fig.add_subplot(gs[1, :]), names, colours


def write_plot(out_dir: Path, summary: dict[str, dict], results: dict[str, SimResult],
               slots: int, title: str) -> Path:
    """policy.png with matplotlib if it is installed, else policy.svg written by hand."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        path = out_dir / "policy.svg"
        write_svg(path, summary, results, slots, title)
        return path
    fig, ax, names, colours = policy_figure(plt, summary)
    for n, c in zip(names, colours, strict=True):
        ax.plot([p[0] for p in results[n].placements], [p[2] for p in results[n].placements],
                color=c, label=n)
    ax.set_xlabel("cycle")
    ax.set_ylabel("VFs on offload")
    ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    path = out_dir / "policy.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ---------------------------------------------------------------- main
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tb.bench.policy",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vfs", type=int, default=None,
                   help="VFs (default 256, or the trace's highest VF + 1)")
    p.add_argument("--cycles", type=int, default=6_000_000,
                   help="workload duration in cycles (default %(default)s)")
    p.add_argument("--seed", type=int, default=1, help="workload seed (default %(default)s)")
    p.add_argument("--window", type=int, default=20_000,
                   help="profiler window in cycles (default %(default)s)")
    p.add_argument("--offload-slots", type=int, default=None,
                   help="offload slots (default: VFs / 8)")
    p.add_argument("--trace", default=None, help="replay this trace file instead "
                   "(docs/workload.md); --vfs then defaults to the trace's VF count")
    p.add_argument("--timing-vfs", type=int, default=1024)
    p.add_argument("--timing-requests", type=int, default=1_000_000)
    p.add_argument("--no-timing", action="store_true", help="skip the timing run")
    p.add_argument("--out", default=str(BUILD / "bench"), help="output folder")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        for name in ("vfs", "cycles", "window", "timing_vfs", "timing_requests"):
            if getattr(args, name) is not None and getattr(args, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, not "
                                 f"{getattr(args, name)}")
        if args.trace:
            source = load_trace(args.trace, n_vfs=args.vfs)
            n_vfs = source.n_vfs
            workload = {"name": f"trace {args.trace}", "requests": len(source.records)}
        else:
            n_vfs = args.vfs or 256
            source = phase_mix(n_vfs, args.cycles, args.seed)
            workload = {"name": "phase_mix", "n_vfs": n_vfs, "cycles": args.cycles,
                        "seed": args.seed}
        slots = args.offload_slots if args.offload_slots is not None else max(1, n_vfs // 8)
        config = FastSimConfig(n_vfs=n_vfs, offload_slots=slots, window=args.window)
    except (ValueError, TraceError) as exc:
        return usage_error(exc)

    print(f"vfmig policy bench (fastsim): {n_vfs} VFs, {slots} offload slots, "
          f"{workload['name']}, window {args.window} cycles", flush=True)
    t0 = time.perf_counter()
    results = run_policies(config, source)
    summary = {name: r.summary() for name, r in results.items()}
    print(format_table(summary, results))
    print(f"  ({time.perf_counter() - t0:.1f} s, {results['static_host'].requests} requests "
          f"per policy)", flush=True)

    timing = None
    if not args.no_timing:
        print(f"timing: {args.timing_vfs} VFs, >= {args.timing_requests} requests ...",
              flush=True)
        timing = timing_run(args.timing_vfs, args.timing_requests, args.seed, args.window)
        print(f"  {timing['requests']} requests of {timing['n_vfs']} VFs in "
              f"{timing['wall_seconds']} s ({timing['requests_per_second']} requests/s, "
              f"limit {TIMING_LIMIT_S:g} s)", flush=True)

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "policy.json"
    try:
        doc = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        doc = {}
    doc["fastsim"] = summary
    doc["fastsim_run"] = {
        "workload": workload, "config": {k: v for k, v in vars(config).items()
                                         if k != "layout"} | {
            "image_words": config.layout.image_words},
        "policies": {name: r.to_dict(timeline=False) | {
            "offload_timeline": [[c, o] for c, _, o in r.placements]}
            for name, r in results.items()}}
    if timing is not None:
        doc["fastsim_timing"] = timing
    path.write_text(json.dumps(doc, indent=2) + "\n")
    (out_dir / "policy-moves.json").write_text(json.dumps(
        {name: [m.to_dict() for m in r.moves] for name, r in results.items()}, indent=1) + "\n")
    title = f"fastsim, {n_vfs} VFs, {slots} offload slots: {workload['name']}"
    plot = write_plot(out_dir, summary, results, slots, title)
    print(f"wrote {path}, {out_dir / 'policy-moves.json'}, {plot}")

    failures = target_failures(summary, timing)
    for f in failures:
        print(f"TARGET MISSED: {f}")
    if not failures:
        print("targets met: vfmanager beats seed and static_host on p99, fewer migrations "
              "than seed, no thrash" + (", timing under 60 s" if timing else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
