"""Parsing of ``NAME=PATH`` method arguments shared by the evaluators."""

from __future__ import annotations

from pathlib import Path

from facebench.errors import FacebenchError


def parse_method_specs(specs: tuple[str, ...] | list[str]) -> list[tuple[str, Path]]:
    """``NAME=PATH`` or ``PATH`` -> [(name, path)], in argument order.

    An unnamed path is named after its folder (a prediction folder) or its file stem (a
    detection file). A spec containing ``=`` that exists as a path is taken as a path, so
    odd file names still work. Names must be unique: they key the results.
    """
    methods: list[tuple[str, Path]] = []
    for spec in specs:
        name, sep, rest = spec.partition("=")
        if sep and not Path(spec).exists():
            if not name or not rest:
                raise FacebenchError(f"{spec!r}: expected NAME=PATH")
            path = Path(rest)
        else:
            path = Path(spec)
            name = path.stem if path.is_file() else (path.resolve().name or str(path))
        if any(name == other for other, _ in methods):
            raise FacebenchError(f"method name {name!r} given twice; name them with NAME=PATH")
        methods.append((name, path))
    return methods


def parse_floats(text: str | None, option: str) -> tuple[float, ...] | None:
    """``"0.5,1,2"`` -> (0.5, 1.0, 2.0); None stays None; anything else names ``option``."""
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise FacebenchError(f"{option}: expected a comma list of numbers, got {text!r}") from None
    if not values or any(not v > 0 for v in values):
        raise FacebenchError(f"{option}: expected positive numbers, got {text!r}")
    return values
