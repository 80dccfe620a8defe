"""The benchmarks behind ``make bench``; each writes its figures to ``build/bench/*.json``.

``python -m tb.bench`` (tb/bench/main.py): DMA words per cycle, interrupt remapping and
downtime against image size; ``python -m tb.bench.link``: link goodput against BER;
``python -m tb.bench.policy_rtl`` and ``python -m tb.bench.policy``: placement policies on
the RTL closed loop and on model.fastsim. tb/bench/test_downtime.py is the cocotb module of
the downtime bench.
"""
