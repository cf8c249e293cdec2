"""Self-check cells: judge a learner's answer against a value measured on this cluster in this run.

``check(answer, expected, …)`` prints ✓ or ✗ with the measured value and returns whether it was right. With
``strict=True`` (what CI sets by running the solutions) a wrong answer raises, so the checks themselves are tested.
"""

from __future__ import annotations

from typing import Any


def check(answer: Any, expected: Any, *, tolerance: float = 0.0, unit: str = "", why: str = "", strict: bool = False,
          unavailable: str = "") -> bool:
    """``expected`` None means this cluster could not measure it: say why (``unavailable``) instead of judging."""
    if expected is None:
        print(f"– Cannot check here: {unavailable or 'the measurement is not available on this cluster'}")
        if strict:
            raise AssertionError(f"nothing measured to check against: {unavailable}")
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
    if ok:
        print(f"✓ Right: measured here {shown}{(' ' + unit) if unit else ''}. {why}".rstrip())
    else:
        print(f"✗ Not quite: you said {answer!r}, this cluster measured {shown}{(' ' + unit) if unit else ''}"
              f"{f' (± {tolerance:g})' if tolerance else ''}. {why}".rstrip())
        if strict:
            raise AssertionError(f"answer {answer!r} != {expected!r}")
    return ok
