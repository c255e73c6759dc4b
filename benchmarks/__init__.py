"""Benchmarks: `python -m benchmarks NAME --json` prints figures measured in one run.

They report numbers (medians, percentiles, ratios), never pass or fail: machines are
noisy, so targets are judged by reading the figures, not by timed assertions in tests.
"""
