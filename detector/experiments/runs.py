"""One (design, seed) run of the ablation: train -> detect -> WIDER AP, resumable.

Folder ``<runs>/<design>/seed<k>-<train key[:12]>/``:

* ``train/``: the ``facebench train`` run (checkpoints, metrics.jsonl, model_final.pt);
* ``detections/wider`` (all sub-detectors merged) and ``detections/wider@16`` ...
  ``wider@128`` (one sub-detector each; the paper's @16..@128 outputs), WIDER layout, each
  with ``protocol.json``;
* ``result-<run key[:12]>.json``, written last (atomically): the run key, configuration,
  training summary and AP values. Its presence with a matching key marks the run finished;
  it is then reused. A new test protocol reuses the training and redoes detection.

A killed run resumes from its newest training checkpoint (the training loop's exact resume);
detection and evaluation are simply redone. A lock file keeps two processes from working on
the same run.

Detection. The checkpoint runs once per pyramid level with NMS inside each anchor scale, so
every sub-detector keeps its own boxes (the per-scale outputs); the merged output is
:func:`detector.merge.merge_scales` of those boxes (greedy NMS at the same IoU across the
scales, top ``max_detections``), the same merge as ``facebench detect --per-scale``.
Evaluation is the official WIDER protocol: Easy/Medium/Hard/All on the merged output, All on
each sub-detector's output.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from detector.experiments.protocol import AblationProtocol
from facebench.atomic import write_json
from facebench.errors import FacebenchError

SETTINGS = ("easy", "medium", "hard", "all")


@dataclass(frozen=True)
class DataSet:
    """A WIDER-layout data set: training split and the validation images + ground truth."""

    root: Path  # the WIDER root (holds WIDER_val/, wider_face_split/, ground_truth/)
    data_arg: Path  # what ``facebench train --data`` takes (synthetic folder or WIDER root)
    fingerprint: str

    @property
    def val_images(self) -> Path:
        return self.root / "WIDER_val"

    @property
    def train_split(self) -> Path:
        return self.root / "wider_face_split" / "wider_face_train_bbx_gt.txt"

    @property
    def val_split(self) -> Path:
        return self.root / "wider_face_split" / "wider_face_val_bbx_gt.txt"

    @property
    def ground_truth(self) -> Path:
        return self.root / "ground_truth"


@dataclass(frozen=True)
class RunSpec:
    """Which run: a design name, a seed, the protocol and the data."""

    design: str
    seed: int
    protocol: AblationProtocol
    data: DataSet

    @property
    def key(self) -> str:
        return self.protocol.run_key(self.design, self.seed, self.data.fingerprint)

    @property
    def train_key(self) -> str:
        return self.protocol.train_key(self.design, self.seed, self.data.fingerprint)

    def folder(self, runs_root: Path) -> Path:
        return runs_root / self.design / f"seed{self.seed}-{self.train_key[:12]}"

    def result_path(self, runs_root: Path) -> Path:
        return self.folder(runs_root) / f"result-{self.key[:12]}.json"


def finished_result(spec: RunSpec, runs_root: Path) -> dict | None:
    """The stored result of ``spec`` if that run finished with the same key, else None."""
    import json

    path = spec.result_path(runs_root)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if record.get("key") == spec.key else None


def older_code_result(spec: RunSpec, runs_root: Path) -> dict | None:
    """A finished result of ``spec``'s design, seed, data, recipe and test protocol that an
    older version of the code produced (its key differs only by the code fingerprint), with
    ``"older_code": True``; the newest such record, or None. For reports, never for reuse."""
    import json

    found = []
    for path in (runs_root / spec.design).glob(f"seed{spec.seed}-*/result-*.json"):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        same = (
            record.get("seed") == spec.seed
            and record.get("data_fingerprint") == spec.data.fingerprint
            and record.get("train_recipe") == json.loads(json.dumps(
                spec.protocol.train_recipe()))
            and record.get("test_protocol") == json.loads(json.dumps(
                spec.protocol.test_protocol()))
        )
        if same:
            found.append(record)
    if not found:
        return None
    return {**max(found, key=lambda r: r.get("finished", "")), "older_code": True}


@contextlib.contextmanager
def run_lock(folder: Path, wait_s: float = 30.0) -> Iterator[bool]:
    """Hold an exclusive lock on ``folder/.lock``; yields False if another process still has
    it after ``wait_s`` seconds (a killed run's data-loader workers hold it a moment longer)."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(1.0)
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def execute_run(
    spec: RunSpec,
    runs_root: Path,
    workers: int = 1,
    log: Callable[[str], None] = lambda msg: None,
    train_progress: Callable[[int, int, dict], None] | None = None,
) -> dict | None:
    """Train, detect and evaluate ``spec`` (resuming whatever exists); returns the result
    record (also written to ``result-<key>.json``), or None when another process holds the run."""
    folder = spec.folder(runs_root)
    with run_lock(folder) as mine:
        if not mine:
            log(f"{spec.design} seed {spec.seed}: in progress in another process; skipped")
            return None
        done = finished_result(spec, runs_root)
        if done is not None:
            return done
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        train_result = _train(spec, folder / "train", workers, log, train_progress)
        timings["train"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        det_dir = folder / "detections"
        calibration = _detect(spec, Path(train_result.final_checkpoint), det_dir)
        timings["detect"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        ap = evaluate_outputs(spec.data.ground_truth, det_dir)
        timings["evaluate"] = time.perf_counter() - t0
        record = {
            "key": spec.key,
            "train_key": spec.train_key,
            "design": spec.design,
            "seed": spec.seed,
            "protocol": spec.protocol.name,
            "train_recipe": spec.protocol.train_recipe(),
            "test_protocol": spec.protocol.test_protocol(),
            "data_fingerprint": spec.data.fingerprint,
            "train": {
                "iterations": train_result.iterations,
                "seconds": round(train_result.seconds, 2),
                "images_per_s": round(train_result.images_per_s, 3),
                **logged_losses(Path(train_result.metrics)),
                "resumed_from": train_result.resumed_from,
                "checkpoint": train_result.final_checkpoint,
            },
            "ap": ap,
            "calibration": None if calibration is None else calibration.to_dict(),
            "seconds": {k: round(v, 2) for k, v in timings.items()},
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        write_json(spec.result_path(runs_root), record)
        return record


def _train(spec: RunSpec, out: Path, workers: int, log, progress):
    from detector.checkpoint import list_checkpoints
    from detector.train import TrainConfig, train

    p = spec.protocol
    resume = out.is_dir() and bool(list_checkpoints(out))
    cfg = TrainConfig(
        data=str(spec.data.data_arg), out=str(out), design=spec.design, backbone=p.backbone,
        overrides=p.design_overrides(), iterations=p.iterations, batch_size=p.batch_size,
        lr=p.lr, optimizer=p.optimizer, max_side=p.train_max_side,
        scale_choices=p.scale_choices, flip=p.flip,
        workers=workers, seed=spec.seed, device="auto", amp=p.amp,
        clip_grad_norm=p.clip_grad_norm,
        checkpoint_every=max(p.iterations // 6, 1), keep_checkpoints=1, log_every=10,
        resume=resume,
    )
    if resume:
        log(f"{spec.design} seed {spec.seed}: resuming training from the newest checkpoint")
    return train(cfg, progress=progress, warn=log)


def logged_losses(metrics: Path) -> dict[str, float | None]:
    """First and last logged training loss of a run (from its metrics.jsonl, so a run whose
    training finished in an earlier process reports the same as an uninterrupted one)."""
    import json

    losses = []
    if metrics.is_file():
        for line in metrics.read_text(encoding="utf-8").splitlines():
            # A line cut short by a kill, or one without a loss, is skipped.
            with contextlib.suppress(ValueError, KeyError, TypeError):
                losses.append(float(json.loads(line)["loss"]))
    return {"first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None}


def _detect(spec: RunSpec, checkpoint: Path, out: Path):
    """Per-scale, merged and (when the protocol calibrates) calibrated-merged detections of
    the validation images; returns the fitted calibration or None."""
    from detector.calibration import (
        CalibratedWriter,
        fit_on_wider_split,
        save_calibration,
        sidecar_path,
    )
    from detector.inference import CheckpointDetector
    from detector.merge import MergedWriter
    from facebench import detection

    p = spec.protocol
    device = "cuda" if torch.cuda.is_available() else "cpu"
    det = CheckpointDetector(
        str(checkpoint), device=device, scales=p.test_scales, max_side=p.test_max_side,
        nms_iou=p.nms_iou, score_thresh=p.score_thresh,
        # Each sub-detector may keep up to max_detections boxes of its own.
        max_detections=p.max_detections * 4, nms_per_scale=True,
    )
    items = detection.wider_images(spec.data.val_images, spec.data.val_split)
    scale_names = [str(s) for s in det.model.design.scales]
    merged = MergedWriter(detection.WiderWriter(out / "wider"), p.nms_iou, p.max_detections)
    per_scale = detection.PerScaleWiderWriter(out / "wider", scale_names)
    writers = [merged, per_scale]
    calibration = None
    options = {"merged": "cross-scale greedy NMS of the per-scale detections, "
                         f"IoU {p.nms_iou}, top {p.max_detections}"}
    if p.calibration_images:
        calibration = fit_on_wider_split(
            det, spec.data.root / "WIDER_train", spec.data.train_split, p.calibration_images
        )
        save_calibration(calibration, sidecar_path(checkpoint))
        writers.append(CalibratedWriter(
            MergedWriter(detection.WiderWriter(out / "wider-calibrated"), p.nms_iou,
                         p.max_detections), calibration,
        ))
        options["calibrated"] = (f"per-scale Platt scaling fitted on the first "
                                 f"{p.calibration_images} training images, then the merge")
    stats = detection.run_detection(det, items, writers)
    source = {"kind": "wider", "images": str(spec.data.val_images),
              "split": str(spec.data.val_split)}
    outputs = [w.close() for w in writers]
    record = detection.protocol_record(det, source, outputs, stats, options=options)
    folders = [out / "wider", *(out / f"wider@{s}" for s in scale_names)]
    if calibration is not None:
        folders.append(out / "wider-calibrated")
    for folder in folders:
        detection.write_protocol(folder, record)
    return calibration


def evaluate_outputs(gt_dir: Path, det_dir: Path) -> dict[str, float]:
    """WIDER AP (official protocol): ``easy``/``medium``/``hard``/``all`` of the merged
    output ``det_dir/wider``; ``@<scale>`` (All) and ``@<scale>/<setting>`` (Easy, Medium,
    Hard) of every ``det_dir/wider@<scale>``; ``calibrated/<setting>`` of
    ``det_dir/wider-calibrated`` when it exists."""
    from facebench.evaluation.wider import evaluate_wider
    from facebench.formats.wider import read_eval_gt, read_wider_predictions

    gt = read_eval_gt(gt_dir)
    merged = det_dir / "wider"
    if not merged.is_dir():
        raise FacebenchError(f"{merged}: detections missing")
    ev = evaluate_wider(gt, read_wider_predictions(merged, gt, strict=True))
    ap = {k: float(ev.ap[k]) for k in SETTINGS}
    scales = sorted(
        (int(p.name.partition("@")[2]), p) for p in det_dir.glob("wider@*") if p.is_dir()
    )
    for scale, folder in scales:
        sub = evaluate_wider(gt, read_wider_predictions(folder, gt, strict=True))
        ap[f"@{scale}"] = float(sub.ap["all"])
        for setting in SETTINGS[:3]:
            ap[f"@{scale}/{setting}"] = float(sub.ap[setting])
    calibrated = det_dir / "wider-calibrated"
    if calibrated.is_dir():
        cal = evaluate_wider(gt, read_wider_predictions(calibrated, gt, strict=True))
        for setting in SETTINGS:
            ap[f"calibrated/{setting}"] = float(cal.ap[setting])
    return ap
