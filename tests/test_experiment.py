"""``facebench experiment ablation``: verdict rules on hand-computed numbers, the paper's
numbers against the paper's own text, run keys, the report built from stored records, and
(slow) the --quick pipeline end to end with resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.app import main
from detector.experiments import verdicts as V
from detector.experiments.ablation import AblationState
from detector.experiments.paper import (
    CLAIMS,
    METRICS,
    PAPER_AP,
    PAPER_IOU_SQUARED,
    Claim,
    Comparison,
)
from detector.experiments.protocol import FULL, QUICK, scaled_budget
from detector.experiments.report import build_report, markdown, results_table
from detector.experiments.runs import DataSet

# ------------------------------------------------------------------ verdict rules


def test_summary_mean_and_sample_spread():
    s = V.Summary((1.0, 2.0, 6.0))
    assert s.mean == pytest.approx(3.0)
    # sample variance: ((1-3)^2 + (2-3)^2 + (6-3)^2) / 2 = 7
    assert s.spread == pytest.approx(math.sqrt(7.0))
    assert math.isnan(V.Summary((5.0,)).spread)


def test_compare_uses_the_spread_of_the_difference():
    c = Comparison("a", "b", "all")
    a, b = V.Summary((4.0, 5.0, 6.0)), V.Summary((1.0, 2.0, 3.0))  # sd 1 each
    out = V.compare(a, b, c)
    assert out.difference == pytest.approx(3.0)
    assert out.spread == pytest.approx(math.sqrt(2.0))
    assert out.result == V.HIGHER
    assert V.compare(b, a, c).result == V.LOWER
    # 1.2 <= sqrt(2): no difference, even though the means differ.
    near = V.compare(V.Summary((2.2, 3.2, 4.2)), b, c)
    assert near.difference == pytest.approx(1.2) and near.result == V.NO_DIFFERENCE
    assert V.compare(V.Summary((9.0,)), b, c).result == V.UNDETERMINED


def _summaries(table: dict[str, tuple[float, ...]]) -> dict:
    return V.summarise({d: {m: vals for m in METRICS} for d, vals in table.items()})


def test_judge_better_claim_all_outcomes():
    claim = Claim(9, "x beats y", "better", (Comparison("x", "y", "all"),
                                            Comparison("x", "y", "@16")), "test")
    assert V.judge(claim, _summaries({"x": (10, 11, 12), "y": (1, 2, 3)})).verdict == \
        V.REPRODUCED
    assert V.judge(claim, _summaries({"x": (1, 2, 3), "y": (1.5, 2, 2.5)})).verdict == \
        V.NO_DIFFERENCE
    assert V.judge(claim, _summaries({"x": (1, 2, 3), "y": (10, 11, 12)})).verdict == \
        V.NOT_REPRODUCED
    # Mixed: one metric as claimed, the other no difference -> not reproduced.
    mixed = V.summarise({
        "x": {"all": (10, 11, 12), "@16": (1, 2, 3)},
        "y": {"all": (1, 2, 3), "@16": (1, 2, 3)},
    })
    verdict = V.judge(claim, mixed)
    assert verdict.verdict == V.NOT_REPRODUCED
    assert [o.result for o in verdict.outcomes] == [V.HIGHER, V.NO_DIFFERENCE]
    assert V.judge(claim, _summaries({"x": (10,), "y": (1, 2, 3)})).verdict == V.UNDETERMINED
    missing = V.judge(claim, _summaries({"x": (10, 11)}))
    assert missing.verdict == V.NOT_TESTED and missing.missing == ("y",)


def test_judge_same_claim():
    claim = Claim(8, "x equals y", "same", (Comparison("x", "y", "all"),), "test")
    assert V.judge(claim, _summaries({"x": (1, 2, 3), "y": (2, 2.5, 3)})).verdict == \
        V.REPRODUCED
    assert V.judge(claim, _summaries({"x": (1, 2, 3), "y": (9, 10, 11)})).verdict == \
        V.NOT_REPRODUCED


# ------------------------------------------------------------------ the paper's numbers


def test_paper_numbers_agree_with_the_papers_text():
    # Section 3: "The AP of FPN is 90.9%, 91.3%, 87.6% ... FPN-finest-stride are 90.4%,
    # 91.0%, 87.1%"; section 6.1: "increasing from 80.2% to 82.8% on the whole dataset";
    # section 6.2: OHEM and focal loss "achieve 76.0% and 75.8%" on @16.
    t1 = {d: PAPER_AP[d][1] for d in PAPER_AP}
    assert [t1["fpn"][m] for m in ("easy", "medium", "hard")] == [90.9, 91.3, 87.6]
    assert [t1["fpn-finest-stride"][m] for m in ("easy", "medium", "hard")] == [90.4, 91.0, 87.1]
    assert (t1["fpn-finest"]["all"], t1["fpn-finest-sampling"]["all"]) == (80.2, 82.8)
    assert (t1["fpn-finest-ohem"]["@16"], t1["fpn-finest-focal"]["@16"]) == (76.0, 75.8)
    # Table 2's {P2..P5} row without GS (82.1 All, 72.3 @16) is Table 1's FPN.
    assert (t1["fpn"]["all"], t1["fpn"]["@16"]) == (82.1, 72.3)


def _paper_summaries(spread: float) -> dict:
    """The paper's numbers as three "seeds" ``v - spread, v, v + spread`` (sample sd = spread)."""
    return V.summarise({
        d: {m: (v - spread, v, v + spread) for m, v in row.items() if v is not None}
        for d, (_, row) in PAPER_AP.items()
    })


def test_claims_hold_on_the_papers_own_numbers():
    # With spread 0 every difference counts: claims 2, 3 and 5 are reproduced by the paper's
    # Tables 1 and 4, and claim 1's small differences (0.3-0.5 points) are differences.
    exact = _paper_summaries(0.0)
    for claim in (CLAIMS[1], CLAIMS[2], CLAIMS[4]):
        assert V.judge(claim, exact).verdict == V.REPRODUCED, claim.id
    assert V.judge(CLAIMS[0], exact).verdict == V.NOT_REPRODUCED
    # Table 1's FPN-finest-sampling row equals Table 3's smooth-L1 row; claim 4 holds only
    # against Table 3's own (1 - IoU)^2 row (83.7 vs 82.8 All).
    assert V.judge(CLAIMS[3], exact).verdict == V.NO_DIFFERENCE
    table3 = dict(exact)
    table3["fpn-finest-sampling"] = V.summarise({"x": {
        m: (v,) * 3 for m, v in PAPER_IOU_SQUARED.items() if v is not None}})["x"]
    assert V.judge(CLAIMS[3], table3).verdict == V.REPRODUCED
    assert CLAIMS[3].comparisons[0].paper_difference() == pytest.approx(0.9)
    # A spread of 1 point per design (sqrt(2) for a difference) makes claim 1 hold.
    assert V.judge(CLAIMS[0], _paper_summaries(1.0)).verdict == V.REPRODUCED


# ------------------------------------------------------------------ protocol


def test_sample_budget_scales_with_anchor_count():
    assert scaled_budget(2048, 1200) == 2048
    assert scaled_budget(2048, 320) == 128  # 2048 * (320/1200)^2 = 145.6 -> 2^7
    assert scaled_budget(1024, 320) == 64
    assert QUICK.n_per_group == scaled_budget(2048, QUICK.train_max_side)
    # cpu-full fixes N = 512 and B = 256 explicitly (see the protocol's notes).
    assert FULL.design_overrides() == {"group_size": 512, "ohem_batch": 256}
    assert "N = 128" in FULL.notes


def test_run_key_covers_what_changes_results():
    key = FULL.run_key("fpn", 0, "data")
    assert key == FULL.run_key("fpn", 0, "data")
    assert len({key, FULL.run_key("fpn", 1, "data"), FULL.run_key("rpn", 0, "data"),
                FULL.run_key("fpn", 0, "other"),
                FULL.with_changes(iterations=361).run_key("fpn", 0, "data"),
                FULL.with_changes(test_scales=(1.0,)).run_key("fpn", 0, "data")}) == 6
    # A new test protocol reuses the training run; a new schedule does not.
    train = FULL.train_key("fpn", 0, "data")
    assert FULL.with_changes(score_thresh=0.5).train_key("fpn", 0, "data") == train
    assert FULL.with_changes(iterations=7).train_key("fpn", 0, "data") != train


# ------------------------------------------------------------------ report from records


def _record(design: str, seed: int, all_ap: float) -> dict:
    ap = dict.fromkeys(METRICS, all_ap)
    return {"design": design, "seed": seed, "key": f"{design}{seed}", "ap": ap,
            "seconds": {"train": 1.0, "detect": 1.0},
            "train": {"first_loss": 1.0, "last_loss": 0.5}}


def test_report_table_and_verdicts_from_stored_records():
    records = [_record("fpn-finest", s, v) for s, v in enumerate((0.30, 0.32, 0.34))]
    records += [_record("fpn-finest-sampling", s, v) for s, v in enumerate((0.40, 0.42, 0.44))]
    state = AblationState(QUICK, DataSet(Path("."), Path("."), "x"),
                          ["fpn-finest", "fpn-finest-sampling"], [0, 1, 2], records)
    report = build_report(state)
    d = report["designs"]["fpn-finest"]
    assert d["mean"]["all"] == pytest.approx(32.0) and d["spread"]["all"] == pytest.approx(2.0)
    assert d["feature"] == "P2" and d["stride"] == "4" and not d["group_sampling"]
    assert report["designs"]["fpn-finest-sampling"]["group_sampling"]
    table = "\n".join(results_table(report))
    assert "| **fpn-finest** (ours, 3 seeds) | P2 | 4 |  | 32.0 ± 2.0 |" in table
    assert "*80.2*" in table  # the paper's All beside ours
    claim3 = next(c for c in report["claims"] if c["id"] == 3)
    # 42 - 32 = 10 > sqrt(2^2 + 2^2): every comparison as claimed.
    assert claim3["verdict"] == V.REPRODUCED
    assert claim3["comparisons"][0]["difference"] == pytest.approx(10.0)
    assert next(c for c in report["claims"] if c["id"] == 1)["verdict"] == V.NOT_TESTED
    assert report["complete"]
    text = markdown(report)
    assert "## Protocol (fixed before results)" in text and "N = 128 per scale group" in text
    # The verdict rules are printed as their three bullets, whole.
    rules = [line for line in text.splitlines() if line.startswith("* ")]
    assert len(rules) == 3 and "**spread** is the sample standard deviation" in rules[0]
    # Drop one run: the report says it is partial and names the run.
    state.results = records[:-1]
    partial = build_report(state)
    assert not partial["complete"]
    assert partial["missing_runs"] == [{"design": "fpn-finest-sampling", "seed": 2}]
    assert "Partial results" in markdown(partial)


# ------------------------------------------------------------------ CLI


def test_unknown_design_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(main, ["experiment", "ablation", "--designs", "fpn,nope",
                                       "--data", str(tmp_path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "unknown design 'nope'" in result.output


def test_data_without_a_wider_layout_is_a_clear_error(tmp_path):
    (tmp_path / "d").mkdir()
    result = CliRunner().invoke(main, ["experiment", "ablation", "--data", str(tmp_path / "d"),
                                       "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "no WIDER_val/" in result.output


@pytest.mark.slow
def test_quick_ablation_end_to_end_and_resume(tmp_path):
    out = tmp_path / "abl"
    args = ["experiment", "ablation", "--quick", "--seeds", "2", "--out", str(out)]
    result = CliRunner().invoke(main, [*args, "--json", str(tmp_path / "copy.json")],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "4 run(s) trained, 0 reused" in result.output
    report = json.loads((out / "report.json").read_text())
    assert report == json.loads((tmp_path / "copy.json").read_text())
    assert report["complete"] and len(report["runs"]) == 4
    assert set(report["designs"]) == {"fpn-finest", "fpn-finest-sampling"}
    for run in report["runs"]:
        assert set(run["ap"]) == set(METRICS)
        assert all(0.0 <= v <= 100.0 for v in run["ap"].values())
    assert [c["id"] for c in report["claims"]] == [1, 2, 3, 4, 5]
    assert report["claims"][2]["verdict"] in {V.REPRODUCED, V.NOT_REPRODUCED, V.NO_DIFFERENCE}
    assert report["anchor_stats"]["designs"]["fpn-finest-sampling"]["group_size"] == \
        QUICK.n_per_group
    for png in ("figure2.png", "ap_by_scale.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (out / "report.md").read_text()
    assert "## Verdicts on the paper's claims" in text and "(3) group sampling" in text
    # Per-scale outputs exist for every run (the @16..@128 sub-detectors).
    run_dirs = sorted(out.glob("runs/*/seed*"))
    assert len(run_dirs) == 4
    assert {p.name for p in (run_dirs[0] / "detections").iterdir()} == {
        "wider", "wider@16", "wider@32", "wider@64", "wider@128"}

    # Re-running reuses every finished run (nothing trained) and gives the same numbers.
    again = CliRunner().invoke(main, args, catch_exceptions=False)
    assert again.exit_code == 0 and "0 run(s) trained, 4 reused" in again.output
    assert json.loads((out / "report.json").read_text())["runs"] == report["runs"]

    # A run killed after training (no result.json) is finished from its checkpoint.
    next(run_dirs[0].glob("result-*.json")).unlink()
    resumed = CliRunner().invoke(main, args, catch_exceptions=False)
    assert resumed.exit_code == 0 and "1 run(s) trained, 3 reused" in resumed.output
    rerun = json.loads((out / "report.json").read_text())["runs"]
    assert [(r["design"], r["seed"], r["ap"], r["first_loss"], r["last_loss"]) for r in rerun] \
        == [(r["design"], r["seed"], r["ap"], r["first_loss"], r["last_loss"])
            for r in report["runs"]]


def test_code_fingerprint_follows_the_source(tmp_path, monkeypatch):
    from detector.experiments import protocol

    (tmp_path / "detector").mkdir()
    (tmp_path / "detector" / "model.py").write_text("x = 1\n")
    (tmp_path / "detector" / "inference.py").write_text("y = 1\n")
    monkeypatch.setattr(protocol, "_REPO", tmp_path)

    def fresh(part: str) -> str:
        monkeypatch.setattr(protocol, "_code_cache", {})
        return protocol.code_fingerprint(part)

    train, test = fresh("train"), fresh("test")
    (tmp_path / "detector" / "inference.py").write_text("y = 2\n")
    assert fresh("train") == train and fresh("test") != test  # inference is test code
    (tmp_path / "detector" / "model.py").write_text("x = 2\n")
    assert fresh("train") != train


def test_run_lock_is_exclusive(tmp_path):
    from detector.experiments.runs import run_lock

    with run_lock(tmp_path, wait_s=0.0) as first, run_lock(tmp_path, wait_s=0.2) as second:
        assert first and not second
    with run_lock(tmp_path, wait_s=0.0) as again:
        assert again  # released on exit


def test_report_only_finds_results_of_older_code(tmp_path):
    from detector.experiments.runs import RunSpec, finished_result, older_code_result

    spec = RunSpec("fpn", 0, QUICK, DataSet(tmp_path, tmp_path, "data-x"))
    folder = tmp_path / "runs" / "fpn" / "seed0-0123456789ab"
    folder.mkdir(parents=True)
    record = {"key": "made-by-older-code", "design": "fpn", "seed": 0,
              "data_fingerprint": "data-x", "train_recipe": QUICK.train_recipe(),
              "test_protocol": QUICK.test_protocol(), "finished": "2026-01-01T00:00:00Z"}
    (folder / "result-made-by-old.json").write_text(json.dumps(record))
    other = {**record, "train_recipe": {**QUICK.train_recipe(), "iterations": 99}}
    (folder / "result-other-recipe.json").write_text(json.dumps(other))
    assert finished_result(spec, tmp_path / "runs") is None  # never reused for training
    found = older_code_result(spec, tmp_path / "runs")
    assert found is not None and found["older_code"] and found["key"] == "made-by-older-code"
    assert older_code_result(RunSpec("fpn", 1, QUICK, spec.data), tmp_path / "runs") is None


# ------------------------------------------------------------------ budget sweep (issue 12)


def test_budget_protocol_and_focal_runs_once():
    from detector.experiments.protocol import FULL_V2

    assert FULL_V2.sweep == (64, 128, 512)
    at64 = FULL_V2.for_run("fpn-finest-sampling", 64)
    assert at64.design_overrides() == {"group_size": 64, "ohem_batch": 32}
    # Focal loss samples nothing: every N gives the same run key (one run for the sweep).
    keys = {FULL_V2.for_run("fpn-finest-focal", n).run_key("fpn-finest-focal", 0, "d")
            for n in FULL_V2.sweep}
    assert len(keys) == 1
    assert len({FULL_V2.for_run("fpn-finest", n).run_key("fpn-finest", 0, "d")
                for n in FULL_V2.sweep}) == 3
    assert FULL_V2.test_protocol()["calibration_images"] == 32
    assert "calibration_images" not in FULL.test_protocol()  # old run keys unchanged


def test_bad_budgets_option_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(main, ["experiment", "ablation", "--budgets", "64,x",
                                       "--data", str(tmp_path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "--budgets: 'x' is not an integer N >= 2" in result.output


@pytest.mark.slow
def test_budget_sweep_with_calibration_end_to_end(tmp_path):
    from detector.experiments.ablation import run_ablation
    from detector.experiments.report import write_report

    protocol = QUICK.with_changes(budgets=(8, 64), calibration_images=3)
    designs = ["fpn-finest", "fpn-finest-sampling", "fpn-finest-focal"]
    state = run_ablation(tmp_path / "abl", protocol, designs, [0], threads=1)
    assert state.trained == 5 and state.reused == 1  # focal: one run for both budgets
    report = write_report(tmp_path / "abl", state)
    assert report["budgets"] == [8, 64] and set(report["by_budget"]) == {"8", "64"}
    assert report["complete"] and len(report["runs"]) == 6
    assert report["verdict_lines"][0].startswith("N=8: (1)")
    small, large = (report["by_budget"][n]["positives_vs_fpn_finest"] for n in ("8", "64"))
    # N = 8 per group (2 positives) against 32 random samples (8 positives): the quota binds.
    assert min(small) < 1.0 and min(small) <= min(large)
    for run_dir in (tmp_path / "abl" / "runs").glob("*/seed*"):
        assert (run_dir / "detections" / "wider-calibrated").is_dir()
        assert (run_dir / "train" / "model_final.pt.calibration.json").is_file()
    for r in state.results:
        assert {"calibrated/all", "@16/easy", "@128/hard"} <= set(r["ap"])
    sec = report["by_budget"]["8"]
    assert set(sec["calibration"]) == set(designs)
    text = (tmp_path / "abl" / "report.md").read_text()
    assert "## Results at N = 64" in text and "Merge with and without calibration" in text
    assert (tmp_path / "abl" / "figure2-N8.png").is_file()
