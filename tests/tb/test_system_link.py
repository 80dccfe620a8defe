"""The link integration's pure parts: System's fault parameter, the link knobs and report
figures of the system bench (tb/system/link.py, env.py), the ``reject`` plan mode and the
link registers (model/regmap.py). The link under faults runs in tb/system/test_system.py."""

from __future__ import annotations

import pytest

from hdl.system import System
from model.config import SystemConfig
from model.link import STAT_NAMES, FaultConfig
from model.regmap import GLOBAL, LINK_BASE, VF_BASE, link_reg
from model.state import ImageLayout
from tb.system.env import Knobs, link_summary
from tb.system.link import parse_windows
from tb.system.vmm import check_plan, parse_plan

SMALL = SystemConfig(n_vfs=4, host_slots=4, offload_slots=2,
                     layout=ImageLayout(mem_words=64))


def test_system_refuses_an_unknown_fault():
    with pytest.raises(ValueError) as exc:
        System(SMALL, _fault_inject="flip_everything")
    assert str(exc.value) == ("System _fault_inject must be None or one of "
                              "corrupt_state_write, not 'flip_everything'")
    assert System(SMALL, _fault_inject="corrupt_state_write").fault_inject == "corrupt_state_write"


def test_system_has_the_wire_ports():
    members = System(SMALL).signature.members
    for name in ("h2o_tx", "h2o_rx", "o2h_tx", "o2h_rx"):
        assert name in members
    assert members["h2o_tx"].flow != members["h2o_rx"].flow


def test_link_down_windows_parse_and_refuse_nonsense():
    assert parse_windows("2000:100, 9000:40") == ((2000, 100), (9000, 40))
    assert parse_windows("") == ()
    with pytest.raises(ValueError, match=r"link-down window '5' is not START:CYCLES"):
        parse_windows("5")
    with pytest.raises(ValueError, match=r"START must be >= 0 and CYCLES >= 1"):
        parse_windows("10:0")


def test_knobs_make_the_fault_config():
    knobs = Knobs(ber=1e-5, drop_rate=1e-3, dup_rate=2e-3, burst_rate=1e-4,
                  link_down="100:50", link_down_step="1:3000")
    assert knobs.link_faults() == FaultConfig(ber=1e-5, burst_rate=1e-4, drop_rate=1e-3,
                                              dup_rate=2e-3, down=((100, 50),))
    assert knobs.step_link_downs() == {1: 3000}
    env = knobs.to_env()
    assert Knobs.from_env(env).link_faults() == knobs.link_faults()
    with pytest.raises(ValueError, match="probability"):
        Knobs(ber=2.0).link_faults()


def test_link_summary_sums_both_ports():
    host = {stat: i + 1 for i, stat in enumerate(STAT_NAMES)} | {"mig_malformed": 1,
                                                                   "io_malformed": 2}
    offload = {stat: 10 * (i + 1) for i, stat in enumerate(STAT_NAMES)} | {
        "mig_malformed": 0, "io_malformed": 4}
    summary = link_summary({"host": host, "offload": offload})
    index = {stat: i + 1 for i, stat in enumerate(STAT_NAMES)}
    assert summary == {"flits": 11 * index["tx_flits"], "packets": 11 * index["tx_packets"],
                       "replays": 11 * index["tx_replays"], "naks": 11 * index["naks_sent"],
                       "crc_errors": 11 * index["rx_crc_errors"], "dropped_malformed": 7}


def test_reject_steps_need_a_full_target():
    check_plan(parse_plan("0:pre,1:pre,2:reject"), SMALL)
    with pytest.raises(ValueError) as exc:
        check_plan(parse_plan("0:pre,2:reject"), SMALL)
    assert str(exc.value) == ("plan step 2:reject: offload has a free slot, so the move "
                              "would not be rejected")


def test_link_registers_are_global_and_in_order():
    for port, base in LINK_BASE.items():
        for i, stat in enumerate(STAT_NAMES):
            assert link_reg(port.lower(), stat) == base + 4 * i
    names = [n for n in GLOBAL if n.startswith(("LINK_", "MIG_MALFORMED", "IO_MALFORMED"))]
    assert len(names) == 2 * len(STAT_NAMES) + 4
    assert max(GLOBAL[n] for n in names) + 4 <= VF_BASE
