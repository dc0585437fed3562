"""The loop: its pure rules, and the steps that load their state, apply them and store the outcome."""
