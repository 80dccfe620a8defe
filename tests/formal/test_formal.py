"""Each block's property set can fail: BMC of the harness fails with the block's first
planted bug and passes without it, at the block's short ``test_depth`` (``make formal``
runs the full depths, k-induction and cover)."""

from __future__ import annotations

from pathlib import Path

import pytest

from formal.blocks import BLOCKS
from formal.core import check, missing_tool


@pytest.fixture
def _tools() -> None:
    problem = missing_tool()
    assert problem is None, problem


#: (block, planted bug): each block's first, and every planted bug of the link's parts and
#: of the router
PLANTED = sorted({(b.name, b.faults[0]) for b in BLOCKS.values()}
                 | {(b.name, f) for b in BLOCKS.values()
                    if b.name.startswith("link_") or b.name == "router" for f in b.faults})


@pytest.mark.slow
@pytest.mark.parametrize("name, fault", PLANTED)
def test_planted_bug_fails(name: str, fault: str, tmp_path: Path, _tools: None) -> None:
    block = BLOCKS[name]
    result = check(block, tmp_path, fault=fault, tasks=("bmc",), depth=block.test_depth)
    assert result.bmc == "fail", f"{name} with {fault}: {result}"
    assert result.traces, "a failing check names its counterexample trace"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_block_passes(name: str, tmp_path: Path, _tools: None) -> None:
    block = BLOCKS[name]
    result = check(block, tmp_path, tasks=("bmc",), depth=block.test_depth)
    assert result.bmc == "pass", f"{name}: {result}"


def test_fault_names_checked() -> None:
    from hdl.csr import AxiLiteSlave
    from hdl.router import Router
    with pytest.raises(ValueError, match=r"^AxiLiteSlave _fault_inject must be None or one of "
                       r"strobe_on_error, not 'x'$"):
        AxiLiteSlave(_fault_inject="x")
    with pytest.raises(ValueError, match=r"^Router _fault_inject must be None or one of "
                       r"drop_held, ignore_in_flight, not 'x'$"):
        Router(2, _fault_inject="x")
