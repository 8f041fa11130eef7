"""facebench: face detection evaluation (WIDER FACE, FDDB) and dataset formats.

This package is deliberately free of torch: evaluation and dataset I/O run with
numpy/scipy/shapely alone, so evaluating a detector never pays torch's import cost.
The PyTorch detector lives in the sibling package ``detector`` and the command line
in ``cli``.
"""

__version__ = "0.1.0"
