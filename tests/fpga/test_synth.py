"""The board tops elaborate, and the smaller board's passes Yosys synthesis (synth_ecp5)
with its images in block RAM, no multipliers, and cells within the device's capacity.
Place and route is ``make fpga`` / ``make bench``."""

from __future__ import annotations

import pytest

from fpga.boards import BOARDS, board_named
from fpga.build import prepare_board, synthesize

SMALL_BOARD = "ulx3s-25f"
LUT_CAPACITY = {"ulx3s-25f": 24_288}


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_every_board_top_elaborates_on_its_platform(name):
    board = board_named(name)
    plan = prepare_board(board, board.make_platform())   # pins, PLL, RTLIL, scripts
    assert "EHXPLLL" in plan.files["top.il"]
    assert 'LOCATE COMP "uart_0__tx' in plan.files["top.lpf"]
    script = plan.files["top.ys"]
    if board.lut_mapping == "abc":    # classic ABC maps the LUTs, synth_ecp5 the rest
        assert "abc -lut 4:7" in script and "synth_ecp5 -run check: -top top" in script
    else:
        assert "abc9.verify 0" in script and "synth_ecp5  -top top" in script


# About 3 minutes: before the block-RAM VF unit and the adder digest it took 6 minutes and
# failed (77,094 LUT4, 38 MULT18X18D, images in flip-flops).
def test_the_smaller_board_synthesizes_with_images_in_block_ram(tmp_path):
    cells = synthesize(board_named(SMALL_BOARD), tmp_path)
    # 2 slots x 2 devices x 2 copies, plus the link and tunnel buffers
    assert cells.get("DP16KD", 0) >= 2 * 2 * 2, cells
    assert cells.get("MULT18X18D", 0) == 0, cells
    luts = cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0)
    assert 0 < luts <= LUT_CAPACITY[SMALL_BOARD], cells
    assert cells.get("TRELLIS_FF", 0) <= LUT_CAPACITY[SMALL_BOARD], cells
