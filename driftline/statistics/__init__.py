"""Statistics: drift between profiles, metrics, and the sequential tests (shadow, guard, performance)."""
