"""The planner's budget units (issue 19): C, images processed, wall-clock hours; all become training FLOPs."""

from __future__ import annotations

import pytest

from thresher.compute_match import ComputeUnit
from thresher.errors import ThresherError
from thresher.plan.budget import Budget

UNIT = ComputeUnit("small-cnn", 16, "supervised", epochs=8, n_pool=1000)  # C = 8,000 images at 16 px


@pytest.mark.parametrize(
    ("text", "value", "unit"),
    [("0.5", 0.5, "C"), (0.5, 0.5, "C"), ("0.5C", 0.5, "C"), ("2e6images", 2e6, "images"), ("4000 img", 4000, "images"),
     ("3h", 3, "hours"), ("90min", 1.5, "hours"), ("1.5 hours", 1.5, "hours")],
)  # fmt: skip
def test_budgets_parse_in_three_units(text, value, unit):
    b = Budget.parse(text)
    assert (b.value, b.unit) == (pytest.approx(value), unit)


def test_every_unit_becomes_the_same_flops():
    per_image = UNIT.per_image(16, "supervised")
    assert Budget.parse("0.5C").in_c(UNIT) == pytest.approx(0.5)
    assert Budget.parse("4000images").flops(UNIT) == pytest.approx(4000 * per_image)
    assert Budget.parse("4000images").in_c(UNIT) == pytest.approx(0.5)  # half of C's 8,000 images
    # an hour at 2.2 images per second is 7,920 images: just under C
    assert Budget.parse("1h").in_c(UNIT, images_per_second=2.2) == pytest.approx(7920 / 8000)
    with pytest.raises(ThresherError, match="needs this machine's training speed"):
        Budget.parse("1h").flops(UNIT)


@pytest.mark.parametrize("text", ["", "C", "-1C", "0", "5 parsecs", "1e3 images please", True])
def test_bad_budgets_are_one_line_errors(text):
    with pytest.raises(ThresherError, match="budget"):
        Budget.parse(text)
