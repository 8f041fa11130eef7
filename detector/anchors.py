"""Square anchors for every design, one generator for all.

Layout (the order the detection head flattens its outputs in, pinned by a test):
scale-major, then row-major over the anchor grid. The block of scale ``s`` holds
``rows_s * cols_s`` anchors; anchor ``(r, c)`` of that block sits at flat index
``offset_s + r * cols_s + c`` with its centre at the cell centre
``((c + 0.5) * stride_s, (r + 0.5) * stride_s)`` and side ``scale_s`` (the paper's scale
``sqrt(w h)`` of a square box, aspect ratio 1).

The grid tiles the input padded up to a multiple of ``SIZE_DIVISIBILITY`` (32), exactly like
the feature maps the model computes, so ``rows_s = ceil(H / 32) * 32 / stride_s``. For a
640x640 input: ``rpn`` 1,600 anchors per scale; ``fpn`` and ``fpn-finest-stride``
25,600 / 6,400 / 1,600 / 400; ``fpn-finest`` 25,600 per scale.
"""

from __future__ import annotations

import math

import torch

from detector.designs import SIZE_DIVISIBILITY, Design, get_design


def padded_size(height: int, width: int) -> tuple[int, int]:
    """(H, W) rounded up to the model's size divisibility (32)."""
    return (
        math.ceil(height / SIZE_DIVISIBILITY) * SIZE_DIVISIBILITY,
        math.ceil(width / SIZE_DIVISIBILITY) * SIZE_DIVISIBILITY,
    )


def grid_shapes(design: str | Design, height: int, width: int) -> list[tuple[int, int]]:
    """Anchor grid (rows, cols) of each scale, in scale order."""
    design = get_design(design)
    ph, pw = padded_size(height, width)
    return [(ph // stride, pw // stride) for stride in design.strides]


def tile_anchors(
    scale: float, stride: int, rows: int, cols: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """(rows*cols, 4) float32 x1,y1,x2,y2 squares of side ``scale``, row-major cell centres."""
    ys = (torch.arange(rows, dtype=torch.float32, device=device) + 0.5) * stride
    xs = (torch.arange(cols, dtype=torch.float32, device=device) + 0.5) * stride
    cy, cx = torch.meshgrid(ys, xs, indexing="ij")
    half = scale / 2.0
    return torch.stack(
        (cx - half, cy - half, cx + half, cy + half), dim=-1
    ).reshape(-1, 4)


def anchors_for(
    design_name: str | Design,
    height: int,
    width: int,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """All anchors of a design for an input of ``height`` x ``width`` pixels.

    Returns ``(boxes, scale_ids)``: boxes (A, 4) float32 x1,y1,x2,y2 in input pixels, and
    scale_ids (A,) int64 indexing the design's ascending ``scales``. Order: see the module
    docstring.
    """
    design = get_design(design_name)
    boxes, ids = [], []
    for scale_id, (rows, cols) in enumerate(grid_shapes(design, height, width)):
        scale, stride = design.scales[scale_id], design.strides[scale_id]
        boxes.append(tile_anchors(scale, stride, rows, cols, device))
        ids.append(torch.full((rows * cols,), scale_id, dtype=torch.int64, device=device))
    return torch.cat(boxes), torch.cat(ids)


def scale_counts(design: str | Design, height: int, width: int) -> list[int]:
    """Number of anchors of each scale for an input of that size."""
    return [rows * cols for rows, cols in grid_shapes(design, height, width)]
