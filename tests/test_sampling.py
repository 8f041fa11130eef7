"""Group sampling, random 1:3 and OHEM: properties against the quota rule."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.sampling import ohem_select, sample_random, sample_scale_groups
from detector.targets import ScaleGroupSampler


def _labels_strategy():
    # per anchor: (scale id, label)
    return st.lists(
        st.tuples(st.integers(0, 3), st.sampled_from([1, 0, 0, 0, -1])), min_size=1, max_size=400
    )


def _group_counts_strategy():
    # per scale: (positives, negatives, ignored), large enough for every quota branch
    # (positives short, both sufficient, negatives short) to occur with N up to 64.
    return st.lists(
        st.tuples(st.integers(0, 40), st.integers(0, 90), st.integers(0, 5)),
        min_size=1, max_size=4,
    )  # fmt: skip


@settings(max_examples=120, deadline=None)
@given(
    st.one_of(_labels_strategy(), _group_counts_strategy()),
    st.integers(0, 64),
    st.integers(0, 2**31 - 1),
)
def test_group_sampling_properties(data, n, seed):
    if data and len(data[0]) == 3:  # per-scale counts: build the anchors, mixed in order
        pairs = [(s, lab) for s, (p, q, i) in enumerate(data)
                 for lab in [1] * p + [0] * q + [-1] * i]  # fmt: skip
        order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(seed))
        pairs = [pairs[k] for k in order.tolist()]
    else:
        pairs = data
    if not pairs:
        return
    scale_ids = torch.tensor([p[0] for p in pairs])
    labels = torch.tensor([p[1] for p in pairs])
    mask = sample_scale_groups(labels, scale_ids, n, generator=torch.Generator().manual_seed(seed))
    assert mask.dtype == torch.bool and mask.shape == labels.shape
    assert not bool((mask & (labels == -1)).any()), "ignored anchors are never sampled"
    for s in range(4):
        group = scale_ids == s
        pos = int((group & (labels == 1)).sum())
        neg = int((group & (labels == 0)).sum())
        got_pos = int((mask & group & (labels == 1)).sum())
        got_neg = int((mask & group & (labels == 0)).sum())
        assert got_pos + got_neg == min(n, pos + neg)
        if pos < n // 4:  # shortage of positives filled with negatives
            assert got_pos == pos and got_neg == min(neg, n - pos)
        elif neg >= n - n // 4:  # enough of both: exactly the 1:3 quota
            assert got_pos == n // 4 and got_neg == n - n // 4
        else:  # shortage of negatives filled with positives
            assert got_neg == neg and got_pos == min(pos, n - neg)
    again = sample_scale_groups(labels, scale_ids, n, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(mask, again), "same seed, same sample"


def test_hand_checked_quota():
    # scale 0: 10 positives, 100 negatives; scale 1: 2 positives, 5 negatives, 3 ignored
    labels = torch.tensor([1] * 10 + [0] * 100 + [1] * 2 + [0] * 5 + [-1] * 3)
    scale_ids = torch.tensor([0] * 110 + [1] * 10)
    sampler = ScaleGroupSampler(num_per_scale=16)
    mask = sampler(labels, scale_ids, torch.full_like(labels, -1), torch.Generator().manual_seed(0))
    assert int((mask[:10]).sum()) == 4 and int(mask[10:110].sum()) == 12
    # scale 1 has only 7 labelled anchors: all of them, none of the ignored
    assert mask[110:117].all() and not mask[117:].any()


def test_negative_shortage_filled_with_positives():
    labels = torch.tensor([1] * 20 + [0] * 3)
    mask = sample_scale_groups(labels, torch.zeros(23, dtype=torch.long), 8)
    assert int(mask[:20].sum()) == 5 and int(mask[20:].sum()) == 3


def test_sample_is_uniform_within_a_group():
    labels = torch.zeros(40, dtype=torch.long)
    gen = torch.Generator().manual_seed(3)
    hits = torch.stack([sample_random(labels, 10, generator=gen) for _ in range(400)]).float()
    # each anchor is drawn with probability 1/4: 100 expected of 400, sd ~8.7
    assert float(hits.sum(0).min()) > 60 and float(hits.sum(0).max()) < 140


def test_ohem_picks_highest_losses_among_labelled():
    losses = torch.tensor([0.1, 5.0, 3.0, 9.0, 0.2])
    labels = torch.tensor([0, 1, 0, -1, 0])
    assert ohem_select(losses, labels, 2).tolist() == [False, True, True, False, False]
    assert int(ohem_select(losses, labels, 10).sum()) == 4


def test_quota_binds_group_sampling_differs_from_random_by_a_known_amount():
    """One image, N = 16 per group, 1:3. Scale 0: 100 positives, 1000 negatives; scale 1: 2
    positives, 1000 negatives. By the quota rule group sampling takes 4 + 2 = 6 positives
    (4 of scale 0: its quota binds), random 1:3 over 2 x 16 = 32 samples takes 8, of which
    at least 6 come from scale 0 (it has only 2 others to draw from)."""
    scale_ids = torch.cat([torch.zeros(1100), torch.ones(1002)]).long()
    labels = torch.cat([torch.ones(100), torch.zeros(1000), torch.ones(2), torch.zeros(1000)])
    labels = labels.long()
    for seed in range(5):
        g = torch.Generator().manual_seed(seed)
        group = sample_scale_groups(labels, scale_ids, 16, 0.25, g)
        rand = sample_random(labels, 32, 0.25, g)
        gpos = torch.bincount(scale_ids[group & (labels == 1)], minlength=2).tolist()
        rpos = torch.bincount(scale_ids[rand & (labels == 1)], minlength=2).tolist()
        assert gpos == [4, 2]
        assert sum(rpos) == 8 and rpos[0] >= 6
        assert sum(rpos) - sum(gpos) == 2
        assert int(group.sum()) == int(rand.sum()) == 32
