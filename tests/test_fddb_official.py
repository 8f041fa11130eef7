"""facebench's FDDB ROC against files written by the official C++ `evaluate` program.

See tests/data/fddb_official/PROVENANCE.md for how the expected files were made.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facebench.evaluation.fddb import evaluate_fddb, load_detections, tpr_at, write_roc_files
from facebench.formats.fddb import read_folds
from facebench.formats.imagesize import read_sizes_csv

DATA = Path(__file__).parent / "data" / "fddb_official"


@pytest.mark.parametrize("kind", ["rect", "ellipse"])
def test_matches_official_program_on_fold_1(shared_data, tmp_path, kind):
    images = read_folds(shared_data / "fddb" / "FDDB-folds", [1])
    sizes = read_sizes_csv(shared_data / "fddb" / "image_sizes.csv")
    dets = load_detections(DATA / f"fold01-{kind}.txt")
    assert dets.kind == kind
    res = evaluate_fddb(images, sizes, dets)
    disc_path, cont_path = write_roc_files(tmp_path, "m", res)
    official_disc = np.loadtxt(DATA / f"fold01-{kind}-official-DiscROC.txt")
    official_cont = np.loadtxt(DATA / f"fold01-{kind}-official-ContROC.txt")
    mine_disc, mine_cont = np.loadtxt(disc_path), np.loadtxt(cont_path)
    # Same rows (one per distinct score, plus DBL_MAX), same thresholds and counts.
    assert mine_disc.shape == official_disc.shape
    np.testing.assert_array_equal(mine_disc[:, 2], official_disc[:, 2])
    # The exact assignment may beat the official Hungarian routine by a face or two.
    assert np.abs(mine_disc[:, 1] - official_disc[:, 1]).max() <= 2
    assert np.abs(mine_disc[:, 0] - official_disc[:, 0]).max() <= 1e-3
    assert np.abs(mine_cont[:, 0] - official_cont[:, 0]).max() <= 1e-3
    for k in (200, 500, 1000):
        assert tpr_at(mine_disc[:, 1], mine_disc[:, 0], k) == pytest.approx(
            tpr_at(official_disc[:, 1], official_disc[:, 0], k), abs=1e-3
        )
    # On these inputs the files are in fact byte-identical.
    assert disc_path.read_text() == (DATA / f"fold01-{kind}-official-DiscROC.txt").read_text()
    assert cont_path.read_text() == (DATA / f"fold01-{kind}-official-ContROC.txt").read_text()
