"""``build/sim/timeline.png``: what a closed-loop run did, as a picture.

    python -m tb.system.timeline [build/sim/report.json] [--out build/sim/timeline.png]

Three panels on one cycle axis, from the report of ``make sim`` (``tb.system.sim``):

- one row per VF, coloured by where it ran (host or offload device); each committed
  migration is a marker at its commit cycle labelled with its downtime in cycles, each
  aborted one a cross at the cycle it was decided;
- per profiler window, the p99 request latency of each device (the testbench's measure,
  by the device that served the response);
- per window, the link utilisation (the busier direction) and each device's busy fraction
  (the hardware profiler's counters).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from model.config import Device

COLOURS = {"host": "tab:blue", "offload": "tab:orange"}


def placement_segments(report: dict, end: int) -> dict[int, list[tuple[int, int, str]]]:
    """Per VF, its (start, length, device) stretches from the report's ``placements``."""
    by_vf: dict[int, list[dict]] = {}
    for p in sorted(report["placements"], key=lambda p: p["cycle"]):
        by_vf.setdefault(p["vf"], []).append(p)
    segments = {}
    for vf, moves in by_vf.items():
        cuts = [m["cycle"] for m in moves[1:]] + [max(end, moves[-1]["cycle"])]
        segments[vf] = [(m["cycle"], cut - m["cycle"], m["device"])
                        for m, cut in zip(moves, cuts, strict=True)]
    return segments


def run_end(report: dict) -> int:
    """The last cycle the picture shows: the last window's end (or the last placement)."""
    ends = [w["end"] for w in report.get("windows", [])]
    ends += [p["cycle"] for p in report["placements"]]
    return max(ends, default=1)


def draw(report: dict, path: Path) -> Path:
    """Write the picture of ``report`` (a closed-loop report) to ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    if "placements" not in report:
        raise ValueError("the report has no placements: only a closed-loop run (make sim "
                         "without --policy plan) has a timeline")
    end, windows = run_end(report), report.get("windows", [])
    n_vfs = 1 + max(p["vf"] for p in report["placements"])
    fig, (rows, lat, link) = plt.subplots(
        3, 1, sharex=True, figsize=(12, 3 + 0.45 * n_vfs),
        gridspec_kw={"height_ratios": [max(2, n_vfs * 0.45), 1.2, 1]})
    _placements(rows, report, end, n_vfs)
    window = report.get("policy", {}).get("window", 0)
    # each window's value drawn across the window, the last one to its end
    xs = [w["end"] - window for w in windows] + [w["end"] for w in windows[-1:]]

    def per_window(key):
        values = [w[key] for w in windows]
        return values + values[-1:]

    for device in Device:
        lat.step(xs, per_window(f"{device.label}_p99"), where="post",
                 color=COLOURS[device.label], label=f"{device.label} p99")
        link.step(xs, per_window(f"{device.label}_busy"), where="post",
                  color=COLOURS[device.label], alpha=0.5, label=f"{device.label} busy")
    link.step(xs, per_window("link_utilisation"), where="post", color="black",
              label="link utilisation")
    lat.set_ylabel("p99 latency\n(cycles)")
    lat.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    link.set_ylabel("fraction")
    link.set_ylim(0, 1.05)
    link.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    link.set_xlabel("cycle")
    link.set_xlim(0, end)
    marks = [Line2D([], [], color="k", marker="v", linestyle="", label="commit (downtime)"),
             Line2D([], [], color="r", marker="x", linestyle="", label="aborted")]
    rows.legend(handles=[Patch(color=c, label=d) for d, c in COLOURS.items()] + marks,
                loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    policy = report.get("policy", {})
    fig.suptitle(f"vfmig closed loop: policy {policy.get('name', '?')}, {n_vfs} VFs, "
                 f"{len(report.get('decisions', []))} migrations decided")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _placements(ax, report: dict, end: int, n_vfs: int) -> None:
    for vf, segments in placement_segments(report, end).items():
        ax.broken_barh([(s, n) for s, n, _ in segments], (vf - 0.4, 0.8),
                       facecolors=[COLOURS[d] for _, _, d in segments])
    for d in report.get("decisions", []):
        if d["result"] == "committed":
            ax.plot(d["committed"], d["vf"], "kv", markersize=6)
            ax.annotate(f"{d['downtime_cycles']}", (d["committed"], d["vf"]),
                        xytext=(4, 0), textcoords="offset points", fontsize=7,
                        ha="left", va="center", color="white", fontweight="bold")
        else:
            ax.plot(d["issued"], d["vf"], "rx", markersize=6)
    ax.set_yticks(range(n_vfs))
    ax.set_yticklabels([f"VF {v}" for v in range(n_vfs)])
    ax.invert_yaxis()
    ax.set_ylabel("placement")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tb.system.timeline",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("report", nargs="?", default="build/sim/report.json")
    parser.add_argument("--out", default="", help="default: timeline.png beside the report")
    args = parser.parse_args(argv)
    report_path = Path(args.report)
    try:
        report = json.loads(report_path.read_text())
        out = draw(report, Path(args.out) if args.out else report_path.with_name("timeline.png"))
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: {report_path}: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
