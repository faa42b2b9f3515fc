"""linkbroker's benchmarks (issue 7): `python3 -m bench [--quick]`.

Each scenario is measured beside its baselines in the same run and reported as ratios to
them; see docs/performance.md.
"""
