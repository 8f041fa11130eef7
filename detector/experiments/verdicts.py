"""Mean and spread over seeds, comparisons between designs, and the claims' verdicts.

Rules (fixed before any result; also written into every report):

* A design's value on a metric is the mean over its finished seeds; its **spread** is the
  sample standard deviation over those seeds (ddof 1; undefined with one seed).
* Comparing designs A and B: ``difference = mean_A - mean_B``; the spread of that difference
  is ``sqrt(spread_A^2 + spread_B^2)``. ``|difference| <= spread`` is **no difference**;
  otherwise A is ``higher`` or ``lower``. With fewer than 2 seeds on either side the
  comparison is ``undetermined``.
* A claim of kind ``better`` is **reproduced** when every comparison goes the claimed way,
  **no difference** when every comparison is a no-difference, and **not reproduced**
  otherwise (some comparison goes the other way, or the claimed and no-difference outcomes
  mix). A claim of kind ``same`` is reproduced when every comparison is a no-difference and
  not reproduced otherwise. Claims whose designs were not run are **not tested**; claims
  with an undetermined comparison are **undetermined**.

No Python-side judgement is involved: the verdict is a function of the numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from detector.experiments.paper import Claim, Comparison

NO_DIFFERENCE = "no difference"
HIGHER = "higher"
LOWER = "lower"
UNDETERMINED = "undetermined"

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
NOT_TESTED = "not tested"


@dataclass(frozen=True)
class Summary:
    """Mean and spread (sample std, NaN below 2 values) of one design on one metric."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def spread(self) -> float:
        return float(np.std(self.values, ddof=1)) if self.n >= 2 else math.nan


def summarise(values_by_design: Mapping[str, Mapping[str, Sequence[float]]]
              ) -> dict[str, dict[str, Summary]]:
    """``{design: {metric: [value per seed]}}`` -> ``{design: {metric: Summary}}``."""
    return {
        design: {metric: Summary(tuple(float(v) for v in vals)) for metric, vals in by.items()}
        for design, by in values_by_design.items()
    }


@dataclass(frozen=True)
class Outcome:
    """One comparison's result: A (``comparison.better``) against B on the metric."""

    comparison: Comparison
    difference: float
    spread: float
    result: str  # HIGHER / LOWER / NO_DIFFERENCE / UNDETERMINED


def compare(a: Summary, b: Summary, comparison: Comparison) -> Outcome:
    """Apply the module's comparison rule to two summaries."""
    difference = a.mean - b.mean
    if a.n < 2 or b.n < 2:
        return Outcome(comparison, difference, math.nan, UNDETERMINED)
    spread = math.hypot(a.spread, b.spread)
    if abs(difference) <= spread:
        result = NO_DIFFERENCE
    else:
        result = HIGHER if difference > 0 else LOWER
    return Outcome(comparison, difference, spread, result)


@dataclass(frozen=True)
class Verdict:
    claim: Claim
    verdict: str
    outcomes: tuple[Outcome, ...]
    missing: tuple[str, ...]

    def line(self) -> str:
        """``(k) text: verdict - metric difference (spread) [paper difference]; ...``."""
        head = f"({self.claim.id}) {self.claim.text}: {self.verdict.upper()}"
        if self.missing:
            return f"{head} - no finished runs of {', '.join(self.missing)}"
        parts = []
        for o in self.outcomes:
            c = o.comparison
            paper = c.paper_difference()
            paper_text = "n/a" if paper is None else f"{paper:+.1f}"
            spread = "n/a" if math.isnan(o.spread) else f"{o.spread:.1f}"
            parts.append(
                f"{c.better} vs {c.worse} {c.metric}: {o.difference:+.1f} "
                f"(spread {spread}; {o.result}; paper {paper_text})"
            )
        return f"{head} - " + "; ".join(parts)

    def to_dict(self) -> dict:
        return {
            "id": self.claim.id,
            "claim": self.claim.text,
            "kind": self.claim.kind,
            "source": self.claim.source,
            "verdict": self.verdict,
            "missing_designs": list(self.missing),
            "comparisons": [
                {
                    "a": o.comparison.better, "b": o.comparison.worse,
                    "metric": o.comparison.metric,
                    "claimed": "a ~ b" if self.claim.kind == "same" else "a > b",
                    "difference": _num(o.difference), "spread": _num(o.spread),
                    "result": o.result, "paper_difference": o.comparison.paper_difference(),
                }
                for o in self.outcomes
            ],
            "line": self.line(),
        }


def _num(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 4)


def judge(claim: Claim, summaries: Mapping[str, Mapping[str, Summary]]) -> Verdict:
    """The verdict on ``claim`` from ``summaries`` (AP in percent), by the module's rules."""
    missing = tuple(d for d in claim.designs if d not in summaries or not _has_runs(summaries[d]))
    if missing:
        return Verdict(claim, NOT_TESTED, (), missing)
    outcomes = tuple(
        compare(summaries[c.better][c.metric], summaries[c.worse][c.metric], c)
        for c in claim.comparisons
    )
    results = [o.result for o in outcomes]
    if UNDETERMINED in results:
        verdict = UNDETERMINED
    elif claim.kind == "same":
        verdict = REPRODUCED if all(r == NO_DIFFERENCE for r in results) else NOT_REPRODUCED
    elif all(r == HIGHER for r in results):
        verdict = REPRODUCED
    elif all(r == NO_DIFFERENCE for r in results):
        verdict = NO_DIFFERENCE
    else:
        verdict = NOT_REPRODUCED
    return Verdict(claim, verdict, outcomes, ())


def _has_runs(by_metric: Mapping[str, Summary]) -> bool:
    return any(s.n > 0 for s in by_metric.values())
