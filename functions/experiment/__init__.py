"""`hexq experiment NAME`: reproducible experiments against real worker processes on any shared backend.

Each experiment (priority, scaling, retries, baseline, load, stress, recovery) is one module with a
`run(lab, repeat)` coroutine that returns its tasks' rows and a summary; runner.py runs it, output.py writes
config.json, tasks.csv, summary.json and report.md under DIR/NAME/<timestamp>/, plots.py draws the PNGs
(matplotlib, optional: `pip install 'hexq[experiments]'`). Timings come from the task records the backend
stores, so every backend is measured the same way.
"""
