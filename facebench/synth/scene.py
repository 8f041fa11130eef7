"""One synthetic image: lay out a scene, draw it, measure it and annotate it.

:func:`render_image` is a pure function of ``(seed, index, max_side)``: its random stream
is ``SeedSequence(seed, spawn_key=(index,))``, so images can be drawn in any order or in
parallel processes and still come out byte for byte the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facebench.synth import labels
from facebench.synth.layout import Scene, sample_scene
from facebench.synth.render import (
    Canvas,
    finish,
    render_background,
    render_distractor,
    render_face,
    render_occluder,
    sample_look,
)


@dataclass
class SynthImage:
    """A drawn image and its annotations (N faces, in drawing order).

    ``boxes`` (N, 4) float ``x y w h``; ``attributes`` (N, 6) int32 in WIDER order;
    ``ellipses`` (N, 5) FDDB ``major minor angle cx cy``; ``visible`` (N,) the measured
    visible fraction of each head ellipse.
    """

    index: int
    kind: str
    event: str
    stem: str
    width: int
    height: int
    jpeg: bytes
    boxes: np.ndarray
    attributes: np.ndarray
    ellipses: np.ndarray
    visible: np.ndarray
    n_distractors: int

    @property
    def name(self) -> str:
        """WIDER image name, ``<event>/<stem>.jpg``."""
        return f"{self.event}/{self.stem}.jpg"


def image_rng(seed: int, index: int) -> np.random.Generator:
    """The random stream of image ``index`` under ``seed`` (independent of other images)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))


def render_image(seed: int, index: int, max_side: int) -> SynthImage:
    """Draw image ``index`` of the data set with ``seed``; see the module docstring."""
    rng = image_rng(seed, index)
    scene = sample_scene(rng, max_side)
    size = (scene.width, scene.height)
    canvas = Canvas(render_background(rng, scene.width, scene.height, scene.family))
    for d in scene.distractors:
        canvas.composite(render_distractor(d.kind, d.cx, d.cy, d.size, d.roll, rng, size))

    faces = scene.faces  # in drawing order: far faces first, nearer ones overlap them
    for k in range(len(faces)):
        look = sample_look(rng)
        sprite = render_face(
            faces.cx[k], faces.cy[k], faces.a[k], faces.b[k], faces.roll[k], faces.yaw[k],
            faces.blur_sigma[k], look, size,
        )
        canvas.composite(sprite, owner=k + 1)
    for o in scene.occluders:
        canvas.composite(render_occluder(o.kind, o.cx, o.cy, o.half_length, o.half_width,
                                         o.angle, rng, size))
    finish(canvas, rng)
    jpeg = canvas.encode_jpeg(scene.jpeg_quality)
    return _annotate(scene, faces, canvas, jpeg, index)


def _annotate(scene: Scene, faces, canvas: Canvas, jpeg: bytes, index: int) -> SynthImage:
    area = np.pi * faces.a * faces.b
    shown = np.array([canvas.visible_area(k + 1) for k in range(len(faces))], dtype=np.float64)
    visible = np.clip(shown / np.maximum(area, 1e-9), 0.0, 1.0) if len(faces) else shown
    boxes = labels.ellipse_boxes(faces.cx, faces.cy, faces.a, faces.b, faces.roll,
                                 scene.width, scene.height)
    attrs = labels.attributes(boxes, faces.blur_level, visible, faces.yaw, faces.roll)
    ellipses = labels.fddb_ellipses(faces.cx, faces.cy, faces.a, faces.b, faces.roll)
    number, label = scene.event.split("--", 1)
    stem = f"{number}_{label}_synth_{index}"
    return SynthImage(index, scene.kind, scene.event, stem, scene.width, scene.height, jpeg,
                      boxes, attrs, ellipses, visible, len(scene.distractors))
