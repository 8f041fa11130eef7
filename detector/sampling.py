"""Training-sample selection: group sampling (paper 4.2), random 1:3, and OHEM.

Group sampling splits one image's labelled anchors into groups by anchor scale and draws the
same number N from every group, positives:negatives 1:3 within each group (``positive_fraction``
0.25). A shortage of positives is filled with negatives (the paper); a shortage of negatives is
filled with positives, so a group yields ``min(N, positives + negatives)`` anchors. Ignored
anchors (label -1) are never drawn. Per group ``g`` with P positives and Q negatives:

    pos = min(P, max(floor(N * positive_fraction), N - Q));   neg = min(Q, N - pos)

The draw is vectorised: one random permutation of the anchors, one stable sort by
(scale, label) category, then each anchor's rank inside its category is compared with the
category's quota. No Python loop runs over anchors or scales.

The random 1:3 sampler of the baselines is the same draw with a single group. These are the
draws; :mod:`detector.targets` turns a design into the sampler object that uses them.
"""

from __future__ import annotations

import torch


def _quota(count_pos: torch.Tensor, count_neg: torch.Tensor, num: int, fraction: float):
    target = int(num * fraction)
    pos = torch.minimum(count_pos, (num - count_neg).clamp(min=target))
    neg = torch.minimum(count_neg, num - pos)
    return pos, neg


def sample_scale_groups(
    labels: torch.Tensor,
    scale_ids: torch.Tensor,
    num_per_scale: int,
    positive_fraction: float = 0.25,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Group sampling for one image.

    labels (A,) int64 in {1, 0, -1}; scale_ids (A,) int64 >= 0 (the anchor's scale group);
    returns a bool mask (A,) of the sampled anchors: per scale ``min(num_per_scale,
    available)`` anchors with the quotas of the module docstring. The same ``generator``
    state gives the same sample. ``generator`` must live on the labels' device.
    """
    if num_per_scale < 0:
        raise ValueError("num_per_scale must be >= 0")
    num_anchors = labels.shape[0]
    device = labels.device
    mask = torch.zeros(num_anchors, dtype=torch.bool, device=device)
    if num_anchors == 0:
        return mask
    num_groups = int(scale_ids.max()) + 1
    # Category 2s + 1 holds the positives of scale s, 2s the negatives; ignored anchors get
    # a category past the end whose quota is 0.
    ignored = torch.full_like(scale_ids, 2 * num_groups)
    category = torch.where(labels >= 0, 2 * scale_ids + (labels == 1).long(), ignored)
    counts = torch.bincount(category, minlength=2 * num_groups + 1)
    pos, neg = _quota(counts[1:-1:2], counts[0:-1:2], num_per_scale, positive_fraction)
    quota = torch.zeros_like(counts)
    quota[1:-1:2] = pos
    quota[0:-1:2] = neg

    perm = torch.randperm(num_anchors, generator=generator, device=device)
    order = perm[torch.sort(category[perm], stable=True).indices]
    starts = torch.cumsum(counts, 0) - counts
    sorted_cat = category[order]
    rank = torch.arange(num_anchors, device=device) - starts[sorted_cat]
    mask[order] = rank < quota[sorted_cat]
    return mask


def sample_random(
    labels: torch.Tensor,
    num_samples: int,
    positive_fraction: float = 0.25,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random 1:3 sampling over all scales (the baselines): one group of ``num_samples``."""
    return sample_scale_groups(
        labels, torch.zeros_like(labels), num_samples, positive_fraction, generator
    )


def ohem_select(losses: torch.Tensor, labels: torch.Tensor, batch: int) -> torch.Tensor:
    """Online hard example mining: the ``batch`` labelled anchors with the highest loss.

    losses (A,) per-anchor training loss (detached); labels (A,) in {1, 0, -1}. Returns a
    bool mask (A,) selecting ``min(batch, labelled anchors)`` anchors; ignored never chosen.
    """
    valid = labels >= 0
    scores = torch.where(valid, losses.detach().float(), torch.full_like(losses, -torch.inf))
    k = min(batch, int(valid.sum()))
    mask = torch.zeros_like(valid)
    if k:
        mask[torch.topk(scores, k).indices] = True
    return mask
