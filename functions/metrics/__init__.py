"""Prometheus metrics: the task-event observer, backend timing, the state read at scrape time, and serving.

Imported only when metrics are on (HEXQ_METRICS), and never before `hexq serve` has chosen prometheus_client's
multiprocess mode (functions/metrics/multiprocess.py), which prometheus_client fixes at its import.
"""
