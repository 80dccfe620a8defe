"""The one seed recipe of every bench.

One seed names a run; it is logged, and it alone reproduces the run:

- a pytest entry takes it from ``VFMIG_SEED`` (``SEED_ENV``) when set, else from the bench's
  own default (``bench_seed``), and hands it to cocotb as ``COCOTB_RANDOM_SEED``;
- cocotb derives each test's ``cocotb.RANDOM_SEED`` from it and the test's name;
- a test turns that one seed into one seed per random generator with ``derive_seeds``
  (``generator_seeds`` does both and logs the line a failure is reproduced from).

Scripts (``make sim``, ``make bench``) take their seed from their ``--seed`` option and
derive per-generator seeds with the same ``derive_seeds``.
"""

from __future__ import annotations

import os
import random

SEED_ENV = "VFMIG_SEED"
SEED_MASK = 0xFFFF_FFFF

__all__ = ["SEED_ENV", "bench_seed", "cocotb_test_seed", "derive_seeds", "generator_seeds"]


def bench_seed(default: int) -> int:
    """The seed of a bench's pytest entry: ``$VFMIG_SEED`` when set, else ``default``."""
    text = os.environ.get(SEED_ENV, "").strip()
    if not text:
        return default
    try:
        return int(text, 0)
    except ValueError:
        raise ValueError(f"{SEED_ENV}={text!r} is not an integer: set it to the seed a bench "
                         f"logged (e.g. {SEED_ENV}={default})") from None


def derive_seeds(seed: int, count: int) -> list[int]:
    """``count`` independent 32-bit seeds from one (one per generator, or per link
    direction); the same seed gives the same list."""
    rng = random.Random(seed)
    return [rng.getrandbits(32) for _ in range(count)]


def cocotb_test_seed() -> int:
    """Inside a cocotb test: this test's seed (cocotb derives it from COCOTB_RANDOM_SEED and
    the test's name), as 32 bits."""
    import cocotb

    return cocotb.RANDOM_SEED & SEED_MASK


def generator_seeds(log, count: int, what: str = "") -> list[int]:
    """Inside a cocotb test: ``count`` generator seeds derived from this test's seed
    (``cocotb_test_seed``), after logging that seed, ``what`` and how to rerun with it."""
    seed = cocotb_test_seed()
    env_seed = os.environ.get("COCOTB_RANDOM_SEED", "?")
    log.info("seed %d (from COCOTB_RANDOM_SEED=%s and the test name; rerun: %s=%s)%s",
             seed, env_seed, SEED_ENV, env_seed, f", {what}" if what else "")
    return derive_seeds(seed, count)
