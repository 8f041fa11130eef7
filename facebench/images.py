"""Reading images safely: header size first, then pixels, the same way everywhere.

Two rules hold for every command that reads image sizes or pixels (detect, eval fddb
--images, train, stats anchors):

* **Pixel limit.** The width and height in the file header are checked against a limit
  (default :data:`DEFAULT_MAX_IMAGE_PIXELS`, 150 megapixels) *before* any pixels are
  decoded, so a small file that claims 40000x40000 pixels is refused with one line instead
  of exhausting memory inside OpenCV or PIL. Raise it with ``--max-image-pixels`` or the
  environment variable ``FACEBENCH_MAX_IMAGE_PIXELS`` (inherited by data-loading workers).
* **EXIF orientation is ignored.** Pixels are used as stored, exactly as header sizes are
  read and as WIDER FACE and FDDB annotate them (their boxes and ellipses refer to the
  stored pixel grid). OpenCV would otherwise rotate some images and not others.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from facebench.errors import FacebenchError, FormatError, describe_os_error

DEFAULT_MAX_IMAGE_PIXELS = 150_000_000
MAX_IMAGE_PIXELS_ENV = "FACEBENCH_MAX_IMAGE_PIXELS"


def max_image_pixels() -> int:
    """The pixel limit in force: ``FACEBENCH_MAX_IMAGE_PIXELS`` if set, else the default."""
    text = os.environ.get(MAX_IMAGE_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise FacebenchError(f"{MAX_IMAGE_PIXELS_ENV}={text!r}: expected a whole number >= 1")
    return value


def set_max_image_pixels(limit: int) -> None:
    """Set the limit for this process and the worker processes it starts."""
    if limit < 1:
        raise FacebenchError(f"the image pixel limit must be >= 1, got {limit}")
    os.environ[MAX_IMAGE_PIXELS_ENV] = str(int(limit))


def check_pixel_count(path: str | Path, width: int, height: int) -> None:
    """Refuse an image whose header size exceeds the pixel limit (message says how to raise it)."""
    limit = max_image_pixels()
    if width * height > limit:
        raise FormatError(
            path,
            f"image is {width}x{height} = {width * height / 1e6:.0f} megapixels, above the "
            f"limit of {limit / 1e6:g} megapixels (raise it with --max-image-pixels or "
            f"{MAX_IMAGE_PIXELS_ENV})",
        )


def header_size(path: str | Path, check: bool = True) -> tuple[int, int]:
    """``(width, height)`` from the image header, without decoding pixels.

    Raises FacebenchError for a missing or unreadable file, FormatError for a file that is
    not an image, has a non-positive size or (``check``) exceeds the pixel limit.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with warnings.catch_warnings():
            # Our own limit applies below; PIL's bomb check would fail before we know the size.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                with Image.open(path) as img:
                    width, height = img.size
            finally:
                Image.MAX_IMAGE_PIXELS = saved
    except FileNotFoundError:
        raise FacebenchError(f"{path}: image file not found") from None
    except (NotADirectoryError, IsADirectoryError, PermissionError) as exc:
        raise FacebenchError(describe_os_error(exc, path, "cannot read image")) from None
    except UnidentifiedImageError:
        raise FormatError(path, "not a readable image: cannot decode the header") from None
    except (OSError, SyntaxError, ValueError) as exc:  # PIL's header parsers raise all three
        raise FormatError(path, f"not a readable image: cannot decode the header ({exc})") from None
    if width <= 0 or height <= 0:
        raise FormatError(path, f"image header gives size {width}x{height}")
    if check:
        check_pixel_count(path, width, height)
    return int(width), int(height)


def decode_image_rgb(path: str | Path, reduce: int = 1, check: bool = True) -> np.ndarray:
    """Decode ``path`` to ``(H, W, 3)`` uint8 RGB (EXIF orientation ignored).

    ``reduce`` in (1, 2, 4, 8) decodes at ``1/reduce`` size (JPEG DCT scaling: fast).
    ``check`` first reads the header and applies the pixel limit (skip it only where the
    caller has just done so).
    """
    import cv2

    if check:
        header_size(path)
    flags = {
        2: cv2.IMREAD_REDUCED_COLOR_2,
        4: cv2.IMREAD_REDUCED_COLOR_4,
        8: cv2.IMREAD_REDUCED_COLOR_8,
    }
    flag = flags.get(reduce, cv2.IMREAD_COLOR) | cv2.IMREAD_IGNORE_ORIENTATION
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except FileNotFoundError:
        raise FacebenchError(f"{path}: image file not found") from None
    except OSError as exc:
        raise FacebenchError(describe_os_error(exc, path, "cannot read image")) from None
    try:
        image = cv2.imdecode(data, flag) if data.size else None
    except cv2.error:
        image = None
    if image is None:
        raise FormatError(path, "cannot decode image (unsupported or corrupt file)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def check_image_files(
    paths: Sequence[str | Path], progress: Callable[[int, int], None] | None = None
) -> list[tuple[int, int]]:
    """Read every image header up front; return ``(width, height)`` per path.

    Checks existence, that the header decodes, a positive size and the pixel limit, so a
    bad image is reported before hours of work rather than when a worker reaches it. All
    files are checked; the error names the first bad one and counts the rest.
    ``progress(done, total)`` is called about every 1% of the files.
    """
    sizes: list[tuple[int, int]] = []
    first: FacebenchError | None = None
    bad = 0
    total = len(paths)
    step = max(1, total // 100)
    for index, path in enumerate(paths):
        try:
            sizes.append(header_size(path))
        except FacebenchError as exc:
            bad += 1
            first = first or exc
            sizes.append((0, 0))
        if progress is not None and (index % step == 0 or index == total - 1):
            progress(index + 1, total)
    if first is not None:
        more = f" (and {bad - 1} more bad images)" if bad > 1 else ""
        raise FacebenchError(f"{first}{more}")
    return sizes
