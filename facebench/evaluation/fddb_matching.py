"""FDDB matching: one-to-one max-sum assignments at every score threshold, solved sparsely.

The official protocol matches, for each image and each distinct detection score ``s``,
the detections with score ``>= s`` to the annotations by the assignment that maximises
the sum of overlaps. Two facts make that cheap without changing the result:

- the assignment splits over the connected components of the bipartite graph whose
  edges are the pairs with a positive overlap (annotations or detections without an
  edge are never matched), so each component is solved on its own;
- a component's matching changes only at thresholds equal to the scores of its own
  detections. Each component therefore contributes a step function of the threshold:
  at each of its distinct scores it records how its matched-pair statistics change, and
  the global ROC is the reverse cumulative sum of those changes over all thresholds.

Components with one annotation or one detection (most of them) are solved in closed form
(the best overlap so far); the others get an exact max-sum assignment
(:func:`max_sum_assignment`), where the official Hungarian routine is not always optimal
on non-square matrices, so results may differ from it by a face or two.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components, min_weight_full_bipartite_matching

#: Discrete score: a matched pair counts as a true positive when its overlap is above this.
DISCRETE_THRESHOLD = 0.5


@dataclass(frozen=True)
class MatchEvents:
    """Changes of the matched statistics, keyed by the detection score where they happen.

    For every threshold ``t``: true positives at ``t`` = sum of ``d_discrete`` (and
    ``d_continuous``) over events with ``score >= t``. Arrays of equal length E.
    """

    score: np.ndarray
    d_discrete: np.ndarray  # int64
    d_continuous: np.ndarray  # float64


def match_events(
    annot: np.ndarray, det: np.ndarray, overlap: np.ndarray, scores: np.ndarray, n_annot: int
) -> MatchEvents:
    """Solve all threshold-wise assignments of a set of images at once.

    ``annot``/``det``: global indices (P,) of the pairs with positive ``overlap`` (P,);
    ``scores``: (D,) score of every detection (global index); ``n_annot``: number of
    annotations. Returns the step changes of the discrete and continuous true-positive
    counts (see :class:`MatchEvents`).
    """
    empty = MatchEvents(np.zeros(0), np.zeros(0, np.int64), np.zeros(0))
    if len(annot) == 0:
        return empty
    # Compact node ids: only annotations and detections that have a pair take part.
    a_ids, a_local = np.unique(annot, return_inverse=True)
    d_ids, d_local = np.unique(det, return_inverse=True)
    n_a, n_d = len(a_ids), len(d_ids)
    graph = coo_matrix(
        (np.ones(len(annot)), (a_local, n_a + d_local)), shape=(n_a + n_d, n_a + n_d)
    )
    _, labels = connected_components(graph, directed=False)
    comp = labels[a_local]
    # Components with one annotation or one detection have a single-pair optimum: solved
    # for all of them at once. The rest go through the exact assignment solver.
    n_comp = int(labels.max()) + 1
    annots_in = np.bincount(labels[:n_a], minlength=n_comp)
    dets_in = np.bincount(labels[n_a:], minlength=n_comp)
    simple = ((annots_in == 1) | (dets_in == 1))[comp]
    parts = [_simple_steps(comp[simple], overlap[simple], scores[det[simple]])]

    hard = np.flatnonzero(~simple)
    order = hard[np.argsort(comp[hard], kind="stable")]
    comp_sorted = comp[order]
    bounds = np.flatnonzero(np.diff(comp_sorted)) + 1
    det_scores = scores[d_ids]
    for sel in np.split(order, bounds) if len(order) else []:
        parts.append(_component_steps(a_local[sel], d_local[sel], overlap[sel], det_scores))
    return MatchEvents(
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]),
    )


def _simple_steps(
    comp: np.ndarray, overlap: np.ndarray, score: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps of components whose best assignment is one pair: the best overlap admitted.

    Pairs are sorted by component, then score descending; a segmented running maximum
    gives each component's best overlap at each of its distinct scores.
    """
    if len(comp) == 0:
        return np.zeros(0), np.zeros(0, np.int64), np.zeros(0)
    order = np.lexsort((-score, comp))
    comp, overlap, score = comp[order], overlap[order], score[order]
    # Overlaps lie in (0, 1]: lifting segment k by 2k makes one running maximum restart
    # at every component.
    segment = np.r_[0, np.cumsum(comp[1:] != comp[:-1])]
    lifted = overlap + 2.0 * segment
    running = np.maximum.accumulate(lifted)
    # Read the exact overlap at the running argmax (lifting rounds in the last bits).
    at = np.maximum.accumulate(np.where(lifted == running, np.arange(len(lifted)), 0))
    best = overlap[at]
    last = np.r_[(comp[1:] != comp[:-1]) | (score[1:] != score[:-1]), True]
    value, seg, thr = best[last], segment[last], score[last]
    first_of_comp = np.r_[True, seg[1:] != seg[:-1]]
    previous = np.where(first_of_comp, 0.0, np.r_[0.0, value[:-1]])
    disc = (value > DISCRETE_THRESHOLD).astype(np.int64)
    prev_disc = (previous > DISCRETE_THRESHOLD).astype(np.int64)
    return thr, disc - prev_disc, value - previous


def _component_steps(
    pa: np.ndarray, pd: np.ndarray, po: np.ndarray, det_scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps of one component: (distinct scores, changes of discrete TP, of continuous TP)."""
    a_u, a_inv = np.unique(pa, return_inverse=True)
    d_u, d_inv = np.unique(pd, return_inverse=True)
    sc = det_scores[d_u]
    # Detections by decreasing score; a threshold admits a prefix of this order.
    by_score = np.argsort(-sc, kind="stable")
    rank = np.empty_like(by_score)
    rank[by_score] = np.arange(len(by_score))
    sorted_sc = sc[by_score]
    # Last index of each group of equal scores: thresholds admit whole groups.
    group_end = np.r_[np.flatnonzero(np.diff(sorted_sc) != 0), len(sorted_sc) - 1]
    thresholds = sorted_sc[group_end]  # decreasing

    matrix = np.zeros((len(a_u), len(d_u)))
    matrix[a_inv, rank[d_inv]] = po
    disc = np.zeros(len(group_end), dtype=np.int64)
    cont = np.zeros(len(group_end))
    # One exact solve per threshold that admits new detections of this component.
    for g, end in enumerate(group_end):
        sub = matrix[:, : end + 1]
        matched = sub[max_sum_assignment(sub)]
        matched = matched[matched > 0]
        disc[g] = int(np.count_nonzero(matched > DISCRETE_THRESHOLD))
        cont[g] = float(matched.sum())
    # Values hold at thresholds decreasing; changes relative to the next higher threshold.
    d_disc = np.diff(disc, prepend=0)
    d_cont = np.diff(cont, prepend=0.0)
    return thresholds, d_disc, d_cont


def max_sum_assignment(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact one-to-one assignment maximising the sum of ``weights`` (m, n), values in [0, 1].

    Returns ``(rows, cols)`` of min(m, n) assigned pairs (some may have weight 0), as
    ``scipy.optimize.linear_sum_assignment(weights, maximize=True)`` would; solved with
    csgraph's LAPJVsp on costs ``2 - w`` over the complete bipartite graph (every cost is
    in [1, 2], so no edge is dropped and a full matching of the smaller side exists),
    which avoids importing scipy.optimize.
    """
    if weights.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    transpose = weights.shape[0] > weights.shape[1]
    w = weights.T if transpose else weights
    rows, cols = min_weight_full_bipartite_matching(csr_matrix(2.0 - w))
    return (cols, rows) if transpose else (rows, cols)


@dataclass(frozen=True)
class RocRows:
    """The official ROC rows: one per distinct score (ascending), plus DBL_MAX if needed.

    ``fp`` = detections kept - discrete true positives, as in the official program.
    """

    threshold: np.ndarray
    fp: np.ndarray
    tp_discrete: np.ndarray
    tp_continuous: np.ndarray
    n_faces: int


DBL_MAX = float(np.finfo(np.float64).max)


def roc_rows(scores: np.ndarray, events: MatchEvents, n_faces: int, add_dbl_max: bool) -> RocRows:
    """Accumulate events into ROC rows at every distinct score of ``scores`` (ascending).

    ``add_dbl_max``: append the official final row at threshold DBL_MAX (no detection
    kept), which the official program writes when some image has no detections.
    """
    thresholds = np.unique(scores)
    if add_dbl_max and (len(thresholds) == 0 or thresholds[-1] < DBL_MAX):
        thresholds = np.r_[thresholds, DBL_MAX]
    sorted_scores = np.sort(scores)
    kept = len(sorted_scores) - np.searchsorted(sorted_scores, thresholds, side="left")
    idx = np.searchsorted(thresholds, events.score)
    n = len(thresholds)
    disc = np.bincount(idx, weights=events.d_discrete, minlength=n)[::-1].cumsum()[::-1]
    cont = np.bincount(idx, weights=events.d_continuous, minlength=n)[::-1].cumsum()[::-1]
    disc = np.rint(disc).astype(np.int64)
    cont = np.maximum(cont, 0.0)
    return RocRows(
        threshold=thresholds,
        fp=(kept - disc).astype(np.float64),
        tp_discrete=disc.astype(np.float64),
        tp_continuous=cont,
        n_faces=int(n_faces),
    )
