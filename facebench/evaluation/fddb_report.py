"""Reports of FDDB evaluations: the JSON document of ``facebench eval fddb``.

JSON shape (a contract; scripts read it)::

    {"protocol": {"folds": [1, ..., 10], "overlap": "pixel", "rect_to_ellipse": "none",
                  "at": [200.0, 500.0, 1000.0], "tpr_rule": "step"},
     "methods": {"<name>": FddbResult.summary(at, interpolate) plus, from ``eval fddb``,
                 "protocol_hints", "checks", "warnings" and
                 "operating_points": {"discrete": {"best_f1", "at_precision", "at_fppi"}}}}

(checks and operating points: :mod:`facebench.evaluation.fddb_extras`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from facebench.evaluation.fddb import FddbResult
from facebench.evaluation.fddb_extras import FddbAnalysis


def report_json(
    results: Mapping[str, FddbResult],
    folds: Sequence[int],
    overlap: str,
    rect_to_ellipse: str,
    at: Sequence[float],
    interpolate: bool,
    analyses: Mapping[str, FddbAnalysis] | None = None,
) -> dict[str, Any]:
    """The JSON document described in the module docstring."""
    methods = {n: r.summary(at, interpolate) for n, r in results.items()}
    for name, analysis in (analyses or {}).items():
        methods[name].update(analysis.as_json())
    return {
        "protocol": {
            "folds": list(folds),
            "overlap": overlap,
            "rect_to_ellipse": rect_to_ellipse,
            "at": [float(k) for k in at],
            "tpr_rule": "interpolated" if interpolate else "step",
        },
        "methods": methods,
    }
