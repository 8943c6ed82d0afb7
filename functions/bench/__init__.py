"""`hexq bench`: enqueue, drain and latency figures for any backend (see runner.py for the phases).

Kept import-light on purpose: cli.py imports `hexq.functions.bench.options` to build its parser, and
every other hexq command pays for that import.
"""
