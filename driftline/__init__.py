"""driftline: keeps tabular models healthy in production.

The package's domain modules are pure: they never import Prefect. Only ``driftline.cli`` (the
application shell) imports Prefect; ``driftline.events.prefect_http`` speaks its REST API over plain HTTP for the
shell and the tasks alike. ``flows/`` and ``tasks/`` wrap the domain for orchestration.
"""

from __future__ import annotations

__version__ = "0.1.0"
