"""``WAVES=1 make sim``: the FST it writes shows the system's clock and its migrations.

Runs ``python -m tb.system.sim`` (what ``make sim`` runs) with WAVES=1 on a short plan that
moves VF 0 to the offload device and back, takes the FST path it prints, and reads the
file with a reader from PyPI (pywellen, the library behind the Surfer viewer): the top's
clock toggles, and each engine's downtime phase steps from SWITCHOVER to COMMIT once per
migration it led — as many times as the report has committed migrations from its device.
"""

from __future__ import annotations

import json

import pytest

from model.regmap import DowntimePhase
from tb.common.runner import SimulatorError, check_waves, simulator_available

from .sim import main
from .vmm import CLOCK_NS

PLAN = "0:pre,0:stop"
CLOCK_EDGES_CHECKED = 200
# Icarus takes minutes over the system top: `make test` runs Verilator, SLOW=1 adds Icarus.
SIMULATORS = ["verilator", pytest.param("icarus", marks=pytest.mark.slow)]


def migrations_in(phase) -> int:
    """How many times an engine's ``phase`` signal (pywellen) steps from SWITCHOVER to
    COMMIT: the source's handshake of a committed move."""
    values = [value for _, value in (phase[i] for i in range(len(phase)))]
    return sum((a, b) == (DowntimePhase.SWITCHOVER, DowntimePhase.COMMIT)
               for a, b in zip(values, values[1:], strict=False))


def clock_toggles(clk, period_ps: int) -> int:
    """Level changes of ``clk`` sampled every half period over the first cycles."""
    levels = [clk.value_at(t) for t in range(period_ps // 4, CLOCK_EDGES_CHECKED * period_ps,
                                             period_ps // 2)]
    return sum(a != b for a, b in zip(levels, levels[1:], strict=False))


@pytest.mark.parametrize("sim", SIMULATORS)
def test_make_sim_waves_show_the_clock_and_each_migration(sim, tmp_path, monkeypatch, capsys):
    pywellen = pytest.importorskip("pywellen")
    if not simulator_available(sim):
        pytest.skip(f"{sim} is not installed")
    monkeypatch.setenv("WAVES", "1")
    try:
        check_waves(sim)
    except SimulatorError as exc:   # Verilator without liblz4-dev: the one-line reason
        pytest.skip(str(exc))
    report_path = tmp_path / "report.json"
    code = main(["--sim", sim, "--plan", PLAN, "--vfs", "2", "--host-slots", "2",
                 "--offload-slots", "1", "--mem-words", "64", "--report", str(report_path)])
    out = capsys.readouterr()
    assert code == 0, out.out[-2000:] + out.err
    printed = [line.split()[1] for line in out.out.splitlines() if line.startswith("waves: ")]
    assert len(printed) == 1, "make sim printed no (or several) waves: lines"
    wave = pywellen.Waveform(printed[0])
    signals = {v.full_name: v.signal for v in wave.all_vars()}
    top = "system"
    toggles = clock_toggles(signals[f"{top}.clk"], period_ps=CLOCK_NS * 1000)
    assert toggles >= 2 * CLOCK_EDGES_CHECKED - 4
    walks = {dev: migrations_in(signals[f"{top}.{dev}_engine.phase"])
             for dev in ("host", "offload")}
    report = json.loads(report_path.read_text())
    led = {dev: sum(m["from"] == dev and m["result"] == "committed"
                    for m in report["migrations"]) for dev in ("host", "offload")}
    assert led == {"host": 1, "offload": 1}, report["migrations"]
    assert walks == led
