"""Benchmarks of the allocator against the machine's own limit.

Every figure is measured next to a reference taken in the same run on the same Postgres: the rate
at which it commits a one-row UPDATE (pgbench), a bare FastAPI app's CPU per request, a backend's
CPU per one-row UPDATE transaction. Run ``python -m bench`` (``--quick`` for a smoke run of about
a minute); results go to ``bench/results/``.
"""
