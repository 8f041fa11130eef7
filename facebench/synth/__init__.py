"""Synthetic face data set generator: the embedded default data (numpy + pillow, no torch).

``generate(out_dir, num_images=200, seed=0, val_fraction=0.25, max_side=512)`` writes a
data set in both the WIDER FACE and the FDDB layouts (see :mod:`facebench.synth.generate`);
the scene distribution is documented in :mod:`facebench.synth.layout`, the drawing in
:mod:`facebench.synth.render` and the annotation rules in :mod:`facebench.synth.labels`.
"""

from facebench.synth.generate import generate

__all__ = ["generate"]
