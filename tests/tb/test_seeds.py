"""tb/common/seeds.py: the one seed recipe (the seed variable, per-generator seeds)."""

from __future__ import annotations

import logging

import pytest

from tb.common.seeds import SEED_ENV, bench_seed, derive_seeds


def test_bench_seed_is_the_default_unless_the_variable_names_one(monkeypatch):
    monkeypatch.delenv(SEED_ENV, raising=False)
    assert bench_seed(20240613) == 20240613
    monkeypatch.setenv(SEED_ENV, "42")
    assert SEED_ENV == "VFMIG_SEED" and bench_seed(20240613) == 42
    monkeypatch.setenv(SEED_ENV, "0x10")
    assert bench_seed(1) == 16


def test_a_bad_seed_is_one_clear_line(monkeypatch):
    monkeypatch.setenv(SEED_ENV, "abc")
    with pytest.raises(ValueError) as info:
        bench_seed(7)
    assert str(info.value) == ("VFMIG_SEED='abc' is not an integer: set it to the seed a bench "
                               "logged (e.g. VFMIG_SEED=7)")


def test_derive_seeds_is_reproducible_independent_and_32_bit():
    seeds = derive_seeds(20240613, 4)
    assert seeds == derive_seeds(20240613, 4)
    assert derive_seeds(20240613, 2) == seeds[:2]   # more generators keep the first ones
    assert len(set(seeds)) == 4 and all(0 <= s < 1 << 32 for s in seeds)
    assert derive_seeds(20240614, 4) != seeds


def test_generator_seeds_logs_the_test_seed_and_derives_from_it(monkeypatch, caplog):
    cocotb = pytest.importorskip("cocotb")
    from tb.common.seeds import generator_seeds

    monkeypatch.setattr(cocotb, "RANDOM_SEED", (1 << 40) + 99, raising=False)
    monkeypatch.setenv("COCOTB_RANDOM_SEED", "5")
    log = logging.getLogger("test.seeds")
    with caplog.at_level(logging.INFO, logger="test.seeds"):
        assert generator_seeds(log, 3, "config x") == derive_seeds(99, 3)
    assert caplog.messages == ["seed 99 (from COCOTB_RANDOM_SEED=5 and the test name; rerun: "
                               "VFMIG_SEED=5), config x"]
