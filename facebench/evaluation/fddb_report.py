"""Reports of FDDB evaluations: the JSON document of ``facebench eval fddb``.

JSON shape (a contract; scripts read it)::

    {"protocol": {"folds": [1, ..., 10], "overlap": "pixel", "rect_to_ellipse": "none",
                  "at": [200.0, 500.0, 1000.0], "tpr_rule": "step"},
     "methods": {"<name>": FddbResult.summary(at, interpolate)}}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from facebench.evaluation.fddb import FddbResult


def report_json(
    results: Mapping[str, FddbResult],
    folds: Sequence[int],
    overlap: str,
    rect_to_ellipse: str,
    at: Sequence[float],
    interpolate: bool,
) -> dict[str, Any]:
    """The JSON document described in the module docstring."""
    return {
        "protocol": {
            "folds": list(folds),
            "overlap": overlap,
            "rect_to_ellipse": rect_to_ellipse,
            "at": [float(k) for k in at],
            "tpr_rule": "interpolated" if interpolate else "step",
        },
        "methods": {n: r.summary(at, interpolate) for n, r in results.items()},
    }
