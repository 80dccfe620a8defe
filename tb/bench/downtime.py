"""Downtime vs. image size, pre-copy against stop-copy only (`make bench`, issue 2 item 8).

For each memory size a small system (one VF, one slot per device) is built once and the
cocotb module ``tb.bench.test_downtime`` migrates VF 0 from the host to the offload
device twice, from the same reset and under the same seeded write traffic: once with
pre-copy (PRE_COPY until converged, then STOP_COPY, STOP, commit) and once with stop-copy
only (STOP_COPY straight from RUNNING).  The figures are the hardware's DOWNTIME register
(cycles from the router's hold to the release at the new place), ROUNDS, WORDS_SENT and the
total cycles the VMM saw; they are recorded, never asserted by the cocotb test.

This module holds the pure-Python side (sizes, configuration, the JSON document, the
target check, the table) and ``run_point``, which builds and runs one size.  Nothing here
imports cocotb, so the pure parts are tested without a simulator (tests/tb/test_bench.py).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from model.config import SystemConfig
from model.state import ImageLayout
from model.vfio import MigrationFlags

DEFAULT_SIZES = (256, 1024, 4096, 16384)
MAX_MEM_WORDS = 1 << 16          # beyond this one build and run take too long for a bench
# Cycles between two writes of the traffic.  Pre-copy converges only while the VF dirties
# blocks slower than the engine sends them (~22 cycles per 16-word block): with uniformly
# random words one write per 20 cycles keeps every round as large as the last, and pre-copy
# ends at the round limit with a residual of thousands of cycles (4.8x at 16384 words).
DEFAULT_WRITE_INTERVAL = 100
DEFAULT_WARMUP_CYCLES = 300      # traffic before the migration starts
TARGET_RATIO = 10.0              # stop-copy downtime >= 10x pre-copy downtime at the largest
MODES = ("precopy", "stopcopy")
TEST_MODULE = "tb.bench.test_downtime"
ENV_PREFIX = "VFMIG_BENCH_"
POINT_KEYS = ("mem_words", "precopy_downtime", "stopcopy_downtime")


# ---------------------------------------------------------------- parameters
def parse_sizes(text: str) -> list[int]:
    """``"256,1024"`` -> ``[256, 1024]`` (sorted, unique); ValueError with a clear message."""
    sizes = []
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        try:
            value = int(item)
        except ValueError:
            raise ValueError(f"--sizes: {item!r} is not an integer (give memory sizes in "
                             f"words, e.g. 256,1024,4096,16384)") from None
        if not 1 <= value <= MAX_MEM_WORDS:
            raise ValueError(f"--sizes: {value} words is outside [1, {MAX_MEM_WORDS}]")
        sizes.append(value)
    if not sizes:
        raise ValueError("--sizes: no size given (e.g. 256,1024,4096,16384)")
    return sorted(set(sizes))


def check_write_interval(value: int) -> int:
    if not isinstance(value, int) or value < 2:
        raise ValueError(f"--write-interval must be an integer >= 2 (cycles between writes), "
                         f"not {value!r}")
    return value


def bench_config(mem_words: int) -> SystemConfig:
    """The system of one point: one VF, one slot per device, so each build stays small."""
    return SystemConfig(n_vfs=1, host_slots=1, offload_slots=1,
                        layout=ImageLayout(mem_words=mem_words))


def config_to_json(config: SystemConfig) -> str:
    return json.dumps(config.to_dict(), sort_keys=True)


def config_from_json(text: str) -> SystemConfig:
    d = json.loads(text)
    d["layout"] = ImageLayout(**d["layout"])
    d["flags"] = MigrationFlags(d["flags"])
    return SystemConfig(**d)


@dataclass(frozen=True)
class Knobs:
    """What the cocotb module needs, passed as ``VFMIG_BENCH_*`` environment variables."""
    config: SystemConfig
    out: str                       # JSON file the cocotb tests merge their figures into
    seed: int = 1
    write_interval: int = DEFAULT_WRITE_INTERVAL
    warmup_cycles: int = DEFAULT_WARMUP_CYCLES

    def to_env(self) -> dict[str, str]:
        return {f"{ENV_PREFIX}CONFIG": config_to_json(self.config),
                f"{ENV_PREFIX}OUT": self.out, f"{ENV_PREFIX}SEED": str(self.seed),
                f"{ENV_PREFIX}WRITE_INTERVAL": str(self.write_interval),
                f"{ENV_PREFIX}WARMUP_CYCLES": str(self.warmup_cycles)}

    @classmethod
    def from_env(cls, environ=None) -> Knobs:
        env = os.environ if environ is None else environ
        missing = [f"{ENV_PREFIX}{k}" for k in ("CONFIG", "OUT") if f"{ENV_PREFIX}{k}" not in env]
        if missing:
            raise ValueError(f"{', '.join(missing)} not set: run the bench with "
                             f"'python -m tb.bench', not the cocotb module alone")
        return cls(config=config_from_json(env[f"{ENV_PREFIX}CONFIG"]),
                   out=env[f"{ENV_PREFIX}OUT"], seed=int(env.get(f"{ENV_PREFIX}SEED", 1)),
                   write_interval=int(env.get(f"{ENV_PREFIX}WRITE_INTERVAL",
                                              DEFAULT_WRITE_INTERVAL)),
                   warmup_cycles=int(env.get(f"{ENV_PREFIX}WARMUP_CYCLES",
                                             DEFAULT_WARMUP_CYCLES)))


# ---------------------------------------------------------------- results
def make_point(mem_words: int, runs: dict) -> dict:
    """One entry of ``downtime.json`` from the two runs the cocotb module wrote.

    ``runs`` is ``{"precopy": {...}, "stopcopy": {...}}`` with ``downtime``, ``rounds``,
    ``words_sent``, ``total_cycles`` per mode (and, informative, ``writes``: writes issued
    before the commit, ``max_write_wait``: the longest a write waited to be accepted, an
    independent view of the hold); raises ValueError naming what is missing."""
    point: dict = {"mem_words": mem_words}
    for mode in MODES:
        run = runs.get(mode)
        if run is None:
            raise ValueError(f"{mem_words} words: no {mode} run in the results")
        if run.get("error"):
            raise ValueError(f"{mem_words} words, {mode}: {run['error']}")
        for name in ("downtime", "rounds", "words_sent", "total_cycles"):
            if not isinstance(run.get(name), int):
                raise ValueError(f"{mem_words} words, {mode}: {name} missing or not an "
                                 f"integer ({run.get(name)!r})")
        point[f"{mode}_downtime"] = run["downtime"]
        point[f"{mode}_rounds"] = run["rounds"]
        point[f"{mode}_words_sent"] = run["words_sent"]
        point[f"{mode}_total_cycles"] = run["total_cycles"]
        point[f"{mode}_writes"] = run.get("writes", 0)
        point[f"{mode}_max_write_wait"] = run.get("max_write_wait", 0)
    ratio = downtime_ratio(point)
    point["ratio"] = ratio if math.isfinite(ratio) else None  # JSON has no infinity
    return point


def downtime_ratio(point: dict) -> float:
    """stop-copy downtime / pre-copy downtime (inf when pre-copy held the VF for 0 cycles)."""
    pre, stop = point["precopy_downtime"], point["stopcopy_downtime"]
    return round(stop / pre, 2) if pre else math.inf


def validate_document(doc: dict) -> None:
    """Raise ValueError unless ``doc`` has the shape of ``build/bench/downtime.json``."""
    points = doc.get("points") if isinstance(doc, dict) else None
    if not isinstance(points, list) or not points:
        raise ValueError("downtime.json: 'points' must be a non-empty list")
    for i, point in enumerate(points):
        for key in POINT_KEYS:
            value = point.get(key) if isinstance(point, dict) else None
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"downtime.json: points[{i}].{key} must be a non-negative "
                                 f"integer, not {value!r}")
    sizes = [p["mem_words"] for p in points]
    if sizes != sorted(set(sizes)):
        raise ValueError(f"downtime.json: mem_words must increase strictly, not {sizes}")


def target_failures(words_per_cycle: float | None, points: list[dict],
                    min_words_per_cycle: float = 0.95,
                    ratio: float = TARGET_RATIO) -> list[str]:
    """The issue's bench targets, one clear line per miss (an empty list: all met).

    ``words_per_cycle`` None means the DMA figure was not measured (not a miss)."""
    failures = []
    if words_per_cycle is not None and words_per_cycle < min_words_per_cycle:
        failures.append(f"DMA throughput {words_per_cycle:.3f} words/cycle is below the "
                        f"target {min_words_per_cycle}")
    if points:
        largest = max(points, key=lambda p: p["mem_words"])
        pre, stop = largest["precopy_downtime"], largest["stopcopy_downtime"]
        if stop < ratio * pre:
            failures.append(f"at {largest['mem_words']} words stop-copy downtime {stop} cycles "
                            f"is {stop / pre if pre else math.inf:.1f}x the pre-copy downtime "
                            f"{pre} cycles; the target is >= {ratio:g}x")
    return failures


def format_table(points: list[dict]) -> str:
    head = (f"{'mem words':>9} {'image':>6} | {'pre-copy':>8} {'rounds':>6} {'total':>7} | "
            f"{'stop-copy':>9} {'total':>7} | {'ratio':>6}")
    lines = [head, "-" * len(head)]
    for p in points:
        image = p.get("image_words", ImageLayout(mem_words=p["mem_words"]).image_words)
        lines.append(f"{p['mem_words']:>9} {image:>6} | {p['precopy_downtime']:>8} "
                     f"{p.get('precopy_rounds', 0):>6} {p.get('precopy_total_cycles', 0):>7} | "
                     f"{p['stopcopy_downtime']:>9} {p.get('stopcopy_total_cycles', 0):>7} | "
                     f"{downtime_ratio(p):>5.1f}x")
    lines.append("downtime: cycles from the VF's hold to serving again at its new place "
                 "(DOWNTIME register); total: cycles from the first VFIO request to RUNNING "
                 "at the offload device")
    return "\n".join(lines)


# ---------------------------------------------------------------- one size in simulation
class BenchRunError(RuntimeError):
    """A point could not be measured; the message says what the simulation reported."""


def run_point(sim: str, mem_words: int, out_dir: Path, seed: int = 1,
              write_interval: int = DEFAULT_WRITE_INTERVAL,
              warmup_cycles: int = DEFAULT_WARMUP_CYCLES) -> dict:
    """Build (once) and run both modes at ``mem_words``; returns the ``downtime.json`` point."""
    from cocotb_tools.check_results import get_results

    from hdl.system import System
    from tb.common.runner import run_tests

    config = bench_config(mem_words)
    out = Path(out_dir) / f"downtime-{mem_words}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    knobs = Knobs(config=config, out=str(out.resolve()), seed=seed,
                  write_interval=write_interval, warmup_cycles=warmup_cycles)
    try:
        results = run_tests(sim, "system", lambda: System(config), TEST_MODULE,
                            parameters=config.to_dict(), extra_env=knobs.to_env(), seed=seed)
    except SystemExit as exc:  # cocotb's runner exits when the build or simulator fails
        raise BenchRunError(f"{mem_words} words: the simulator failed (exit {exc.code}); see "
                            f"build/sim_build/system-{sim}-*/build.log or runs/") from None
    log = Path(results).parent / "sim.log"
    runs = json.loads(out.read_text()) if out.exists() else {}
    try:
        point = make_point(mem_words, runs)
    except ValueError as exc:
        raise BenchRunError(f"{exc} (log: {log})") from None
    tests, failed = get_results(Path(results))
    if failed or tests != len(MODES):
        raise BenchRunError(f"{mem_words} words: {failed} of {tests} cocotb tests failed "
                            f"(log: {log})")
    point["image_words"] = config.layout.image_words
    point["checked_words"] = sum(runs[m].get("checked_words", 0) for m in MODES)
    return point


def downtime_document(points: list[dict], sim: str, seed: int, write_interval: int,
                      warmup_cycles: int) -> dict:
    base = bench_config(points[0]["mem_words"] if points else 256).to_dict()
    base.pop("layout")
    doc = {"sim": sim, "seed": seed, "write_interval": write_interval,
           "warmup_cycles": warmup_cycles, "direction": "host -> offload",
           "config": base, "points": points}
    validate_document(doc)
    return doc
