"""docs/blocks.md is generated from hdl.generate: it must list every block and be current."""

from hdl.block_doc import DOC, markdown
from hdl.generate import BLOCKS


def test_every_block_has_a_row():
    text = markdown()
    for block in BLOCKS:
        assert f"| `{block.name}` | `{block.cls}` |" in text


def test_blocks_md_is_current():
    assert DOC.exists(), "docs/blocks.md is missing: run `make docs`"
    assert DOC.read_text() == markdown(), "docs/blocks.md is stale: run `make docs`"
