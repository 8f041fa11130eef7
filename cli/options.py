"""Click parameter types that check option values at the command line.

Every number a command feeds into training or detection passes through one of these, so a
NaN learning rate or a negative worker count is refused in one line before any work starts.
"""

from __future__ import annotations

import math
import re
from typing import Any

import click

from facebench.errors import FacebenchError
from facebench.outputs import check_output_dir, check_output_file


class Number(click.ParamType):
    """A finite int or float within bounds: ``Number(float, low=0, low_open=True)`` is > 0."""

    def __init__(
        self,
        kind: type = float,
        low: float | None = None,
        high: float | None = None,
        low_open: bool = False,
        high_open: bool = False,
    ) -> None:
        self.kind = kind
        self.low, self.high = low, high
        self.low_open, self.high_open = low_open, high_open
        self.name = "integer" if kind is int else "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        if isinstance(value, self.kind) and not isinstance(value, bool):
            number = value
        else:
            try:
                number = self.kind(str(value).strip())
            except ValueError:
                what = "a whole number" if self.kind is int else "a number"
                self.fail(f"{value!r} is not {what}", param, ctx)
        if self.kind is float and not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        low, high = self.low, self.high
        if low is not None and (number < low or (self.low_open and number == low)):
            self.fail(f"{value!r} must be {'>' if self.low_open else '>='} {low:g}", param, ctx)
        if high is not None and (number > high or (self.high_open and number == high)):
            self.fail(f"{value!r} must be {'<' if self.high_open else '<='} {high:g}", param, ctx)
        return number


POSITIVE_FLOAT = Number(float, low=0, low_open=True)
NON_NEGATIVE_FLOAT = Number(float, low=0)
PROBABILITY = Number(float, low=0, high=1)
NMS_IOU = Number(float, low=0, high=1, low_open=True)
MOMENTUM = Number(float, low=0, high=1, high_open=True)
POSITIVE_INT = Number(int, low=1)
NON_NEGATIVE_INT = Number(int, low=0)


def positive_floats(text: str, option: str) -> tuple[float, ...]:
    """Comma-separated finite numbers > 0 (e.g. ``--scales 0.5,1,2``)."""
    values = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = float(part)
        except ValueError:
            raise click.BadParameter(f"{part!r} is not a number", param_hint=option) from None
        if not math.isfinite(value) or value <= 0:
            raise click.BadParameter(f"{part!r} must be a finite number > 0", param_hint=option)
        values.append(value)
    if not values:
        raise click.BadParameter("expected at least one number", param_hint=option)
    return tuple(values)


class OutputFile(click.ParamType):
    """A file the command will write ('-' is stdout): refused up front if unwritable."""

    name = "file"

    def __init__(self, allow_stdout: bool = True, path_type: type = str) -> None:
        self.allow_stdout = allow_stdout
        self.path_type = path_type

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        try:
            check_output_file(value, allow_stdout=self.allow_stdout)
        except FacebenchError as exc:
            self.fail(str(exc), param, ctx)
        return value if str(value) == "-" else self.path_type(value)


class OutputDir(click.ParamType):
    """A folder the command will create or fill: refused up front if unusable."""

    name = "folder"

    def __init__(self, path_type: type = str) -> None:
        self.path_type = path_type

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        try:
            check_output_dir(value)
        except FacebenchError as exc:
            self.fail(str(exc), param, ctx)
        return self.path_type(value)


_DEVICE = re.compile(r"^(auto|cpu|cuda|mps)(:\d+)?$")


class Device(click.ParamType):
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``: the spelling is checked here,
    availability where the device is resolved (``detector.devices``)."""

    name = "device"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        text = str(value).strip().lower()
        match = _DEVICE.match(text)
        if not match or (match.group(2) and match.group(1) not in ("cuda",)):
            self.fail(f"{value!r} is not a device (auto, cpu, cuda, cuda:N, mps)", param, ctx)
        return text


def _set_pixel_limit(ctx: click.Context, param: click.Parameter, value: int | None) -> None:
    if value is not None:
        from facebench.images import set_max_image_pixels

        set_max_image_pixels(value)


def max_image_pixels_option(command):
    """``--max-image-pixels N``: raise (or lower) the header pixel limit of this run."""
    from facebench.images import DEFAULT_MAX_IMAGE_PIXELS, MAX_IMAGE_PIXELS_ENV

    return click.option(
        "--max-image-pixels",
        type=POSITIVE_INT,
        default=None,
        expose_value=False,
        is_eager=True,
        callback=_set_pixel_limit,
        help=f"Refuse images whose header claims more pixels (default "
        f"{DEFAULT_MAX_IMAGE_PIXELS:,}, or ${MAX_IMAGE_PIXELS_ENV}).",
    )(command)


def protocol_hint_options(protocol_json: str) -> Any:
    """The options both evaluators share: how the detector ran (for the protocol checks;
    default read from ``protocol_json``) and the operating points to report."""
    options = [
        click.option(
            "--score-thresh", type=float, default=None,
            help=f"Score threshold the detector ran with (default: from {protocol_json}).",
        ),
        click.option(
            "--test-scales", default=None,
            help=f"Test scales the detector ran at, e.g. 0.5,1,2 (default: from {protocol_json}).",
        ),
        click.option(
            "--at-precision", type=click.FloatRange(0, 1), default=0.9, show_default=True,
            help="Operating point: the threshold with the most recall at this precision.",
        ),
        click.option(
            "--at-fppi", type=click.FloatRange(0), default=1.0, show_default=True,
            help="Operating point: recall at this many false positives per image.",
        ),
    ]

    def decorate(command: Any) -> Any:
        for option in reversed(options):
            command = option(command)
        return command

    return decorate
