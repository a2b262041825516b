"""Benchmarks of the allocator against the machine's own limit.

Every figure is measured next to a reference taken in the same run on the same Postgres: the rate
at which it commits a one-row UPDATE (pgbench). Run ``python -m bench`` (``--quick`` for a smoke
run of under a minute); results go to ``bench/results/``.
"""
