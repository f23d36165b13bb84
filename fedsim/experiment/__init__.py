"""Experiments: the scenario schema, the run setup, one run (math <-> engine -> records), sweeps, results on
disk and the trade-off plots."""
