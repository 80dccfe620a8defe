"""Sample tests the regression self-tests run (tests/test_regress.py); not collected by
`make test` (no test_ prefix in the file name)."""

from __future__ import annotations

import os
import time


def test_fails_on_odd_seed():
    seed = int(os.environ.get("REGRESS_SEED") or 0)
    assert seed % 2 == 0, f"seed {seed} is odd (a planted failure)"


def test_hangs():
    time.sleep(600)
