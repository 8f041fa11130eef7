"""facebench: face detection evaluation (WIDER FACE, FDDB) and dataset formats.

This package is deliberately free of torch: evaluation and dataset I/O run with
numpy/scipy/shapely alone, so evaluating a detector never pays torch's import cost.
The PyTorch detector lives in the sibling package ``detector`` and the command line
in ``cli``.

Python API (see :mod:`facebench.api`)::

    from facebench import evaluate_wider, evaluate_fddb
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "evaluate_fddb", "evaluate_wider"]


def __getattr__(name: str) -> Any:
    # Lazy: ``import facebench`` stays cheap; the evaluators load on first use.
    if name in ("evaluate_wider", "evaluate_fddb"):
        from facebench import api

        return getattr(api, name)
    raise AttributeError(f"module 'facebench' has no attribute {name!r}")
