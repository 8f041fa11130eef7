"""ONNX export and onnxruntime detection agree with the PyTorch checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from cli.app import main
from facebench.errors import FacebenchError

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exported(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    meta = tmp_path_factory.mktemp("onnx") / "meta.json"
    result = CliRunner().invoke(main, [
        "export", "onnx", "--checkpoint", str(tiny_checkpoint), "--out", str(out),
        "--json", str(meta),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(meta.read_text())["design"] == "fpn-finest-sampling"
    return out


def _agree(a: np.ndarray, b: np.ndarray, scale: float) -> None:
    """Same detections: equal counts, and every row of ``a`` has a row of ``b`` with boxes
    within 1e-3 relative (of the image size) and the same score to 1e-5."""
    assert a.shape == b.shape and len(a) > 0
    box_gap = np.abs(a[:, None, :4] - b[None, :, :4]).max(axis=2) / scale
    score_gap = np.abs(a[:, None, 4] - b[None, :, 4])
    ok = (box_gap <= 1e-3) & (score_gap <= 1e-5) & (a[:, None, 5] == b[None, :, 5])
    assert ok.any(axis=1).all() and ok.any(axis=0).all()


@pytest.mark.parametrize(
    "options", [{}, {"scales": (0.5, 1.0, 1.7)}, {"batch_size": 3, "max_detections": 50}]
)
def test_onnx_matches_pytorch(tiny_checkpoint, exported, options):
    from detector.inference import CheckpointDetector
    from detector.onnx_export import OnnxDetector

    rng = np.random.default_rng(7)
    # Sizes that are and are not multiples of 32, portrait and landscape, mixed in a batch.
    shapes = [(64, 64), (77, 131), (200, 90), (96, 160), (33, 250)]
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in shapes]
    torch_dets = CheckpointDetector(str(tiny_checkpoint), **options).detect_batch(images)
    onnx_det = OnnxDetector(exported, threads=1, **options)
    onnx_dets = onnx_det.detect_batch(images)
    for (h, w), a, b in zip(shapes, torch_dets, onnx_dets, strict=True):
        _agree(a, b, max(h, w))
    assert onnx_det.protocol()["detector"] == "facebench-onnx"
    assert set(onnx_det.phase_seconds) == {"preprocess", "forward", "postprocess"}
    assert onnx_det.phase_seconds["forward"] > 0


def test_detect_onnx_gives_the_same_ap_on_synthetic_data(tiny_checkpoint, exported, tmp_path):
    from facebench.synth.generate import generate

    generate(tmp_path / "synth", num_images=12, seed=2, max_side=160, workers=0)
    wider = tmp_path / "synth" / "widerface"
    split = wider / "wider_face_split" / "wider_face_val_bbx_gt.txt"
    common = ["--images", str(wider / "WIDER_val"), "--split", str(split), "--threads", "1"]
    for name, model in (("pt", ["--checkpoint", str(tiny_checkpoint)]),
                        ("onnx", ["--onnx", str(exported)])):  # fmt: skip
        result = CliRunner().invoke(
            main, ["detect", *model, *common, "--out", str(tmp_path / name)]
        )
        assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "onnx" / "protocol.json").read_text())
    assert record["detector_protocol"]["runtime"].startswith("onnxruntime")
    assert set(record["run"]["phase_cpu_ms_per_image"]) == {"preprocess", "forward", "postprocess"}
    result = CliRunner().invoke(main, [
        "eval", "wider", str(tmp_path / "pt"), str(tmp_path / "onnx"), "--gt",
        str(wider / "ground_truth"), "--json", "-",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    methods = json.loads(result.stdout)["methods"]
    assert methods["pt"]["predictions"] == methods["onnx"]["predictions"] > 0
    for s in ("medium", "hard", "all"):
        assert methods["onnx"][s] == pytest.approx(methods["pt"][s], abs=1e-6)


def test_export_refuses_second_stage_and_bad_files(tmp_path):
    from detector.checkpoint import checkpoint_name, save_checkpoint
    from detector.model import build_detector
    from detector.onnx_export import OnnxDetector, export_onnx

    design = "fpn-finest-sampling-frcnn"
    model = build_detector(design, backbone="tiny")
    path = tmp_path / checkpoint_name(1)
    save_checkpoint(path, {
        "format": "facebench-checkpoint", "version": 1, "design": design, "backbone": "tiny",
        "overrides": {}, "config": {}, "model": model.state_dict(), "iteration": 1, "epoch": 0,
        "rng": [],
    })  # fmt: skip
    with pytest.raises(FacebenchError, match="second stage"):
        export_onnx(path, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(FacebenchError, match=r"bad\.onnx: not a loadable ONNX model"):
        OnnxDetector(tmp_path / "bad.onnx")
    result = CliRunner().invoke(main, [
        "detect", "--onnx", str(tmp_path / "bad.onnx"), "--checkpoint", str(path),
        "--images", str(tmp_path), "--out", str(tmp_path / "o"),
    ])  # fmt: skip
    assert result.exit_code == 2 and "give only one" in result.output


def test_bench_onnx_reports_phases_for_both_runtimes(shared_data, tiny_checkpoint, tmp_path):
    faces = shared_data / "dlib_faces" / "examples" / "faces"
    args = ["bench", "--dlib", str(faces / "testing.xml"), "--detectors", "haar",
            "--checkpoint", str(tiny_checkpoint), "--onnx", "--out", str(tmp_path / "b"),
            "--json", str(tmp_path / "r.json")]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    rows = {r["detector"]: r for r in json.loads((tmp_path / "r.json").read_text())["results"]}
    assert set(rows) == {"haar", "facebench", "facebench-onnx"}
    assert rows["facebench"]["ap"] == rows["facebench-onnx"]["ap"]
    assert rows["haar"]["phase_cpu_ms_per_image"] is None
    for name in ("facebench", "facebench-onnx"):
        phases = rows[name]["phase_cpu_ms_per_image"]
        assert set(phases) == {"preprocess", "forward", "postprocess"} and phases["forward"] > 0
    text = (tmp_path / "b" / "leaderboard.md").read_text()
    assert "CPU ms/image by phase" in text and "| facebench-onnx |" in text
    missing = CliRunner().invoke(main, ["bench", "--dlib", str(faces / "testing.xml"), "--onnx",
                                        "--out", str(tmp_path / "c")])  # fmt: skip
    assert missing.exit_code == 2 and "give --checkpoint too" in missing.output
