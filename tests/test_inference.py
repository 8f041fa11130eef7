"""CheckpointDetector and the chunked NMS merge."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from nms_reference import greedy_nms
from torchvision.ops import batched_nms

from detector.inference import CheckpointDetector, chunked_nms, level_factor
from facebench.errors import FacebenchError


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    image[h // 4 : h // 2, w // 4 : w // 2] = 230
    return image


def _raw_model(det: CheckpointDetector, image: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        out = det.model(x)[0]
    return torch.cat([out["boxes"], out["scores"][:, None], out["scale_ids"][:, None].float()],
                     dim=1).numpy()


@settings(max_examples=25, deadline=None)
@given(n=st.integers(0, 600), chunk=st.integers(1, 300), keep=st.integers(1, 700),
       iou=st.floats(0.1, 0.9), seed=st.integers(0, 10_000), groups=st.integers(1, 4))
def test_chunked_nms_equals_batched_nms(n, chunk, keep, iou, seed, groups):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand((n, 2), generator=g) * 200
    wh = torch.rand((n, 2), generator=g) * 60 + 1
    boxes = torch.cat([xy, xy + wh], dim=1)
    # Distinct scores: with ties the visiting order (and so the result) is a convention.
    scores = torch.randperm(n, generator=g).float() / max(n, 1)
    idxs = torch.randint(0, groups, (n,), generator=g)
    expected = batched_nms(boxes, scores, idxs, iou)[:keep]
    got = chunked_nms(boxes, scores, idxs, iou, keep, chunk=chunk)
    assert torch.equal(got, expected)


def test_level_factor_caps():
    assert level_factor(100, 200, 1.0, 3000, None) == 1.0
    assert level_factor(100, 200, 2.0, 300, None) == pytest.approx(1.5)  # side cap
    assert level_factor(1000, 1000, 1.0, 3000, 250_000) == pytest.approx(0.5)  # pixel budget
    assert level_factor(1000, 2000, 0.25, 3000, 250_000) == 0.25  # already within both


def test_single_scale_matches_the_model(tiny_checkpoint):
    det = CheckpointDetector(str(tiny_checkpoint), nms_iou=0.3, score_thresh=0.05)
    image = _image(96, 128)
    (got,) = det.detect_batch([image])
    assert got.dtype == np.float32 and got.shape[1] == 6 and len(got) > 0
    expected = _raw_model(det, image)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    assert (np.diff(got[:, 4]) <= 0).all()
    assert det.name and "tiny" in det.name


def test_pyramid_level_maps_boxes_back(tiny_checkpoint):
    image = _image(96, 160, seed=1)
    det = CheckpointDetector(str(tiny_checkpoint), scales=(0.5,), score_thresh=0.05)
    (got,) = det.detect_batch([image])
    small = cv2.resize(image, (80, 48), interpolation=cv2.INTER_AREA)
    expected = _raw_model(det, small)
    expected[:, :4] *= 2.0
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)


def test_multi_scale_merge_and_caps(tiny_checkpoint):
    images = [_image(64, 96, seed=2), _image(120, 80, seed=3)]
    det = CheckpointDetector(str(tiny_checkpoint), scales=(0.5, 1.0, 2.0), max_side=160,
                             max_pixels=120 * 120, score_thresh=0.05, max_detections=1000,
                             batch_size=2)
    results = det.detect_batch(images)
    for image, dets in zip(images, results, strict=True):
        h, w = image.shape[:2]
        assert len(dets) <= 1000
        assert (dets[:, 0] >= 0).all() and (dets[:, 2] <= w + 1e-3).all()
        assert (dets[:, 1] >= 0).all() and (dets[:, 3] <= h + 1e-3).all()
        assert set(np.unique(dets[:, 5])) <= {0.0, 1.0, 2.0, 3.0}
        assert (np.diff(dets[:, 4]) <= 0).all()
        # After the merge no two kept boxes overlap more than the NMS threshold.
        iou = _iou(dets[:, :4], dets[:, :4])
        np.fill_diagonal(iou, 0)
        assert iou.max(initial=0) <= det.nms_iou + 1e-5
    # Independent expectation: each level run alone, then greedy NMS over their union (one
    # image per batch: padding a mixed batch clips boxes, which changes the level's NMS).
    options = dict(max_side=160, max_pixels=120 * 120, score_thresh=0.05, max_detections=1000)
    merged = CheckpointDetector(str(tiny_checkpoint), scales=det.scales, **options)
    levels = [CheckpointDetector(str(tiny_checkpoint), scales=(s,), **options).detect_batch(images)
              for s in det.scales]
    for i, dets in enumerate(merged.detect_batch(images)):
        union = np.concatenate([level[i] for level in levels])
        expected = union[greedy_nms(union[:, :4], union[:, 4], None, det.nms_iou)][:1000]
        np.testing.assert_allclose(dets, expected, rtol=1e-6, atol=1e-4)
        # Every level contributes: a merge that kept one level would differ.
        assert all(_shares_a_row(dets, level[i]) for level in levels)
    few = CheckpointDetector(str(tiny_checkpoint), scales=(1.0, 2.0), score_thresh=0.05,
                             max_detections=5)
    assert all(len(d) <= 5 for d in few.detect_batch(images))
    protocol = det.protocol()
    assert protocol["scales"] == [0.5, 1.0, 2.0] and protocol["max_side"] == 160
    assert protocol["max_pixels"] == 14400 and protocol["nms_iou"] == 0.3
    assert protocol["design"] == "fpn-finest-sampling" and protocol["device"] == "cpu"
    assert protocol["checkpoint"].endswith(tiny_checkpoint.name)


def test_per_scale_nms_keeps_sub_detectors_apart(tiny_checkpoint):
    image = _image(96, 96, seed=4)
    det = CheckpointDetector(str(tiny_checkpoint), score_thresh=0.05, nms_per_scale=True)
    (dets,) = det.detect_batch([image])
    # Independent expectation: all candidates (IoU threshold 1 suppresses nothing), then
    # greedy NMS within each scale id only.
    raw = CheckpointDetector(str(tiny_checkpoint), score_thresh=0.05, nms_iou=1.0,
                             max_detections=10**6)
    (cand,) = raw.detect_batch([image])
    expected = cand[greedy_nms(cand[:, :4], cand[:, 4], cand[:, 5], 0.3)][:1000]
    np.testing.assert_allclose(dets, expected, rtol=1e-6, atol=1e-4)
    # Boxes of different scales overlap in the output: NMS across scales would remove them.
    iou = _iou(dets[:, :4], dets[:, :4])
    assert (iou[dets[:, 5][:, None] != dets[:, 5][None, :]] > 0.3).any()


def test_bad_checkpoints_and_inputs(tiny_checkpoint, tmp_path):
    cut = tmp_path / "cut.pt"
    cut.write_bytes(tiny_checkpoint.read_bytes()[:1000])
    with pytest.raises(FacebenchError, match=r"cut\.pt: not a readable checkpoint"):
        CheckpointDetector(str(cut))
    with pytest.raises(FacebenchError, match="checkpoint file not found"):
        CheckpointDetector(str(tmp_path / "none.pt"))
    det = CheckpointDetector(str(tiny_checkpoint))
    with pytest.raises(FacebenchError, match="uint8"):
        det.detect_batch([np.zeros((10, 10, 3), np.float32)])
    with pytest.raises(FacebenchError, match="scales"):
        CheckpointDetector(str(tiny_checkpoint), scales=())


def test_run_folder_resolves_to_its_newest_checkpoint(tiny_checkpoint):
    det = CheckpointDetector(str(tiny_checkpoint.parent))
    assert det.checkpoint.endswith(tiny_checkpoint.name)


def _shares_a_row(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether some row of ``a`` equals some row of ``b`` (to 1e-4)."""
    return bool((np.abs(a[:, None, :] - b[None, :, :]).max(axis=2) < 1e-4).any())


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from torchvision.ops import box_iou

    return box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy()
