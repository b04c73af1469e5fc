"""Benchmarks for scheduler-core, run against real processes: `python -m benchmarks --help`.

Not part of the installed distribution: run them from a checkout, in the project's
virtualenv. Each benchmark is a subcommand registered in `benchmarks.__main__`.
"""
