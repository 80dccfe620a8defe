"""System parameters and their validation (model/config.py)."""

from __future__ import annotations

import json

import pytest

from model.config import Device, SystemConfig
from model.protocol import MAX_VFS
from model.state import ImageLayout
from model.vfio import ALL_FLAGS, MigrationFlags


def test_defaults():
    config = SystemConfig()
    assert (config.n_vfs, config.host_slots, config.offload_slots) == (8, 8, 4)
    assert config.flags == ALL_FLAGS
    assert config.layout == ImageLayout()
    assert config.slots(Device.HOST) == 8 and config.slots(Device.OFFLOAD) == 4
    assert config.latency(Device.HOST) == config.host_latency
    assert config.latency(Device.OFFLOAD) == config.offload_latency
    assert config.host_latency > config.offload_latency  # the host serves VFs slowly


def test_device_labels_are_the_report_names():
    assert [d.label for d in Device] == ["host", "offload"]
    assert (Device.HOST, Device.OFFLOAD) == (0, 1)


def test_to_dict_is_json():
    d = SystemConfig(flags=MigrationFlags.STOP_COPY).to_dict()
    assert d["flags"] == 1 and isinstance(d["flags"], int)
    assert d["layout"] == {"csr_words": 8, "msix_vectors": 4, "mem_words": 256,
                           "block_words": 16}
    assert json.loads(json.dumps(d)) == d


@pytest.mark.parametrize(("name", "lo", "hi"), [
    ("n_vfs", 1, MAX_VFS - 1), ("host_slots", 1, 255), ("offload_slots", 1, 255),
    ("host_latency", 2, 4096), ("offload_latency", 2, 4096), ("chunk_words", 1, 4096),
    ("precopy_threshold_blocks", 0, 1 << 20), ("max_precopy_rounds", 1, 255),
    ("timeout_cycles", 16, 1 << 30), ("tag_bits", 1, 16),
])
def test_range_checks(name, lo, hi):
    roomy = {"n_vfs": 1, "host_slots": 255, "offload_slots": 255}  # valid at both ends
    for bad in (lo - 1, hi + 1):
        with pytest.raises(ValueError) as info:
            SystemConfig(**{**roomy, name: bad})
        assert str(info.value) == f"SystemConfig {name} must be between {lo} and {hi}, not {bad}"
    for bad in (float(lo), str(lo), None):
        with pytest.raises(TypeError) as info:
            SystemConfig(**{**roomy, name: bad})
        assert str(info.value) == f"SystemConfig {name} must be an integer, not {bad!r}"
    for good in (lo, hi):
        assert getattr(SystemConfig(**{**roomy, name: good}), name) == good


@pytest.mark.parametrize("flags", [MigrationFlags(0), MigrationFlags.P2P,
                                   MigrationFlags.P2P | MigrationFlags.PRE_COPY])
def test_flags_need_stop_copy(flags):
    with pytest.raises(ValueError, match="lack STOP_COPY, which VFIO makes mandatory"):
        SystemConfig(flags=flags)


def test_too_many_vfs_for_both_devices():
    with pytest.raises(ValueError) as info:
        SystemConfig(n_vfs=13, host_slots=8, offload_slots=4)
    assert str(info.value) == ("SystemConfig.n_vfs=13 exceeds the slots of both devices "
                               "(8 + 4)")


def test_every_vf_starts_on_the_host():
    with pytest.raises(ValueError) as info:
        SystemConfig(n_vfs=9, host_slots=8, offload_slots=4)
    assert str(info.value) == ("SystemConfig.n_vfs=9: every VF starts on the host, which has "
                               "only 8 slots")
    SystemConfig(n_vfs=8, host_slots=8, offload_slots=1)


def test_config_is_frozen():
    config = SystemConfig()
    with pytest.raises(AttributeError):
        config.n_vfs = 2  # type: ignore[misc]
