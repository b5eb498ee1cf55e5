"""Benchmarks that print figures (speed, memory, FLOPs). Not shipped; run from the repo root.

    span bench --out docs/performance.md     # the whole study (docs/performance.md says how long)
    python bench/featex_variants.py          # cost of the Featex layouts
"""
