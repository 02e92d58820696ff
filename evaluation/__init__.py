"""Evaluation: benchmark-compatible scoring of answers (scoring.py), the MMAR challenge's
trace score (trace_rubric.py) and predictions in each benchmark's official format
(benchmark_exports.py). Pure functions over stored results; imports nothing of the
service but core.
"""
