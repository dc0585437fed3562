"""The one place whylogs is imported: telemetry off and the numpy 2 shim applied first.

whylogs 1.6.4 posts usage analytics on import unless ``WHYLOGS_NO_ANALYTICS`` is set, and uses
``np.unicode_``, which numpy 2 removed. ``whylogs.viz`` imports IPython; nothing here imports it.
"""

from __future__ import annotations

import os
from functools import cache
from types import ModuleType


@cache
def whylogs() -> ModuleType:
    """Import whylogs safely (once) and return the module."""
    os.environ.setdefault("WHYLOGS_NO_ANALYTICS", "1")
    import numpy as np

    if not hasattr(np, "unicode_"):
        np.unicode_ = np.str_  # removed in numpy 2; whylogs 1.6.4 still refers to it
    import whylogs as why

    return why


def dataset_profile_view_class():
    """``whylogs.core.DatasetProfileView`` (imported safely)."""
    whylogs()
    from whylogs.core import DatasetProfileView

    return DatasetProfileView
