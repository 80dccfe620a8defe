"""One regression run = one (test, seed, simulator): a pytest subprocess of the test's node
with ``VFMIG_SEED`` (every bench entry reads it through tb/common/seeds.py ``bench_seed``),
``VFMIG_PLANT`` for a deliberate-fault build, and its own coverage folder.

``run_job`` is what a local worker thread or a Dask worker executes; it never raises: a
crash, a hang (killed after the test's timeout) or a failure becomes the job's status.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

from tb.common.coverage import ENV_DIR, merge
from tb.common.runner import PLANT_ENV, RUN_DIR_ENV
from tb.common.seeds import SEED_ENV
from tb.regress.testplan import ROOT, Test

# No marker filter: the regression runs the tests `make test` leaves to SLOW=1 (the Icarus
# variants of the system scenarios) too; `-m ''` also overrides any addopts marker filter.
PYTEST_FILTER = ("-m", "")


@dataclass(frozen=True)
class Job:
    test: str
    node: str
    seed: int | None      # None: the bench's own fixed seed (smoke)
    index: int            # which seed of this test (0-based): the coverage-vs-seeds axis
    sim: str
    timeout: float
    plant: str = ""       # a deliberate-fault build (VFMIG_PLANT)

    @property
    def run_id(self) -> str:
        return f"{self.test}.{self.sim}.{'default' if self.seed is None else self.seed}"

    def env(self) -> dict[str, str]:
        # empty values clear a seed or plant inherited from the caller's environment
        return {SEED_ENV: "" if self.seed is None else str(self.seed), PLANT_ENV: self.plant}

    def rerun(self) -> str:
        """The one command that reruns exactly this test, seed and simulator."""
        env = " ".join(f"{k}={v}" for k, v in self.env().items() if v)
        cmd = (f".venv/bin/python -m pytest {shlex.join(PYTEST_FILTER)} "
               f"{shlex.quote(self.node)} --sim {self.sim}")
        return f"{env} {cmd}" if env else cmd


def derive_seed(master: int, test: str, index: int) -> int:
    """The per-run seed: a hash of (master seed, test, index), the same on every machine."""
    digest = hashlib.sha256(f"{master}:{test}:{index}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFF_FFFF


def make_jobs(tests: Iterable[Test], sims: Iterable[str], seeds: int, master: int | None,
              plant: str = "") -> list[Job]:
    """Per simulator: ``master`` None (smoke): each test not ``nightly_only`` once with its
    fixed seed; else ``seeds``
    derived seeds per randomised test (others once with their fixed seed). A seed is the
    same on every simulator."""
    jobs = []
    for sim in sims:
        for t in tests:
            if master is None and t.nightly_only:
                continue
            if master is None or not t.randomised:
                jobs.append(Job(t.name, t.node, None, 0, sim, t.timeout, plant))
            else:
                jobs += [Job(t.name, t.node, derive_seed(master, t.name, i), i, sim,
                             t.timeout, plant) for i in range(seeds)]
    return jobs


def _pytest_outcome(xml: Path) -> tuple[str, str]:
    """(status, first message) from pytest's junit XML."""
    try:
        root = ET.parse(xml).getroot()
    except (OSError, ET.ParseError):
        return "error", "pytest wrote no results (crashed before the end)"
    cases = root.iter("testcase")
    status, message, ran = "passed", "", 0
    for case in cases:
        for child in case:
            if child.tag == "error":
                return "error", (child.get("message") or "error")[:500]
            if child.tag == "failure":
                status, message = "failed", message or (child.get("message") or "")[:500]
        ran += not any(c.tag == "skipped" for c in case)
    if not ran:
        return "error", "every test was skipped (simulator not installed?)"
    return status, message


def run_job(job: Job, out: str, root: str = str(ROOT)) -> dict:
    """Run one job into ``out/<run_id>``; returns its result (with its coverage)."""
    run_dir = Path(out) / job.run_id
    (run_dir / "coverage").mkdir(parents=True, exist_ok=True)
    log = run_dir / "pytest.log"
    env = {**os.environ, **job.env(), ENV_DIR: str(run_dir / "coverage"),
           RUN_DIR_ENV: str(run_dir / "sim"), "PYTHONPATH": root}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
           *PYTEST_FILTER, job.node, "--sim", job.sim, f"--junitxml={run_dir / 'pytest.xml'}"]
    start = time.monotonic()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=job.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)   # the simulator too
            proc.wait()
            rc = None
    seconds = round(time.monotonic() - start, 1)
    if rc is None:
        status, message = "error", f"timeout: killed after {job.timeout:.0f} s"
    elif rc in (0, 1):
        status, message = _pytest_outcome(run_dir / "pytest.xml")
    else:
        status, message = "error", f"pytest exited {rc} (crash or collection error)"
    coverage = merge(sorted((run_dir / "coverage").glob("cov-*.json")))
    return {**asdict(job), "run_id": job.run_id, "status": status, "message": message,
            "seconds": seconds, "log": str(log), "rerun": job.rerun(), "coverage": coverage}


def run_local(jobs: list[Job], out: Path, workers: int,
              done: Callable[[dict], None]) -> list[dict]:
    results = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run_job, job, str(out)) for job in jobs]
        for fut in as_completed(futures):
            results.append(fut.result())
            done(results[-1])
    return results


class SchedulerError(RuntimeError):
    """A Dask scheduler address that is malformed or does not answer."""


def connect(address: str, timeout: float = 10):
    from distributed import Client

    if not address.startswith(("tcp://", "tls://", "inproc://")) or ":" not in address[6:]:
        raise SchedulerError(f"SCHEDULER={address!r} is not a Dask scheduler address: give "
                             f"tcp://host:port (a running `dask scheduler`), or leave it "
                             f"empty for local workers (JOBS=N)")
    try:
        return Client(address, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise SchedulerError(f"no Dask scheduler answers at {address} ({exc}); start one "
                             f"(`dask scheduler` and `dask worker {address}`) or leave "
                             f"SCHEDULER empty for local workers") from exc


def run_dask(jobs: list[Job], out: Path, client, done: Callable[[dict], None]) -> list[dict]:
    """Each job a Dask task; results (with coverage) are gathered back as they finish."""
    from distributed import as_completed as dask_completed

    futures = client.map(run_job, jobs, out=str(out), root=str(ROOT), pure=False)
    results = []
    for fut in dask_completed(futures):
        try:
            results.append(fut.result())
        except Exception as exc:  # a lost worker: the job is an error, the others go on
            job = jobs[futures.index(fut)]
            results.append({**asdict(job), "run_id": job.run_id, "status": "error",
                            "message": f"dask task failed: {exc}", "seconds": 0.0,
                            "log": "", "rerun": job.rerun(), "coverage": {}})
        done(results[-1])
    return results
