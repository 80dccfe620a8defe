"""``python -m tb.bench``: the DMA, interrupt and downtime benches (tb/bench/main.py)."""

import sys

from tb.bench.main import main

sys.exit(main())
