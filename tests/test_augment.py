"""The paper's training augmentation: boxes follow the pixels, crops and flips behave."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.augment import PAPER_SCALES, AugmentParams, TrainAugment, flip_boxes


def _paint(height: int, width: int, boxes: np.ndarray) -> np.ndarray:
    """Black image with each (integer) box filled white."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    for x1, y1, x2, y2 in boxes.astype(int):
        image[y1:y2, x1:x2] = 255
    return image


def _white_extent(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Bounding box (continuous coords) of pixels > 127 inside a window around ``box``."""
    x1, y1, x2, y2 = box
    pad = 4
    xa, ya = max(int(x1) - pad, 0), max(int(y1) - pad, 0)
    xb = min(int(np.ceil(x2)) + pad, image.shape[1])
    yb = min(int(np.ceil(y2)) + pad, image.shape[0])
    mask = image[ya:yb, xa:xb, 0] > 127
    ys, xs = np.nonzero(mask)
    return np.array([xs.min() + xa, ys.min() + ya, xs.max() + 1 + xa, ys.max() + 1 + ya], float)


def test_paper_scales_are_quarter_steps_to_two():
    assert PAPER_SCALES == (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)


def test_sample_draws_every_scale_and_respects_max_side():
    aug = TrainAugment(max_side=300)
    rng = np.random.default_rng(0)
    seen = set()
    flips = 0
    for _ in range(400):
        p = aug.sample(480, 640, rng)
        seen.add(p.scale)
        flips += p.flip
        h, w = p.out_hw
        assert h <= 300 and w <= 300
        x0, y0, cw, ch = p.crop
        rh, rw = p.resized_hw
        assert 0 <= x0 <= rw - cw and 0 <= y0 <= rh - ch
        assert (rh, rw) == (round(480 * p.scale), round(640 * p.scale))
    assert seen == set(PAPER_SCALES)
    assert 150 < flips < 250  # p = 1/2


@pytest.mark.parametrize("seed", range(12))
def test_boxes_follow_the_pixels(seed):
    """Fully visible painted boxes land where apply_to_boxes says, for every scale/crop."""
    rng = np.random.default_rng(seed)
    height, width = 240, 320
    boxes = np.array([[40, 30, 100, 90], [200, 120, 280, 200], [150, 20, 190, 70]], float)
    image = _paint(height, width, boxes)
    aug = TrainAugment(max_side=256)
    params = aug.sample(height, width, rng)
    out = aug.apply_to_image(params, image)
    assert out.shape[:2] == params.out_hw
    moved, ignore = aug.apply_to_boxes(params, boxes, np.zeros(3, bool))
    sx, sy = params.factors
    for box, ign in zip(moved, ignore, strict=True):
        full = np.array([box[2] - box[0], box[3] - box[1]])
        # Only check faces fully inside the crop (clipped ones end at the border anyway).
        if ign or full[0] < 3 or full[1] < 3:
            continue
        expected = box
        inside = (expected[0] > 1 and expected[1] > 1 and expected[2] < out.shape[1] - 1
                  and expected[3] < out.shape[0] - 1)
        if not inside:
            continue
        got = _white_extent(out, expected)
        np.testing.assert_allclose(got, expected, atol=1.0 + 0.5 * max(sx, sy))


def test_reduced_resolution_source_gives_same_geometry():
    aug = TrainAugment(max_side=1200, scale_choices=(0.5,), flip=False)
    boxes = np.array([[40, 40, 120, 120]], float)
    image = _paint(200, 300, boxes)
    params = aug.sample(200, 300, np.random.default_rng(1))
    full = aug.apply_to_image(params, image)
    half = aug.apply_to_image(params, image[::2, ::2])
    assert full.shape == half.shape == (100, 150, 3)
    np.testing.assert_allclose(_white_extent(half, np.array([20, 20, 60, 60])), [20, 20, 60, 60],
                               atol=1.0)


def test_flip_twice_is_identity():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    boxes = np.array([[1.5, 2.0, 10.0, 20.0], [30.0, 5.0, 53.0, 37.0]], np.float32)
    params = AugmentParams((37, 53), 1.0, (37, 53), (0, 0, 53, 37), True)
    aug = TrainAugment()
    once = aug.apply_to_image(params, image)
    np.testing.assert_array_equal(once, image[:, ::-1])
    np.testing.assert_array_equal(aug.apply_to_image(params, once), image)
    b1, i1 = aug.apply_to_boxes(params, boxes, np.zeros(2, bool))
    np.testing.assert_allclose(b1, [[43.0, 2.0, 51.5, 20.0], [0.0, 5.0, 23.0, 37.0]])
    b2, _ = aug.apply_to_boxes(params, b1, i1)
    np.testing.assert_allclose(b2, boxes)


def test_faces_cut_by_the_crop_hand_computed():
    # Scale 1, crop x in [100, 200), y in [0, 100); no flip.
    params = AugmentParams((100, 300), 1.0, (100, 300), (100, 0, 100, 100), False)
    boxes = np.array(
        [
            [120, 10, 140, 30],   # inside: kept as is
            [90, 10, 110, 30],    # half inside (50%): kept, clipped
            [92, 10, 108, 30],    # 8/16 = 50% inside: kept
            [94, 10, 106, 30],    # 6/12 = 50%: kept
            [95, 10, 105, 30],    # 5/10 = 50%: kept
            [96, 40, 104, 60],    # 4/8: kept
            [80, 40, 110, 60],    # 10/30 inside: becomes ignore
            [10, 10, 50, 50],     # outside: dropped
            [150, 50, 160, 60],   # inside but already ignored: stays ignored
        ],
        float,
    )
    ignore = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1], bool)
    out, out_ignore = TrainAugment(min_visible=0.5).apply_to_boxes(params, boxes, ignore)
    np.testing.assert_allclose(
        out,
        [[20, 10, 40, 30], [0, 10, 10, 30], [0, 10, 8, 30], [0, 10, 6, 30], [0, 10, 5, 30],
         [0, 40, 4, 60], [0, 40, 10, 60], [50, 50, 60, 60]],
    )
    assert out_ignore.tolist() == [False, False, False, False, False, False, True, True]


def test_crop_only_when_needed_and_scale_rounding():
    aug = TrainAugment(max_side=1200, scale_choices=(2.0,))
    p = aug.sample(500, 700, np.random.default_rng(0))
    assert p.resized_hw == (1000, 1400)
    assert p.crop[2:] == (1200, 1000)  # width cropped, height kept whole
    assert p.crop[1] == 0


@settings(max_examples=60, deadline=None)
@given(
    h=st.integers(1, 900), w=st.integers(1, 900), max_side=st.integers(16, 400),
    seed=st.integers(0, 2**32 - 1), n=st.integers(0, 20),
)
def test_boxes_stay_inside_the_output_and_never_gain_area(h, w, max_side, seed, n):
    rng = np.random.default_rng(seed)
    aug = TrainAugment(max_side=max_side)
    params = aug.sample(h, w, rng)
    oh, ow = params.out_hw
    assert 1 <= oh <= max_side and 1 <= ow <= max_side
    xy = rng.uniform(-20, max(h, w) + 20, (n, 2))
    wh = rng.uniform(0.5, 200, (n, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1)
    ignore = rng.random(n) < 0.2
    out, out_ignore = aug.apply_to_boxes(params, boxes, ignore)
    assert out.shape[0] == out_ignore.shape[0] <= n
    assert (out[:, 0] >= 0).all() and (out[:, 2] <= ow + 1e-3).all()
    assert (out[:, 1] >= 0).all() and (out[:, 3] <= oh + 1e-3).all()
    assert (out[:, 2] > out[:, 0]).all() and (out[:, 3] > out[:, 1]).all()


def test_flip_boxes_helper():
    b = np.array([[0.0, 1.0, 4.0, 2.0]])
    np.testing.assert_allclose(flip_boxes(b, 10), [[6.0, 1.0, 10.0, 2.0]])


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        TrainAugment(max_side=0)
    with pytest.raises(ValueError):
        TrainAugment(scale_choices=())
    with pytest.raises(ValueError):
        TrainAugment().apply_to_boxes(
            AugmentParams((10, 10), 1.0, (10, 10), (0, 0, 10, 10), False),
            np.zeros((2, 4)), np.zeros(3, bool),
        )
