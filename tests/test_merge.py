"""The one cross-scale merge (detector.merge) against hand-computed results."""

import numpy as np

from detector.merge import MergedWriter, merge_scales

# Two overlapping boxes of different scales (IoU 90/100 = 0.9 > 0.3), one box apart, and a
# box of scale 2 overlapping the kept box 0 (IoU 50/100 = 0.5) with a lower score.
ROWS = np.array([
    [0, 0, 10, 10, 0.9, 0],
    [0, 0, 10, 9, 0.8, 1],
    [50, 50, 60, 60, 0.7, 1],
    [0, 0, 10, 5, 0.6, 2],
    [20, 0, 30, 10, 0.5, 3],
], dtype=np.float32)  # fmt: skip


def test_merge_suppresses_across_scales_by_score():
    # Greedy by score: 0 kept, 1 (IoU 0.9 with 0) and 3 (IoU 0.5 with 0) suppressed although
    # their scale ids differ from box 0's; 2 and 4 overlap nothing.
    np.testing.assert_array_equal(merge_scales(ROWS, 0.3, 1000), ROWS[[0, 2, 4]])
    # IoU 0.5 is not above a 0.5 threshold: box 3 then survives, box 1 (0.9) does not.
    np.testing.assert_array_equal(merge_scales(ROWS, 0.5, 1000), ROWS[[0, 2, 3, 4]])


def test_merge_orders_by_score_and_caps():
    shuffled = ROWS[[4, 2, 0, 3, 1]]
    np.testing.assert_array_equal(merge_scales(shuffled, 0.3, 1000), ROWS[[0, 2, 4]])
    np.testing.assert_array_equal(merge_scales(ROWS, 0.3, 2), ROWS[[0, 2]])
    assert merge_scales(np.zeros((0, 6), np.float32), 0.3, 10).shape == (0, 6)
    assert merge_scales(ROWS.astype(np.float64), 0.3, 10).dtype == np.float32


def test_merged_writer_hands_on_the_merge():
    class Keep:
        def write(self, item, dets):
            self.item, self.rows = item, dets

        def close(self):
            return {"closed": True}

    sink = Keep()
    writer = MergedWriter(sink, nms_iou=0.3, keep=1)
    writer.write("img", ROWS)
    assert sink.item == "img"
    np.testing.assert_array_equal(sink.rows, ROWS[[0]])
    assert writer.close() == {"closed": True}
