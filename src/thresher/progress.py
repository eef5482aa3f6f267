"""Progress bars (images/s and ETA) on a terminal, silent in logs and CI."""

from __future__ import annotations

import sys

from tqdm import tqdm


def progress_bar(total: int, desc: str, *, enabled: bool = True, initial: int = 0, unit: str = "img") -> tqdm:
    """A tqdm bar counting ``unit``s; disabled when ``enabled`` is False or stderr is not a terminal."""
    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit=unit,
        unit_scale=unit == "B",  # bytes read best as kB/MB
        dynamic_ncols=True,
        disable=(not enabled) or not sys.stderr.isatty(),
        smoothing=0.1,
        leave=False,
    )
