"""Every link fault in every protocol phase of a migration, both ways (docs/fault_matrix.md).

A cell is (fault kind, phase, direction): VF 0 migrates with the fault placed in that phase
by the phase itself (``tb/system/phase_fault.py``: the fault fires when the message that
opens the phase leaves its transmitter), while every VF keeps sending requests (VFs 0 and
1 an interrupt storm) and vector 0 of the moving VF is masked across the move, so
interrupts are pending, masked and unmasked, over the switchover.  Then VF 0 migrates
twice more, without faults.

Each cell must end clean: the faulted move committed or rolled back, with STATUS naming
the error of a rollback; the VF where the committed moves put it; every response equal to
the golden model's, none lost, duplicated or reordered; every interrupt delivered exactly
once or blocked as a spoof; every image read back intact; and the next two migrations of
the VF commit — with one offload slot and as many host slots as VFs, a stale slot left on
either device by the faulted move would make one of them be refused.

``make test`` runs one cell per fault kind on Verilator (``test_fault_matrix_sample``);
``SLOW=1`` (and the nightly regression) runs the rest of the matrix on Verilator
(``test_fault_matrix_cell``) and the sample on Icarus too.  Each cell writes its
row to ``build/fault_matrix/``; ``python -m tb.system.fault_matrix`` renders the table.
"""

from __future__ import annotations

import json

import pytest

from model.config import SystemConfig
from tb.common.runner import simulator_available
from tb.common.seeds import bench_seed
from tb.system.sim import make_config, run_system

from .env import Knobs
from .fault_matrix import CELLS, ROWS, Cell

SEED = bench_seed(5)
LATE_COMMIT = ("COMMIT", "COMMIT_ACK")     # the two-generals window (docs/fault_matrix.md)
TIMEOUT_CYCLES = SystemConfig().timeout_cycles
# One cell per fault kind runs in `make test`, each kind in another phase and direction.
QUICK = {Cell("burst", "SWITCHOVER", "h2o"), Cell("drop", "BEGIN", "o2h"),
         Cell("duplicate", "COMMIT", "h2o"), Cell("delay", "RESIDUAL", "h2o"),
         Cell("down_short", "PRECOPY", "o2h"),
         Cell("down_long", "COMMIT_ACK", "h2o"), Cell("corrupt", "RESIDUAL", "o2h")}


def _sample() -> list:
    return [pytest.param(sim, cell, id=f"{sim}-{cell}",
                         marks=[pytest.mark.slow] if sim == "icarus" else [])
            for sim in ("verilator", "icarus") for cell in sorted(QUICK, key=CELLS.index)]


def run_cell(sim: str, cell: Cell, tmp_path) -> dict:
    config = make_config(vfs=4, host_slots=4, offload_slots=1, mem_words=64)
    report_path = tmp_path / "report.json"
    knobs = Knobs(seed=SEED, plan=cell.plan(), phase_faults=cell.fault(), storm_vfs="0,1",
                  irte_mask=1, warmup_cycles=300, gap_cycles=200, allow_rollback=1,
                  report=str(report_path))
    print(f"seed {SEED}, cell {cell}: plan {cell.plan()}, fault {cell.fault()}")
    run_system(sim, config, knobs)  # raises inside pytest when the scenario fails
    return json.loads(report_path.read_text())


@pytest.mark.parametrize(("sim", "cell"), _sample())
def test_fault_matrix_sample(sim, cell, tmp_path):
    """One cell per fault kind: Verilator in `make test`, Icarus with SLOW=1."""
    check_cell(sim, cell, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("cell", [c for c in CELLS if c not in QUICK], ids=str)
def test_fault_matrix_cell(cell, tmp_path):
    """The rest of the matrix, on Verilator (SLOW=1, and the nightly regression)."""
    check_cell("verilator", cell, tmp_path)


def check_cell(sim: str, cell: Cell, tmp_path) -> None:
    if not simulator_available(sim):
        pytest.skip(f"{sim} is not installed")
    report = run_cell(sim, cell, tmp_path)
    assert report["passed"], report["problems"]
    t = report["totals"]
    assert t["mismatches"] == t["lost"] == t["duplicates"] == t["reordered"] == 0
    assert t["interrupts_duplicated"] == t["interrupts_lost"] == 0
    fired = report["link_faults"]["phase_faults"]
    assert len(fired) == 1 and fired[0]["fired"], fired
    assert fired[0]["fired"]["message"] in cell.trigger_messages(), fired
    moves = report["migrations"]
    hit = moves[cell.step]
    assert (hit["from"], hit["to"]) == cell.endpoints(), moves
    assert hit["result"] in ("committed", "aborted"), hit
    assert (hit["result"] == "aborted") == bool(hit["error"]), hit   # STATUS says why
    assert all(m["result"] == "committed" for i, m in enumerate(moves) if i != cell.step)
    if cell.kind == "down_long" and cell.phase in LATE_COMMIT:
        # after COMMIT the source may not roll back on silence (the target may serve the VF
        # already): it waits, the VF held, until the link returns, and the move commits late
        assert hit["result"] == "committed" and hit["total_cycles"] > TIMEOUT_CYCLES, hit
    assert len(moves) == len(cell.plan().split(","))
    print(ROWS.write(sim, cell, SEED, report))


@pytest.mark.parametrize("sim", ["verilator", pytest.param("icarus", marks=pytest.mark.slow)])
def test_a_stop_copy_only_move_rolls_back_on_a_corrupted_digest(sim, tmp_path):
    """The matrix moves pre-copy; a stop-copy-only move (VF 0 back from the offload device)
    with its SWITCHOVER digest corrupted past the link CRC must roll back at the commit too,
    the VF serving at its source, and its next move commit."""
    if not simulator_available(sim):
        pytest.skip(f"{sim} is not installed")
    config = make_config(vfs=4, host_slots=4, offload_slots=1, mem_words=64)
    report_path = tmp_path / "report.json"
    run_system(sim, config, Knobs(seed=SEED, plan="0:pre,0:stop,0:stop",
                                  phase_faults="1:SWITCHOVER:corrupt", storm_vfs="0,1",
                                  irte_mask=1, warmup_cycles=300, gap_cycles=200,
                                  allow_rollback=1, report=str(report_path)))
    report = json.loads(report_path.read_text())
    assert report["passed"], report["problems"]
    moves = [(m["from"], m["to"], m["mode"], m["result"]) for m in report["migrations"]]
    assert moves == [("host", "offload", "pre", "committed"),
                     ("offload", "host", "stop", "aborted"),
                     ("offload", "host", "stop", "committed")], moves
    assert "reason 6" in report["migrations"][1]["error"]      # the digest
