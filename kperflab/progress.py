"""Whether anyone is watching: progress bars and live widgets for people, nothing for batch runs.

``KPERFLAB_HEADLESS=1`` (set by `kperflab workshop` and the test suite) says nobody watches: tqdm bars would become
ipywidgets in papermill's kernel, stored in the executed notebook as widget state that shows nothing later.
"""

from __future__ import annotations

import os


def headless() -> bool:
    return os.environ.get("KPERFLAB_HEADLESS", "") not in ("", "0", "false")


def quiet(progress: bool = True) -> bool:
    """tqdm's ``disable``: no bar when the caller asked for none or nobody watches."""
    return not progress or headless()
