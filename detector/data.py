"""Training data for the detector: WIDER FACE's training layout and the synthetic set.

A :class:`FaceDataset` yields one augmented image with its face boxes per index. Faces the
annotation marks *invalid* become ignore regions (neither positive nor negative anchors),
not background. Boxes with no area (WIDER's ``0 0 0 0`` placeholder for an image without
faces) are dropped.

Randomness is a pure function of ``(seed, epoch, index)`` (:func:`sample_seed`), never of
worker ids or of how many images came before, so a run reproduces exactly after a resume
and across different numbers of processes.

JPEGs are decoded at 1/2, 1/4 or 1/8 resolution when the drawn scale allows it (libjpeg's
DCT scaling), which is most of the paper's scale jitter (0.25 and 0.5).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from detector.augment import TrainAugment
from facebench.errors import FacebenchError, FormatError
from facebench.images import decode_image_rgb, header_size


@dataclass(frozen=True)
class FaceRecord:
    """One training image: its file, ``boxes`` (N, 4) float32 x1y1x2y2 in image pixels and
    ``ignore`` (N,) bool (True for faces that must count neither way)."""

    path: Path
    boxes: np.ndarray
    ignore: np.ndarray


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed that depends only on ``(seed, epoch, index)``."""
    state = np.random.SeedSequence([int(seed), int(epoch), int(index)]).generate_state(2)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def read_image_rgb(path: Path, reduce: int = 1, check: bool = True) -> np.ndarray:
    """Decode ``path`` to an ``(H, W, 3)`` uint8 RGB array, optionally at ``1/reduce`` size.

    EXIF orientation is ignored, as by :func:`facebench.images.header_size` (boxes refer to
    stored pixels).
    """
    return decode_image_rgb(path, reduce, check=check)


class FaceDataset(Dataset):
    """Augmented training images with face boxes.

    ``dataset[i]`` is a dict: ``image`` uint8 tensor (3, h, w) RGB, ``boxes`` float32 (G, 4)
    x1y1x2y2 in that image's pixels, ``ignore`` bool (G,), ``index`` i and ``seed`` (the
    per-sample seed, which the trainer also uses for the model's random sampling).
    Without ``augment`` the image is returned as decoded.
    """

    def __init__(
        self, records: list[FaceRecord], augment: TrainAugment | None = None, seed: int = 0
    ) -> None:
        self.records = records
        self.augment = augment
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose augmentation draws ``__getitem__`` returns."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        seed = sample_seed(self.seed, self.epoch, index)
        if self.augment is None:
            image, boxes, ignore = read_image_rgb(record.path), record.boxes, record.ignore
        else:
            rng = np.random.default_rng(seed)
            width, height = header_size(record.path)
            params = self.augment.sample(height, width, rng)
            image = read_image_rgb(record.path, _reduce_factor(params.scale), check=False)
            boxes, ignore = self.augment.apply_to_boxes(params, record.boxes, record.ignore)
            image = self.augment.apply_to_image(params, image)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "boxes": torch.from_numpy(np.asarray(boxes, dtype=np.float32).reshape(-1, 4)),
            "ignore": torch.from_numpy(np.asarray(ignore, dtype=bool).reshape(-1)),
            "index": int(index),
            "seed": seed,
        }


def _reduce_factor(scale: float) -> int:
    # Largest JPEG DCT reduction that still leaves at least the target resolution.
    for factor in (8, 4, 2):
        if scale * factor <= 1.0 + 1e-9:
            return factor
    return 1


def wider_records(root: str | Path, split: str = "train") -> list[FaceRecord]:
    """Records of a WIDER FACE layout: ``root/wider_face_split/wider_face_{split}_bbx_gt.txt``
    with images under ``root/WIDER_{split}/images``. Invalid faces become ignore regions."""
    from facebench.formats.wider import read_split_txt

    root = Path(root)
    txt = root / "wider_face_split" / f"wider_face_{split}_bbx_gt.txt"
    images = root / f"WIDER_{split}" / "images"
    if not txt.is_file():
        raise FacebenchError(f"{txt}: WIDER annotation file not found (is {root} a WIDER root?)")
    if not images.is_dir():
        raise FacebenchError(f"{images}: WIDER image folder not found")
    records = []
    for item in read_split_txt(txt):
        xywh = np.asarray(item.boxes, dtype=np.float32).reshape(-1, 4)
        attrs = np.asarray(item.attributes).reshape(-1, 6)
        has_area = (xywh[:, 2] > 0) & (xywh[:, 3] > 0)
        xywh = xywh[has_area]
        boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        ignore = attrs[has_area, 3] != 0
        records.append(FaceRecord(images / item.name, boxes.astype(np.float32), ignore))
    if not records:
        raise FormatError(txt, "no images listed")
    return records


def resolve_wider_root(path: str | Path) -> Path:
    """Accept a WIDER root or a synthetic data folder (which holds ``widerface/``)."""
    path = Path(path)
    if (path / "widerface" / "wider_face_split").is_dir():
        return path / "widerface"
    return path


def training_set(
    data: str | Path,
    split: str = "train",
    augment: TrainAugment | None = None,
    seed: int = 0,
) -> FaceDataset:
    """The training dataset for a WIDER root or a synthetic data folder."""
    return FaceDataset(wider_records(resolve_wider_root(data), split), augment, seed)


def collate_list(samples: list[dict]) -> list[dict]:
    """DataLoader ``collate_fn`` that keeps samples apart (sizes differ after augmentation)."""
    return samples


def pad_batch(samples: list[dict]) -> tuple[torch.Tensor, list[dict]]:
    """Stack samples into ``(B, 3, H, W)`` uint8 (zero padding at the bottom/right to the
    largest size) and the model's target list ``[{"boxes", "ignore"}]``."""
    height = max(int(s["image"].shape[1]) for s in samples)
    width = max(int(s["image"].shape[2]) for s in samples)
    images = torch.zeros((len(samples), 3, height, width), dtype=torch.uint8)
    for i, s in enumerate(samples):
        _, h, w = s["image"].shape
        images[i, :, :h, :w] = s["image"]
    targets = [{"boxes": s["boxes"], "ignore": s["ignore"]} for s in samples]
    return images, targets


def training_image_paths(data: str | Path, split: str = "train") -> list[Path]:
    """The image files a training run on ``data`` reads (for the up-front check,
    :func:`facebench.images.check_image_files`)."""
    return [r.path for r in wider_records(resolve_wider_root(data), split)]
