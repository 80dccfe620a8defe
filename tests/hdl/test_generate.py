"""`make verilog` writes Verilog and a sidecar for every block (hdl.generate), or with
`CONFIG=` the system top alone for a preset or a JSON configuration."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hdl.generate import BLOCKS, generate, main
from model.config import SystemConfig
from model.presets import PRESETS, load_config
from model.state import ImageLayout

ROOT = Path(__file__).resolve().parents[2]


def test_every_block_converts_with_its_sidecar(tmp_path):
    config = SystemConfig(n_vfs=2, host_slots=2, offload_slots=1,
                          layout=ImageLayout(csr_words=4, msix_vectors=2, mem_words=32,
                                             block_words=8), chunk_words=16)
    written = generate(tmp_path, config=config)
    assert sorted(p.stem for p in written) == sorted(b.name for b in BLOCKS)
    for path in written:
        assert f"module {path.stem}(" in path.read_text()
        sidecar = json.loads(path.with_suffix(".json").read_text())
        assert sidecar["top"] == path.stem and sidecar["clock"] == "clk"
        assert sidecar["ports"], f"{path.stem} has no ports in its sidecar"


def test_config_preset_writes_only_its_system(tmp_path):
    assert main(["--out", str(tmp_path), "--config", "small"]) == 0
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "small", "small/system.json", "small/system.v"]
    assert "module system(" in (tmp_path / "small" / "system.v").read_text()
    sidecar = json.loads((tmp_path / "small" / "system.json").read_text())
    assert sidecar["parameters"]["config"] == PRESETS["small"].to_dict()
    widths = {p["name"]: p["width"] for p in sidecar["ports"]}
    assert widths["h2o_tx__flit"] == widths["o2h_rx__flit"] == PRESETS["small"].link_width


def test_config_file_is_named_after_its_stem(tmp_path):
    path = tmp_path / "board.json"
    path.write_text(json.dumps({"n_vfs": 1, "host_slots": 1, "offload_slots": 1,
                                "layout": {"csr_words": 4, "msix_vectors": 1, "mem_words": 16,
                                           "block_words": 8},
                                "chunk_words": 8, "router_queue_depth": 1}))
    assert main(["--out", str(tmp_path / "out"), "--config", str(path)]) == 0
    sidecar = json.loads((tmp_path / "out" / "board" / "system.json").read_text())
    assert sidecar["parameters"]["config"] == load_config(str(path)).to_dict()


# What each bad configuration says is load_config's (tests/model/test_presets.py); here: the
# command prints it as one line, exits 2 and writes nothing.
@pytest.mark.parametrize(("spec", "text", "message"), [
    ("tiny", None, "error: unknown preset 'tiny': choose default, small or a JSON file"),
    ("value.json", '{"link_width": 48}',
     "error: SystemConfig link_width must be one of 32, 64, 128, 256, not 48"),
])
def test_a_bad_config_is_one_line_and_exit_code_2(tmp_path, spec, text, message):
    path = tmp_path / spec
    if text is not None:
        path.write_text(text)
    result = subprocess.run(
        [sys.executable, "-m", "hdl.generate", "--out", str(tmp_path / "out"), "--config",
         spec if spec == "tiny" else str(path)],
        cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1
    assert result.stdout == "" and not (tmp_path / "out").exists()
