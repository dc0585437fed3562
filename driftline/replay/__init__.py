"""Replay: a seeded synthetic stream, and the backtest that runs history through the loop's own rules."""
