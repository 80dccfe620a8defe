"""System parameters and their validation (model/config.py)."""

from __future__ import annotations

import json

import pytest

from model.config import MAX_PROFILER_BINS, Device, SystemConfig
from model.irq_remap import RemapParams
from model.link import LinkParams
from model.profiler import DEFAULT_BINS
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


# ---------------------------------------------------------------- the sizes of the top's parts
def test_size_fields_default_to_the_parts_defaults():
    """The default system keeps the sizes its parts had before they came from here."""
    config = SystemConfig()
    assert config.link == LinkParams()
    assert (config.router_queue_depth, config.router_max_in_flight) == (8, 15)
    assert (config.profiler_bins, config.profiler_counter_bits, config.profiler_latency_bits,
            config.profiler_words_bits) == (DEFAULT_BINS, 32, 24, 8)
    assert config.irq_remap == RemapParams(config.n_vfs, config.layout.msix_vectors)


def test_link_params_follow_the_fields():
    config = SystemConfig(link_width=32, link_replay_slots=2, link_max_payload_words=20,
                          link_rx_buffer_flits=64)
    assert config.link == LinkParams(link_width=32, replay_slots=2, max_payload_words=20,
                                     rx_buffer_flits=64)
    assert SystemConfig(irq_fault_depth=2).irq_remap.fault_depth == 2


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"link_width": 48}, "SystemConfig link_width must be one of 32, 64, 128, 256, not 48"),
    ({"link_width": 64.0}, "SystemConfig link_width must be an integer, not 64.0"),
    ({"link_replay_slots": 3},
     "SystemConfig link_replay_slots must be a power of two between 2 and 256, not 3"),
    ({"link_replay_slots": 1}, "SystemConfig link_replay_slots must be between 2 and 256, not 1"),
    ({"link_max_payload_words": 0},
     "SystemConfig link_max_payload_words must be between 1 and 1023, not 0"),
    ({"link_rx_buffer_flits": 64},  # a 67-word packet is 34 rows: two need 68
     "SystemConfig link_rx_buffer_flits must be between 68 and 1024, not 64"),
    ({"link_rx_buffer_flits": 96},
     "SystemConfig link_rx_buffer_flits must be a power of two between 68 and 1024, not 96"),
    ({"router_queue_depth": 6},
     "SystemConfig router_queue_depth must be a power of two between 1 and 1024, not 6"),
    ({"router_max_in_flight": 0},
     "SystemConfig router_max_in_flight must be between 1 and 255, not 0"),
    ({"profiler_counter_bits": 33},
     "SystemConfig profiler_counter_bits must be between 8 and 32, not 33"),
    ({"profiler_latency_bits": 25, "profiler_counter_bits": 24},
     "SystemConfig profiler_latency_bits must be between 2 and 24, not 25"),
    ({"profiler_bins": 10, "profiler_latency_bits": 8},
     "SystemConfig profiler_bins must be between 2 and 9, not 10"),
    ({"profiler_bins": MAX_PROFILER_BINS + 1},   # the VF row of the profiler window is full
     f"SystemConfig profiler_bins must be between 2 and {MAX_PROFILER_BINS}, "
     f"not {MAX_PROFILER_BINS + 1}"),
    ({"profiler_words_bits": 15, "profiler_counter_bits": 16, "profiler_latency_bits": 16},
     "SystemConfig profiler_words_bits must be between 1 and 14, not 15"),
    ({"irq_fault_depth": 257}, "SystemConfig irq_fault_depth must be between 1 and 256, not 257"),
])
def test_size_fields_are_checked(kwargs, message):
    with pytest.raises(ValueError) as info:
        SystemConfig(**kwargs)
    assert str(info.value) == message


def test_size_fields_accept_their_bounds():
    SystemConfig(link_width=256, link_replay_slots=256, link_max_payload_words=1023,
                 link_rx_buffer_flits=1024, router_queue_depth=1024, router_max_in_flight=255,
                 profiler_bins=MAX_PROFILER_BINS, irq_fault_depth=256)
    SystemConfig(link_width=32, link_replay_slots=2, link_max_payload_words=1,
                 link_rx_buffer_flits=4, router_queue_depth=1, router_max_in_flight=1,
                 profiler_counter_bits=8, profiler_latency_bits=2, profiler_bins=2,
                 profiler_words_bits=1, irq_fault_depth=1)


# ---------------------------------------------------------------- from_dict
def test_from_dict_inverts_to_dict():
    changed = SystemConfig(n_vfs=3, host_slots=3, offload_slots=1, flags=MigrationFlags.STOP_COPY,
                           layout=ImageLayout(mem_words=32), link_width=128,
                           link_rx_buffer_flits=64, router_queue_depth=2, profiler_bins=4,
                           irq_fault_depth=3)
    for config in (SystemConfig(), changed):
        assert SystemConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_from_dict_keeps_the_defaults_of_keys_left_out():
    config = SystemConfig.from_dict({"n_vfs": 2, "layout": {"mem_words": 64}})
    assert config == SystemConfig(n_vfs=2, layout=ImageLayout(mem_words=64))
    assert SystemConfig.from_dict({}) == SystemConfig()


@pytest.mark.parametrize(("d", "message"), [
    ({"n_vf": 2}, "SystemConfig has no field 'n_vf': valid fields are n_vfs, host_slots, "),
    ({"layout": {"mem": 64}}, "SystemConfig layout has no field 'mem': valid fields are "
                              "csr_words, msix_vectors, mem_words, block_words"),
    ({"layout": 64}, "SystemConfig layout must be an object of fields, not 64"),
    ([1, 2], "SystemConfig must be an object of fields, not [1, 2]"),
    ({"flags": 8}, "SystemConfig flags must be between 0 and 7, not 8"),
    ({"flags": "all"}, "SystemConfig flags must be an integer, not 'all'"),
    ({"flags": 2}, "lack STOP_COPY, which VFIO makes mandatory"),
    ({"n_vfs": "2"}, "SystemConfig n_vfs must be an integer, not '2'"),
    ({"layout": {"mem_words": 0}}, "ImageLayout mem_words must be at least 1, not 0"),
])
def test_from_dict_names_what_is_wrong(d, message):
    with pytest.raises(ValueError) as info:
        SystemConfig.from_dict(d)
    assert message in str(info.value) and "\n" not in str(info.value)
