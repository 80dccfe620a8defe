"""Named configurations and loading a configuration by name or JSON file (model/presets.py)."""

from __future__ import annotations

import json

import pytest

from model.config import SystemConfig
from model.presets import PRESETS, load_config

# The fields that size hardware: the small preset must not be larger in any of them.
SIZES = ("n_vfs", "host_slots", "offload_slots", "chunk_words", "tag_bits", "link_width",
         "link_replay_slots", "link_max_payload_words", "router_queue_depth",
         "router_max_in_flight", "profiler_bins", "profiler_counter_bits",
         "profiler_latency_bits", "profiler_words_bits", "irq_fault_depth")


def test_default_is_the_default_config():
    assert PRESETS["default"] == SystemConfig()


def test_small_is_smaller_everywhere():
    small, default = PRESETS["small"], SystemConfig()
    assert (small.n_vfs, small.host_slots, small.offload_slots) == (2, 2, 2)
    assert small.layout.mem_words == 64 and small.layout.msix_vectors == 2
    assert small.link_replay_slots in (2, 4) and small.router_queue_depth in (2, 4)
    assert {name for name in SIZES if getattr(small, name) > getattr(default, name)} == set()
    assert small.layout.image_words < default.layout.image_words
    assert small.link.rx_buffer_flits < default.link.rx_buffer_flits


def test_small_sends_every_state_data_message_in_one_packet():
    small = PRESETS["small"]
    assert small.link.segments(small.max_chunk_words + 3) == [small.link_max_payload_words]


def test_load_config_by_name_and_by_file(tmp_path):
    assert load_config("small") is PRESETS["small"]
    path = tmp_path / "board.json"
    path.write_text(json.dumps(PRESETS["small"].to_dict()))
    assert load_config(str(path)) == PRESETS["small"]
    path.write_text('{"n_vfs": 2, "layout": {"mem_words": 32}}')
    assert load_config(str(path)) == SystemConfig.from_dict(json.loads(path.read_text()))


@pytest.mark.parametrize(("spec", "text", "message"), [
    ("tiny", None, "unknown preset 'tiny': choose default, small or a JSON file"),
    ("missing.json", None, "cannot read configuration {path}: No such file or directory"),
    ("bad.json", "{n_vfs: 2}", "configuration {path} is not JSON: Expecting property name "
                               "enclosed in double quotes at line 1 column 2"),
    ("key.json", '{"vfs": 2}', "SystemConfig has no field 'vfs': valid fields are n_vfs, "),
    ("value.json", '{"router_queue_depth": 3}',
     "SystemConfig router_queue_depth must be a power of two between 1 and 1024, not 3"),
])
def test_load_config_says_what_is_wrong_in_one_line(tmp_path, spec, text, message):
    path = tmp_path / spec
    if text is not None:
        path.write_text(text)
    with pytest.raises(ValueError) as info:
        load_config(spec if spec == "tiny" else str(path))
    assert str(info.value).startswith(message.format(path=path))
    assert "\n" not in str(info.value)
