"""The ablation protocol: everything fixed before any result is seen.

An :class:`AblationProtocol` holds the data set (synthetic parameters when it is generated),
the backbone, the training recipe (identical for every design: iterations, batch, learning
rate, augmentation), the sample budgets (N per group and what it implies for the other
samplers), and the test protocol (pyramid scales, NMS, detection caps). Presets:

* :data:`FULL` (``cpu-full``): the CPU ablation (tiny backbone, 3000 iterations; 5 designs x
  3 seeds in about 40 minutes on 2 idle cores with one torch thread, all 8 in about 65);
* :data:`GPU` (``gpu-resnet50``): ResNet-50 on one GPU (``benchmarks/ablation_gpu.py``);
* :data:`QUICK`: a pipeline check for CI (tiny data, a few iterations; numbers meaningless).

Sample budget. The paper draws N = 2048 samples per scale group on crops of up to 1,200 px
(about 90,000 anchors per scale at stride 4), i.e. ~2.3% of each scale's anchors. Scaling N
by the anchor count of our 320 px crops (:func:`scaled_budget`) gives N = 128; the first CPU
attempt with it (360 iterations) left every design near zero AP (All <= 1.5%, Easy <= 6.3%
for rpn, fpn, fpn-finest and fpn-finest-stride): ~470 negatives per image are too few
samples to learn the background in so short a schedule (``notes`` has the schedule's
history). With the paper's N = 2048 unscaled, a 320 px crop has so few positives (~40 per
image) that neither the random sampler's nor the per-group positive cap ever binds, and
group sampling would reduce to the random sampler by construction. ``cpu-full`` therefore
uses N = 512 (OHEM B = 256, the same factor): 4x the samples of the scaled value, while the
per-group cap of 128 positives still binds on the images with large faces, where the
imbalance of Figure 2 (b) comes from. This revision followed the failed attempt, because no
design learned (not to favour one); the report prints the history (``notes``). The random 1:3
baselines draw ``N * 4`` anchors per image (the design registry's rule), so every design
sees the same number of samples per image.

:meth:`AblationProtocol.run_key` hashes everything that determines one (design, seed) run's
numbers, the source code included; a finished run whose key matches is reused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from facebench.errors import FacebenchError

#: Bumped when the stored run record changes meaning (invalidates every cached run).
RUN_FORMAT = 1
PAPER_GROUP_SIZE = 2048
PAPER_OHEM_BATCH = 1024
PAPER_TRAIN_SIDE = 1200

#: Table 1 of the paper, in its row order.
TABLE1_DESIGNS: tuple[str, ...] = (
    "rpn", "fpn-finest", "fpn", "fpn-finest-stride", "fpn-finest-sampling",
)
#: Table 3 (regression loss) and Table 4 (OHEM, focal loss) comparisons with the paper design.
EXTRA_DESIGNS: tuple[str, ...] = (
    "fpn-finest-sampling-smooth-l1", "fpn-finest-ohem", "fpn-finest-focal",
)
DESIGN_PRESETS: dict[str, tuple[str, ...]] = {
    "table1": TABLE1_DESIGNS,
    "all": TABLE1_DESIGNS + EXTRA_DESIGNS,
    #: The budget sweep of issue 12: Table 1, OHEM and both focal-loss normalisations.
    "sweep": (*TABLE1_DESIGNS, "fpn-finest-ohem", "fpn-finest-focal",
              "fpn-finest-focal-per-image"),
    "quick": ("fpn-finest", "fpn-finest-sampling"),
}


def scaled_budget(paper_value: int, train_max_side: int) -> int:
    """``paper_value`` scaled by the anchor count of a ``train_max_side`` crop relative to
    the paper's 1,200 px, rounded to the nearest power of two (at least 8)."""
    raw = paper_value * (train_max_side / PAPER_TRAIN_SIDE) ** 2
    return max(8, 2 ** round(math.log2(max(raw, 1.0))))


@dataclass(frozen=True)
class SynthSpec:
    """Parameters of the generated synthetic set (used only when ``--data`` is absent)."""

    images: int = 300
    seed: int = 0
    val_fraction: float = 0.25
    max_side: int = 512


@dataclass(frozen=True)
class AblationProtocol:
    """Training and test settings shared by every design and seed of one ablation."""

    name: str
    backbone: str = "tiny"
    iterations: int = 360
    batch_size: int = 2
    lr: float = 0.04
    train_max_side: int = 320
    scale_choices: tuple[float, ...] = (0.75, 1.0, 1.25, 1.5, 2.0)
    flip: bool = True
    group_size: int | None = None  # None: scaled_budget(2048, train_max_side)
    ohem_batch: int | None = None  # None: scaled_budget(1024, train_max_side)
    test_scales: tuple[float, ...] = (1.0, 2.0)
    test_max_side: int = 3000
    nms_iou: float = 0.3
    score_thresh: float = 0.001
    max_detections: int = 1000
    synth: SynthSpec = field(default_factory=SynthSpec)
    optimizer: str = "sgd"  # "sgd" (the paper) or "adamw"
    amp: bool = False  # mixed precision (CUDA only)
    clip_grad_norm: float | None = None
    calibration_images: int = 0  # > 0: fit per-scale calibration on that many train images
    budgets: tuple[int, ...] = ()  # N values of a budget sweep (empty: group_size only)
    notes: str = ""  # how and why the protocol was chosen (printed in the report)

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.batch_size < 1:
            raise FacebenchError("iterations and batch size must be >= 1")
        if not self.test_scales or min(self.test_scales) <= 0:
            raise FacebenchError(f"test scales must be positive, got {self.test_scales}")

    @property
    def n_per_group(self) -> int:
        return self.group_size or scaled_budget(PAPER_GROUP_SIZE, self.train_max_side)

    @property
    def ohem_b(self) -> int:
        return self.ohem_batch or scaled_budget(PAPER_OHEM_BATCH, self.train_max_side)

    def design_overrides(self) -> dict:
        """Overrides every design gets (build_detector / get_design keyword arguments)."""
        return {"group_size": self.n_per_group, "ohem_batch": self.ohem_b}

    def with_changes(self, **changes) -> AblationProtocol:
        return dataclasses.replace(self, **changes)

    @property
    def sweep(self) -> tuple[int, ...]:
        """The budgets N this protocol runs: ``budgets``, or its single ``n_per_group``."""
        return self.budgets or (self.n_per_group,)

    def with_budget(self, n: int) -> AblationProtocol:
        """The protocol at sample budget ``n``: N = n per scale group, OHEM B = n / 2 (the
        ratio of the paper's 2048 and 1024), random 1:3 baselines ``4 n`` per image."""
        if n < 2:
            raise FacebenchError(f"sample budget N must be >= 2, got {n}")
        return self.with_changes(group_size=int(n), ohem_batch=int(n) // 2, budgets=())

    def for_run(self, design: str, n: int) -> AblationProtocol:
        """The protocol of ``design`` at budget ``n``. A design that samples nothing (focal
        loss uses every anchor) does not depend on N: it runs once, at the protocol's own
        budget, and that run stands for every N."""
        from detector.designs import get_design

        if get_design(design).sampler == "none":
            return self.with_budget(self.n_per_group)
        return self.with_budget(n)

    def plain(self) -> dict:
        """JSON-ready description, with the derived sample budgets spelled out."""
        out = json.loads(json.dumps(dataclasses.asdict(self)))
        out["n_per_group"] = self.n_per_group
        out["ohem_batch_b"] = self.ohem_b
        out["random_sampler_per_image"] = self.n_per_group * 4
        out["budgets"] = list(self.sweep)
        return out

    def train_recipe(self) -> dict:
        """The parts of the protocol that shape training (hashed into every run key)."""
        recipe = {
            "backbone": self.backbone, "iterations": self.iterations,
            "batch_size": self.batch_size, "lr": self.lr, "max_side": self.train_max_side,
            "scale_choices": list(self.scale_choices), "flip": self.flip,
            "overrides": self.design_overrides(),
        }
        # Only when set, so that run keys of protocols without them stay as they were.
        if self.optimizer != "sgd":
            recipe["optimizer"] = self.optimizer
        if self.amp:
            recipe["amp"] = True
        if self.clip_grad_norm is not None:
            recipe["clip_grad_norm"] = self.clip_grad_norm
        return recipe

    def test_protocol(self) -> dict:
        test = {
            "scales": list(self.test_scales), "max_side": self.test_max_side,
            "nms_iou": self.nms_iou, "score_thresh": self.score_thresh,
            "max_detections": self.max_detections,
        }
        if self.calibration_images:  # only when set: older run keys stay as they were
            test["calibration_images"] = self.calibration_images
        return test

    def train_key(self, design: str, seed: int, data_fingerprint: str) -> str:
        """Hex digest of everything that determines the (design, seed) training run: the
        design, seed, data, recipe and the training code itself (:func:`code_fingerprint`)."""
        blob = json.dumps(
            {
                "format": RUN_FORMAT, "design": design, "seed": int(seed),
                "data": data_fingerprint, "train": self.train_recipe(),
                "code": code_fingerprint("train"),
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()

    def run_key(self, design: str, seed: int, data_fingerprint: str) -> str:
        """Hex digest of everything that determines the (design, seed) run's numbers: the
        training run and the test protocol (a new test protocol reuses the training)."""
        blob = json.dumps(
            {"train": self.train_key(design, seed, data_fingerprint),
             "test": self.test_protocol(), "code": code_fingerprint("test")},
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()


FULL = AblationProtocol(
    name="cpu-full",
    iterations=3000,
    optimizer="adamw",
    lr=0.003,
    clip_grad_norm=10.0,
    group_size=512,
    ohem_batch=256,
    notes=(
        "Revised after a failed first attempt, because no design learned (not to favour one): "
        "the first attempt (N = 128 scaled by anchor count, OHEM B = 64, 360 iterations) gave "
        "All AP 0.0 / 0.3 / 0.1 / 1.5% for rpn / fpn-finest / fpn / fpn-finest-stride (seed 0; "
        "fpn-finest-sampling not reached), so N became 512 (B 256). Its 360 iterations had "
        "been sized on a 2-thread speed measured while other jobs shared the cores (~1 it/s); "
        "one torch thread runs ~28 it/s, so the schedule became 3000 iterations (5 designs x 3 "
        "seeds in ~40 minutes on 2 idle cores with --threads 1). The test's score threshold "
        "went from 0.01 to 0.001 after rpn's first 3000-iteration run had no detection above "
        "0.01 (AP must rank detections, not depend on score calibration). With the paper's "
        "SGD (lr 0.04) every design still stayed near zero (seed 0, 3000 iterations: rpn 0.7%, "
        "fpn-finest 1.3% All); the project's quickstart had found that a random-init tiny "
        "backbone learns with AdamW, not SGD (commit 747c322), and fpn-finest with AdamW "
        "(lr 0.003, gradient clip 10, 1500 iterations) reached 5.5% All, so the optimizer "
        "became AdamW. No other result was seen before these changes. See "
        "detector/experiments/protocol.py."
    ),
)
#: Revision 2 (issue 12): a protocol that exercises group sampling's mechanism.
FULL_V2 = FULL.with_changes(
    name="cpu-full-v2",
    iterations=1000,
    scale_choices=(0.5, 0.75, 1.0, 1.25, 1.5, 2.0),
    test_scales=(0.5, 1.0, 2.0),
    calibration_images=32,
    budgets=(64, 128, 512),
    notes=(
        "Revision 2 (issue 12), set before any of its results were seen. Revision 1 (cpu-"
        "full, kept unchanged) ran N = 512 on 320 px crops, where the per-group quota bound "
        "only at scale 128 (group sampling's sampled positives were 1.00 / 0.97 / 0.94 / 0.87"
        " of fpn-finest's at @16..@128), so it barely tested the paper's mechanism; one N = "
        "128 run (1,500 iterations, 1 seed) had put group sampling ahead of fpn-finest (All "
        "14.0 vs 10.8). Revision 2 therefore sweeps N over 64, 128 and 512 (OHEM B = N / 2), "
        "with 1000 iterations per run so that Table 1, OHEM and focal loss x 3 budgets x 3 "
        "seeds fit a CPU session; adds a 0.5 test-pyramid level (faces larger than the 128 px"
        " anchor are seen at half size) and 0.5 to the training jitter (the old jitter never "
        "shrank); fits a per-scale Platt calibration on 32 training images and reports the "
        "merged AP with and without it; the focal loss is normalised by the batch's positive "
        "count (RetinaNet's rule; fpn-finest-focal-per-image keeps the old per-image rule). "
        "Revision 1's history: "
    ) + FULL.notes,
)
QUICK = AblationProtocol(
    name="quick",
    iterations=6,
    batch_size=1,
    train_max_side=256,
    scale_choices=(1.0,),
    test_scales=(1.0,),
    synth=SynthSpec(images=24, seed=0, val_fraction=0.5, max_side=256),
)
#: ResNet-50 on one GPU (benchmarks/ablation_gpu.py): 5 designs x 3 seeds in ~10 minutes on
#: an H200. Random init (no weights are downloaded), so AdamW as in ``cpu-full`` (SGD from a
#: random init did not learn in short CPU schedules), gradient clipping, mixed precision.
GPU = AblationProtocol(
    name="gpu-resnet50",
    backbone="resnet50",
    iterations=300,
    batch_size=4,
    optimizer="adamw",
    lr=0.002,
    train_max_side=640,
    scale_choices=(0.5, 0.75, 1.0, 1.25, 1.5, 2.0),
    test_scales=(0.5, 1.0, 2.0),
    synth=SynthSpec(images=600, seed=0, val_fraction=0.25, max_side=640),
    amp=True,
    clip_grad_norm=10.0,
)
PRESETS: dict[str, AblationProtocol] = {p.name: p for p in (FULL, FULL_V2, QUICK, GPU)}


_REPO = Path(__file__).resolve().parents[2]
#: Source files whose bytes key the runs. Training: the detector package (minus inference and
#: the statistics). Test: inference, the run's detection/evaluation code and the evaluator.
CODE_FILES: dict[str, tuple[str, ...]] = {
    "train": ("detector/*.py",),
    "test": (
        "detector/inference.py", "detector/experiments/runs.py", "facebench/detection.py",
        "detector/calibration.py",
        "facebench/evaluation/wider.py", "facebench/evaluation/wider_match.py",
        "facebench/formats/wider.py",
    ),
}
_NOT_TRAINING = {
    "detector/inference.py", "detector/anchor_stats.py", "detector/__init__.py",
    "detector/calibration.py", "detector/merge.py",  # test-time only
}
_code_cache: dict[str, str] = {}


def code_fingerprint(part: str) -> str:
    """SHA-256 over the source files of ``part`` (``train`` or ``test``), read once per
    process (the code this process runs): any edit to them, even to a comment, makes the
    runs it keys stale, so results of older code are never mixed with newer ones."""
    if part not in _code_cache:
        paths: list[Path] = []
        for pattern in CODE_FILES[part]:
            paths += sorted(_REPO.glob(pattern))
        digest = hashlib.sha256()
        for path in paths:
            rel = path.relative_to(_REPO).as_posix()
            if part == "train" and rel in _NOT_TRAINING:
                continue
            digest.update(rel.encode())
            digest.update(path.read_bytes())
        _code_cache[part] = digest.hexdigest()
    return _code_cache[part]


def data_fingerprint(wider_root: Path) -> str:
    """SHA-256 over the annotation files that define the training and evaluation sets."""
    digest = hashlib.sha256()
    files = sorted((wider_root / "wider_face_split").glob("wider_face_*_bbx_gt.txt"))
    files += sorted((wider_root / "ground_truth").glob("*.mat"))
    if not files:
        raise FacebenchError(f"{wider_root}: no WIDER split files or ground truth to train on")
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()
