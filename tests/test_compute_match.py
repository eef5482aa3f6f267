"""Compute matching (METHODS.md "Compute matching"): C, the images an arm's compute buys, over-budget arms."""

from __future__ import annotations

import pytest

from thresher.compute_match import ComputeUnit
from thresher.errors import ThresherError
from thresher.scoring.cost import train_flops_per_image


def test_an_arm_trains_on_what_its_level_leaves_after_scoring():
    unit = ComputeUnit("small-cnn", 16, "supervised", epochs=8, n_pool=1000)
    per = train_flops_per_image("small-cnn", 16)
    assert unit.flops == pytest.approx(8 * 1000 * per)
    # (c - s) x E / f epochs of a subset of fraction f: c = 0.5, s = 0.1 C, f = 0.1 -> 32 epochs of 100 images
    assert unit.arm_images(0.5, 0.1 * unit.flops, 16, "supervised", batch=64) == 3200
    assert unit.arm_images(0.5, 0.5 * unit.flops, 16, "supervised", batch=64) is None  # scoring spent it all
    assert unit.arm_images(0.5, 0.49999 * unit.flops, 16, "supervised", batch=64) is None  # less than one batch left
    # at half the resolution an image costs about a quarter: the same compute buys about 4x the images
    low = unit.arm_images(0.5, 0.0, 8, "supervised", batch=64)
    assert 3.5 * 4000 < low < 4.5 * 4000


def test_the_whole_pool_at_c_trains_c_times_its_epochs():
    unit = ComputeUnit("small-cnn", 16, "supervised", epochs=8, n_pool=1000)

    def length(c, objective="supervised", schedule="full"):
        return unit.whole_pool_length(c, 16, objective, schedule, batch=64)

    assert length(1.0) == {"epochs": 8}  # C itself: the study's own run
    assert length(0.25) == {"epochs": 2}
    assert length(0.3) == {"images": 2400}  # 2.4 epochs: an image budget
    assert length(1.0, schedule="drop-and-pick") == {"images": 8000}  # its short epochs: matched on images
    two_views = length(1.0, "simclr")  # two views and a projector per image: fewer images
    assert 8000 * 0.4 < two_views["images"] < 8000 * 0.6
    with pytest.raises(ThresherError, match="buys the whole pool 40 training images, less than one batch of 64"):
        length(0.005)


def test_flops_per_image_count_every_view():
    sup, simclr = train_flops_per_image("small-cnn", 16), train_flops_per_image("small-cnn", 16, "simclr")
    assert 1.9 * sup < simclr < 2.2 * sup  # two augmented views through backbone and projector
