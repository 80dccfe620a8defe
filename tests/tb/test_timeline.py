"""tb/system/timeline.py: the closed-loop picture from a report."""

from __future__ import annotations

import json

import pytest

from tb.system import timeline

REPORT = {
    "policy": {"name": "vfmanager", "window": 100},
    "placements": [{"cycle": 0, "vf": 0, "device": "host"},
                   {"cycle": 0, "vf": 1, "device": "host"},
                   {"cycle": 150, "vf": 1, "device": "offload"},
                   {"cycle": 320, "vf": 1, "device": "host"}],
    "decisions": [{"vf": 1, "issued": 100, "committed": 150, "result": "committed",
                   "downtime_cycles": 40},
                  {"vf": 1, "issued": 200, "committed": 320, "result": "committed",
                   "downtime_cycles": 55},
                  {"vf": 0, "issued": 300, "committed": 0, "result": "aborted",
                   "downtime_cycles": 0}],
    "windows": [{"end": e, "host_p99": 20.0 + e / 100, "offload_p99": 5.0, "host_busy": 0.5,
                 "offload_busy": 0.1, "link_utilisation": 0.2, "host_requests": 3,
                 "offload_requests": 1} for e in (100, 200, 300, 400)],
}


def test_segments_follow_the_placements_to_the_end_of_the_run():
    segments = timeline.placement_segments(REPORT, timeline.run_end(REPORT))
    assert segments[0] == [(0, 400, "host")]
    assert segments[1] == [(0, 150, "host"), (150, 170, "offload"), (320, 80, "host")]


def test_main_writes_a_png_beside_the_report(tmp_path, capsys):
    path = tmp_path / "report.json"
    path.write_text(json.dumps(REPORT))
    assert timeline.main([str(path)]) == 0
    png = tmp_path / "timeline.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(png) in capsys.readouterr().out


def test_a_scripted_run_has_no_timeline(tmp_path, capsys):
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"migrations": []}))
    assert timeline.main([str(path)]) == 2
    assert "only a closed-loop run" in capsys.readouterr().err
    with pytest.raises(ValueError):
        timeline.draw({"migrations": []}, tmp_path / "x.png")
