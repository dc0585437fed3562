"""Peer tools the benchmarks compare driftline with, run in their own environment (``.venv-peers/``, ``make peers``)."""
