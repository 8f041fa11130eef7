"""ONNX export of a trained checkpoint, and detection through onnxruntime.

:func:`export_onnx` writes the network alone (``GroupSamplingDetector.dense_outputs``): input
``images`` float32 (B, 3, H, W) RGB in [0, 1] with H and W multiples of 32 (batch, height
and width are dynamic), outputs ``logits`` (B, A, 2) and ``deltas`` (B, A, 4). What the
runtime needs besides (design, anchor layout, test settings) travels inside the ONNX file as
the metadata entry ``facebench`` (JSON). Designs with a second stage (Grouped Fast R-CNN) are
refused: their RoI stage is not part of the exported graph.

:class:`OnnxDetector` runs such a file with onnxruntime through exactly the PyTorch test path
of :class:`detector.inference.CheckpointDetector` (pyramid, resizing, padding, box mapping,
merge) and the same post-processing (:func:`detector.model.dense_detections`); only the
network runs in onnxruntime. Inputs are padded to a multiple of 32 with the ImageNet mean,
which is what the PyTorch model's own zero padding after normalisation amounts to.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from detector.anchors import anchors_for, padded_size
from detector.boxes import BoxCoder
from detector.designs import get_design
from detector.inference import DEFAULT_NMS_IOU, CheckpointDetector
from detector.model import IMAGENET_MEAN, dense_detections
from facebench.errors import FacebenchError

METADATA_KEY = "facebench"
FORMAT = "facebench-onnx"
OPSET = 17
INPUT_NAME = "images"
OUTPUT_NAMES = ("logits", "deltas")


class _DenseNetwork(nn.Module):
    """What is exported: images -> (logits, deltas)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.dense_outputs(images)


def export_onnx(checkpoint: str | Path, out: str | Path, opset: int = OPSET) -> dict[str, Any]:
    """Export ``checkpoint`` (file or run folder) to ``out`` (written atomically); returns the
    metadata stored in the file."""
    try:
        import onnx
    except ImportError:
        raise FacebenchError(
            "ONNX export needs the onnx package: pip install 'facebench[onnx]'"
        ) from None
    from detector.checkpoint import load_checkpoint

    det = CheckpointDetector(str(checkpoint))
    model = det.model
    if model.second_stage is not None:
        raise FacebenchError(
            f"{det.checkpoint}: design {det.design!r} has a second stage (Grouped Fast R-CNN), "
            "which the ONNX export does not include; export a single-stage design"
        )
    state = load_checkpoint(det.checkpoint)
    meta = {
        "format": FORMAT,
        "version": 1,
        "design": det.design,
        "overrides": dict(state.get("overrides") or {}),
        "backbone": det.backbone,
        "checkpoint": det.checkpoint,
        "iteration": det.iteration,
        "input": "images float32 (B, 3, H, W) RGB in [0, 1]; H, W multiples of 32, padded "
        "with the ImageNet mean",
        "outputs": {"logits": "(B, A, 2) background/face", "deltas": "(B, A, 4) box deltas"},
        "pre_nms_top_n": int(model.pre_nms_top_n),
        "opset": opset,
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.rand(1, 3, 64, 64)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings():
            # The model pads to a multiple of 32 in Python; the trace drops that branch (the
            # runtime pads before the graph instead), which the tracer warns about.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            # The TorchScript exporter (dynamo=False) needs only the onnx package; the
            # torch.export one would add onnxscript. It warns that it is the legacy path.
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                _DenseNetwork(model).eval(),
                (dummy,),
                tmp,
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                dynamic_axes={
                    INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                    "logits": {0: "batch", 1: "anchors"},
                    "deltas": {0: "batch", 1: "anchors"},
                },
                opset_version=opset,
                dynamo=False,
            )
        proto = onnx.load(tmp)
        entry = proto.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, json.dumps(meta)
        onnx.save(proto, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return meta


def _session(path: Path, threads: int | None):
    try:
        import onnxruntime as ort
    except ImportError:
        raise FacebenchError("--onnx needs onnxruntime: pip install 'facebench[onnx]'") from None
    options = ort.SessionOptions()
    # Idle ORT threads would otherwise spin and slow the torch post-processing between runs.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FacebenchError(f"{path}: not a loadable ONNX model: {first}") from None


class OnnxDenseModel:
    """The exported network in onnxruntime, with the model interface the test path uses
    (``mean``, ``dense_outputs``, ``postprocess`` and the post-processing settings)."""

    second_stage = None

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FacebenchError(f"{self.path}: ONNX file not found")
        self.session = _session(self.path, threads)
        raw = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        if raw is None:
            raise FacebenchError(
                f"{self.path}: no facebench metadata (export it with `facebench export onnx`)"
            )
        self.meta = json.loads(raw)
        self.design = get_design(self.meta["design"], **self.meta.get("overrides", {}))
        self.mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        self.coder = BoxCoder()
        self.score_thresh = 0.01
        self.nms_iou = DEFAULT_NMS_IOU
        self.pre_nms_top_n = int(self.meta.get("pre_nms_top_n", 5000))
        self.max_detections = 1000
        self.nms_per_scale = False
        self._anchor_cache: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def dense_outputs(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, deltas) of the network, run in onnxruntime."""
        h, w = images.shape[-2:]
        ph, pw = padded_size(h, w)
        if (ph, pw) != (h, w):
            batch = self.mean.expand(images.shape[0], 3, ph, pw).clone()
            batch[:, :, :h, :w] = images
            images = batch
        x = np.ascontiguousarray(images.cpu().numpy(), dtype=np.float32)
        logits, deltas = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: x})
        return torch.from_numpy(logits), torch.from_numpy(deltas)

    def postprocess(self, logits: torch.Tensor, deltas: torch.Tensor, size) -> list[dict]:
        """Exactly the PyTorch model's post-processing (:func:`dense_detections`)."""
        key = (int(size[0]), int(size[1]))
        if key not in self._anchor_cache:
            self._anchor_cache = {key: anchors_for(self.design, *key)}
        anchors, scale_ids = self._anchor_cache[key]
        return dense_detections(
            logits, deltas, anchors, scale_ids, size, self.coder,
            num_scales=self.design.num_scales, score_thresh=self.score_thresh,
            pre_nms_top_n=self.pre_nms_top_n, nms_iou=self.nms_iou,
            max_det=self.max_detections, per_scale=self.nms_per_scale,
        )  # fmt: skip


class OnnxDetector(CheckpointDetector):
    """:class:`CheckpointDetector` with the network in onnxruntime (CPU); same options, same
    output, ``device`` is always CPU."""

    def __init__(
        self,
        onnx_path: str | Path,
        scales: Sequence[float] = (1.0,),
        max_side: int = 3000,
        max_pixels: int | None = None,
        nms_iou: float = DEFAULT_NMS_IOU,
        score_thresh: float = 0.01,
        max_detections: int = 1000,
        batch_size: int = 1,
        nms_per_scale: bool = False,
        pre_nms_top_n: int | None = None,
        threads: int | None = None,
    ) -> None:
        model = OnnxDenseModel(onnx_path, threads)
        meta = model.meta
        self.onnx_path = str(Path(onnx_path).resolve())
        self.checkpoint = str(meta.get("checkpoint"))
        self.design = str(meta["design"])
        self.backbone = str(meta["backbone"])
        self.iteration = int(meta.get("iteration", 0))
        self.device = torch.device("cpu")
        self._configure(
            model, scales, max_side, max_pixels, nms_iou, score_thresh, max_detections,
            batch_size, nms_per_scale, pre_nms_top_n,
        )  # fmt: skip
        self.name = f"{self.design}/{self.backbone}@{Path(onnx_path).name}"

    def protocol(self) -> dict:
        import onnxruntime

        record = super().protocol()
        record.update(
            detector="facebench-onnx",
            onnx=self.onnx_path,
            runtime=f"onnxruntime {onnxruntime.__version__} (CPUExecutionProvider)",
        )
        return record
