"""Soak and throughput runs: real `scheduler` processes on a fresh database against a fast
loopback receiver. `python -m tests.soak --help` says how to run them by hand;
tests/soak/test_soak.py runs a 10,000-task soak per backend in the suite."""
