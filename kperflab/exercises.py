"""Self-check cells: judge a learner's answer against a value measured on this cluster in this run.

``check(answer, expected, …)`` prints ✓ or ✗ with the measured value and returns whether it was right. ``expected``
must come from a measurement independent of the way the answer is computed (kubectl's printed value, the kernel's own
counter, a second reading), so that a wrong answer can fail. With ``strict=True`` (what CI sets by running the
solutions) a wrong or missing answer raises, so the checks themselves are tested. Where this cluster cannot measure
``expected`` the check says why ("–") and judges nothing, strict or not.
"""

from __future__ import annotations

import numbers
from typing import Any


def check(answer: Any, expected: Any, *, tolerance: float = 0.0, unit: str = "", why: str = "", strict: bool = False,
          unavailable: str = "") -> bool:
    """``expected`` None means this cluster could not measure it: say why (``unavailable``) instead of judging.

    >>> check(200, 250 / 1000 * 100_000, unit="µs")
    ✗ Not quite: you said 200, this cluster measured 25,000 µs.
    False
    >>> check(None, None, unavailable="no quota here")
    – Cannot check here: no quota here
    False
    """
    if expected is None:
        print(f"– Cannot check here: {unavailable or 'the measurement is not available on this cluster'}")
        return False
    if answer is None:
        print("✎ Write your answer in the cell above (replace None), run it, then run this cell again.")
        if strict:
            raise AssertionError("no answer given")
        return False
    if isinstance(expected, str):
        ok = str(answer).strip().lower() == expected.strip().lower()
    else:
        try:
            ok = abs(float(answer) - float(expected)) <= tolerance
        except (TypeError, ValueError):
            ok = False
    shown = f"{expected:,.6g}" if isinstance(expected, float) else f"{expected}"
    said = f"{float(answer):,.6g}" if isinstance(answer, numbers.Real) and not isinstance(answer, bool) else repr(answer)
    if ok:
        print(f"✓ Right: measured here {shown}{(' ' + unit) if unit else ''}. {why}".rstrip())
    else:
        print(f"✗ Not quite: you said {said}, this cluster measured {shown}{(' ' + unit) if unit else ''}"
              f"{f' (± {tolerance:g})' if tolerance else ''}. {why}".rstrip())
        if strict:
            raise AssertionError(f"answer {answer!r} != {expected!r}")
    return ok
