"""A planner's budget (issue 19), in one of three units: C (one whole-pool pre-training at the plan's settings),
images processed, or wall-clock hours on this machine (its speed measured by a short calibration run). Whatever the
unit, the plan works in FLOPs as the training loop counts them, so every arm and pilot is charged alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from ..compute_match import ComputeUnit
from ..errors import ThresherError

UNITS = {"c": "C", "images": "images", "image": "images", "img": "images", "h": "hours", "hours": "hours",
         "hour": "hours", "min": "minutes", "minutes": "minutes"}  # fmt: skip
_FORM = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Budget:
    """``value`` in ``unit``: C, images (processed at the plan's own resolution and objective), or hours."""

    value: float
    unit: Literal["C", "images", "hours"]

    @classmethod
    def parse(cls, text: str | float) -> Budget:
        """``0.5`` or ``0.5C`` (units of C), ``2e6images``, ``3h`` or ``90min`` (wall-clock on this machine)."""
        if isinstance(text, int | float) and not isinstance(text, bool):
            text = f"{text}C"
        m = _FORM.match(str(text))
        unit = UNITS.get((m.group(2) or "c").lower()) if m else None
        if not m or unit is None:
            raise ThresherError(
                f"budget {text!r}: give a number with a unit: 0.5C (one whole-pool pre-training = 1C), 2e6images, "
                "3h or 90min"
            )
        value = float(m.group(1))
        if value <= 0:
            raise ThresherError(f"budget {text!r} must be positive")
        if unit == "minutes":
            return cls(value / 60, "hours")
        return cls(value, unit)  # type: ignore[arg-type]

    def flops(self, unit: ComputeUnit, images_per_second: float | None = None) -> float:
        """The budget in training FLOPs; hours need the machine's measured training speed (images per second at
        the unit's own resolution and objective)."""
        per_image = unit.per_image(unit.resolution, unit.objective)
        if self.unit == "C":
            return self.value * unit.flops
        if self.unit == "images":
            return self.value * per_image
        if not images_per_second or images_per_second <= 0:
            raise ThresherError("a budget in hours needs this machine's training speed: run the calibration first")
        return self.value * 3600 * images_per_second * per_image

    def in_c(self, unit: ComputeUnit, images_per_second: float | None = None) -> float:
        return self.flops(unit, images_per_second) / unit.flops

    def __str__(self) -> str:
        return f"{self.value:g} {self.unit}"
