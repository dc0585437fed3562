from __future__ import annotations

import os

# Telemetry off for every library the tests import, before any of them is imported.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("WHYLOGS_NO_ANALYTICS", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
