"""The ablation report: ``report.json``, ``report.md`` (Table 1 layout), ``figure2.png``,
``ap_by_scale.png``.

``report.json`` (AP in percent)::

    {"protocol": {...}, "rules": "...", "data": {...},
     "designs": {"<design>": {"feature": "P2", "stride": "4", "group_sampling": true,
                              "seeds": [0, 1, 2], "values": {"<metric>": [...]},
                              "mean": {"<metric>": x}, "spread": {"<metric>": x | null},
                              "paper": {"<metric>": x | null}, "paper_source": "Table 1"}},
     "claims": [{"id", "claim", "verdict", "comparisons": [...], "line"}],
     "verdict_lines": [...], "anchor_stats": {...}, "runs": [...], "missing_runs": [...],
     "complete": bool}

Metrics are ``easy``, ``medium``, ``hard``, ``all`` and ``@16``..``@128`` (see
:mod:`detector.experiments.paper`). Everything in the report is computed from the stored run
records; nothing is typed in by hand except the paper's published numbers.
"""

from __future__ import annotations

import math
import re
import subprocess
from pathlib import Path

import numpy as np

from detector.experiments import verdicts as V
from detector.experiments.ablation import AblationState
from detector.experiments.paper import CLAIMS, METRICS, PAPER_AP, SUB_DETECTORS
from detector.experiments.protocol import scaled_budget
from facebench.atomic import atomic_open, write_json

TITLES = {"easy": "Easy", "medium": "Medium", "hard": "Hard", "all": "All"}


def design_columns(name: str, overrides: dict) -> dict:
    """Feature map(s), anchor stride(s) and group sampling of a design, as in Table 1."""
    from detector.designs import get_design

    d = get_design(name, **overrides)
    levels = list(dict.fromkeys(d.levels))
    strides = list(d.strides)
    return {
        "feature": levels[0] if len(levels) == 1 else "{" + ", ".join(levels) + "}",
        "stride": str(strides[0]) if len(set(strides)) == 1
        else "{" + ", ".join(str(s) for s in strides) + "}",
        "group_sampling": d.sampler == "group",
        "sampler": d.sampler,
        "regression_loss": d.regression_loss,
        "classification_loss": d.classification_loss,
    }


def collect(state: AblationState) -> dict[str, dict[str, list[float]]]:
    """``{design: {metric: [AP % per finished seed, seed order]}}`` for the state's designs:
    the paper's :data:`METRICS` and, where the runs have them, the sub-detectors' Easy /
    Medium / Hard (``@16/easy`` ...) and the calibrated merge (``calibrated/all`` ...)."""
    extra = [f"{sub}/{s}" for sub in SUB_DETECTORS for s in ("easy", "medium", "hard")]
    extra += [f"calibrated/{s}" for s in TITLES]
    by: dict[str, dict[str, list[float]]] = {d: {m: [] for m in METRICS} for d in state.designs}
    for record in sorted(state.results, key=lambda r: (r["design"], r["seed"])):
        if record["design"] not in by:
            continue
        for metric in METRICS:
            by[record["design"]][metric].append(100.0 * float(record["ap"][metric]))
        for metric in extra:
            if metric in record["ap"]:
                by[record["design"]].setdefault(metric, []).append(
                    100.0 * float(record["ap"][metric]))
    return by


def positives_ratio(anchor_stats: dict | None) -> list[float] | None:
    """Sampled positives per scale of fpn-finest-sampling over fpn-finest's (same data,
    augmentation and budget), or None without both designs' counts."""
    designs = (anchor_stats or {}).get("designs") or {}
    base, gs = designs.get("fpn-finest"), designs.get("fpn-finest-sampling")
    if not (base and gs):
        return None
    return [round(g / b, 4) if b else float("nan")
            for g, b in zip(gs["sampled_positives"], base["sampled_positives"], strict=True)]


def calibration_summary(state: AblationState) -> dict[str, dict]:
    """Per design: merged AP (mean over seeds) with the plain NMS merge and with calibration
    first, and in how many seeds calibration was higher, per setting. Designs whose runs
    have no calibrated output are left out."""
    out: dict[str, dict] = {}
    for name in state.designs:
        runs = [r for r in state.results if r["design"] == name and "calibrated/all" in r["ap"]]
        if not runs:
            continue
        entry: dict = {"seeds": sorted(r["seed"] for r in runs)}
        for setting in TITLES:
            nms = [100.0 * r["ap"][setting] for r in runs]
            cal = [100.0 * r["ap"][f"calibrated/{setting}"] for r in runs]
            entry[setting] = {
                "nms": round(float(np.mean(nms)), 3), "calibrated": round(float(np.mean(cal)), 3),
                "calibrated_higher": sum(c > n for c, n in zip(cal, nms, strict=True)),
                "runs": len(runs),
            }
        out[name] = entry
    return out


def _budget_section(state: AblationState) -> dict:
    """Everything one budget N contributes: Table 1 rows, verdicts, anchor statistics and
    the positives ratio, calibrated against NMS merge, runs."""
    values = collect(state)
    summaries = V.summarise(values)
    overrides = state.protocol.design_overrides()
    designs = {}
    for name in state.designs:
        source, paper = PAPER_AP.get(name, (None, dict.fromkeys(METRICS)))
        seeds = sorted(r["seed"] for r in state.results if r["design"] == name)
        metrics = list(values[name])
        designs[name] = {
            **design_columns(name, overrides),
            "seeds": seeds,
            "values": {m: [round(v, 3) for v in values[name][m]] for m in metrics},
            "mean": {m: _num(summaries[name][m].mean) for m in metrics},
            "spread": {m: _num(summaries[name][m].spread) for m in metrics},
            "paper": dict(paper),
            "paper_source": source,
        }
    judged = [V.judge(claim, summaries) for claim in CLAIMS]
    done = {(r["design"], r["seed"]) for r in state.results}
    missing = [
        {"design": d, "seed": s} for s in state.seeds for d in state.designs if (d, s) not in done
    ]
    runs = [
        {
            "design": r["design"], "seed": r["seed"], "key": r["key"],
            "budget": r.get("budget", state.protocol.n_per_group),
            "ap": {m: round(100.0 * r["ap"][m], 3) for m in METRICS},
            "calibrated_all": (round(100.0 * r["ap"]["calibrated/all"], 3)
                               if "calibrated/all" in r["ap"] else None),
            "train_seconds": r["seconds"]["train"], "detect_seconds": r["seconds"]["detect"],
            "first_loss": r["train"]["first_loss"], "last_loss": r["train"]["last_loss"],
            "older_code": bool(r.get("older_code", False)),
        }
        for r in sorted(state.results, key=lambda r: (r["seed"], r["design"]))
    ]
    return {
        "n_per_group": state.protocol.n_per_group,
        "designs": designs,
        "claims": [v.to_dict() for v in judged],
        "verdict_lines": [v.line() for v in judged],
        "anchor_stats": state.anchor_stats,
        "positives_vs_fpn_finest": positives_ratio(state.anchor_stats),
        "calibration": calibration_summary(state),
        "runs": runs,
        "missing_runs": missing,
        "complete": not missing,
    }


def build_report(state: AblationState) -> dict:
    """The report document (see the module docstring). A budget sweep (several N) holds
    one section per N under ``by_budget`` and prefixes the verdict lines with the N."""
    head = {
        "protocol": {**state.protocol.plain(), "designs": state.designs, "seeds": state.seeds,
                     "code_commit": _commit()},
        "rules": V.__doc__.split("Rules (fixed before any result; also written into every "
                                 "report):")[1].split("No Python-side")[0].strip(),
        "data": state.data_info,
    }
    budgets = state.budgets or [state.protocol.n_per_group]
    if len(budgets) == 1:
        return {**head, **_budget_section(state)}
    sections = {str(n): _budget_section(state.at_budget(n)) for n in budgets}
    return {
        **head,
        "budgets": budgets,
        "by_budget": sections,
        "verdict_lines": [f"N={n}: {line}" for n, sec in sections.items()
                          for line in sec["verdict_lines"]],
        "runs": [r for sec in sections.values() for r in sec["runs"]],
        "missing_runs": [{**m, "budget": int(n)} for n, sec in sections.items()
                         for m in sec["missing_runs"]],
        "complete": all(sec["complete"] for sec in sections.values()),
    }


def _num(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 3)


def _commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
            capture_output=True, text=True, timeout=10, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def write_report(out: Path, state: AblationState) -> dict:
    """Write report.json, report.md and the figures into ``out``; return the document. A
    budget sweep writes ``figure2-N<n>.png`` and ``ap_by_scale-N<n>.png`` per N."""
    report = build_report(state)
    write_json(out / "report.json", report)
    if "by_budget" not in report:
        if state.anchor_stats:
            plot_figure2(state, out / "figure2.png")
        plot_ap_by_scale(report, out / "ap_by_scale.png")
    else:
        for n in report["budgets"]:
            sub = state.at_budget(n)
            if sub.anchor_stats:
                plot_figure2(sub, out / f"figure2-N{n}.png")
            plot_ap_by_scale(report["by_budget"][str(n)], out / f"ap_by_scale-N{n}.png")
    with atomic_open(out / "report.md", "w", encoding="utf-8") as f:
        f.write(markdown(report))
    return report


# ---------------------------------------------------------------------------- markdown


def _cell(mean: float | None, spread: float | None) -> str:
    if mean is None:
        return "–"
    return f"{mean:.1f}" if spread is None else f"{mean:.1f} ± {spread:.1f}"


def results_table(report: dict) -> list[str]:
    """Table 1 layout: per design our row (mean ± spread over seeds) and the paper's row."""
    head = ["Methods", "Feature", "Anchor Stride", "GS", *[TITLES.get(m, m) for m in METRICS]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, d in report["designs"].items():
        gs = "✓" if d["group_sampling"] else ""
        n = len(d["seeds"])
        ours = [_cell(d["mean"][m], d["spread"][m]) for m in METRICS]
        lines.append(f"| **{name}** (ours, {n} seed{'s' if n != 1 else ''}) | {d['feature']} | "
                     f"{d['stride']} | {gs} | " + " | ".join(ours) + " |")
        if d["paper_source"]:
            paper = ["–" if d["paper"][m] is None else f"{d['paper'][m]:.1f}" for m in METRICS]
            lines.append(f"| *{name} (paper, {d['paper_source']})* | | | | "
                         + " | ".join(f"*{p}*" for p in paper) + " |")
    return lines


def _protocol_lines(report: dict) -> list[str]:
    p, data = report["protocol"], report["data"]
    lines = [
        f"- Preset `{p['name']}` (repository at `{p.get('code_commit') or 'unknown'}` when "
        f"this report was written); designs "
        f"{', '.join(p['designs'])}; seeds {', '.join(str(s) for s in p['seeds'])}.",
        f"- Backbone `{p['backbone']}` (random init, nothing downloaded); {p['iterations']} "
        f"iterations x {p['batch_size']} images, "
        + ("SGD (momentum 0.9)" if p.get("optimizer", "sgd") == "sgd" else "AdamW")
        + f" lr {p['lr']}, weight decay 5e-5, warm-up, x0.1 at 60% and 80%"
        + (f", gradient norm clipped at {p['clip_grad_norm']}" if p.get("clip_grad_norm")
           else "") + ".",
        f"- Augmentation (same for every design and seed): scale jitter "
        f"{', '.join(str(s) for s in p['scale_choices'])}, random crop to "
        f"{p['train_max_side']} px, horizontal flip {'on' if p['flip'] else 'off'}; per-image "
        "augmentation and sampling seeds depend only on (seed, epoch, index).",
        (f"- Samples: N = {p['n_per_group']} per scale group per image (group sampling, 1:3); "
         f"random 1:3 baselines draw {p['random_sampler_per_image']} per image; OHEM keeps "
         f"B = {p['ohem_batch_b']}; focal loss uses every labelled anchor. "
         if len(p.get("budgets") or [0]) <= 1 else
         f"- Samples: a budget sweep, N in {', '.join(str(n) for n in p['budgets'])} per "
         "scale group per image (group sampling, 1:3); random 1:3 baselines draw 4 N per "
         "image; OHEM keeps B = N / 2; focal loss uses every labelled anchor and does not "
         f"depend on N (one run, made at N = {p['n_per_group']}, stands in every N's table). ")
        + f"The paper's 2048 "
        f"and 1024 scaled by the anchor count of a {p['train_max_side']} px crop against "
        f"1,200 px would be {scaled_budget(2048, p['train_max_side'])} and "
        f"{scaled_budget(1024, p['train_max_side'])}.",
        f"- Test: pyramid scales {', '.join(str(s) for s in p['test_scales'])} (each side "
        f"<= {p['test_max_side']} px), NMS IoU {p['nms_iou']} within each sub-detector, then "
        f"across them for the merged output; score >= {p['score_thresh']}; top "
        f"{p['max_detections']} per image per output. Official WIDER eval_tools protocol.",
    ]
    if p.get("calibration_images"):
        lines.append(
            f"- Calibrated merge (reported beside the plain one): per sub-detector Platt "
            f"scaling fitted on the first {p['calibration_images']} training images "
            "(detections labelled at IoU 0.5, `detector/calibration.py`), then the same "
            "cross-scale NMS."
        )
    if p.get("notes"):
        lines.append(f"- Protocol history: {p['notes']}")
    if "synthetic" in data:
        s = data["synthetic"]
        par, counts = s.get("parameters") or {}, s.get("counts") or {}
        h = s.get("face_height") or {}
        train, val = counts.get("train", {}), counts.get("val", {})
        lines.append(
            f"- Data: synthetic set, {par.get('num_images')} images (seed {par.get('seed')}, "
            f"val fraction {par.get('val_fraction')}, long side {par.get('max_side')} px): "
            f"train {train.get('images')} images / {train.get('valid_faces')} faces, val "
            f"{val.get('images')} images / {val.get('valid_faces')} faces (easy "
            f"{val.get('easy')}, medium {val.get('medium')}, hard {val.get('hard')})."
        )
        if h:
            lines.append(
                "- Face heights (box height in px, train + val): "
                + ", ".join(f"{k} {h[k]:.0f}" for k in ("p10", "median", "p90", "p99", "max")
                            if k in h) + "."
            )
    else:
        lines.append(f"- Data: {data.get('path')}")
    return lines


def _anchor_lines(report: dict) -> list[str]:
    stats = report.get("anchor_stats") or {}
    designs = stats.get("designs") or {}
    if not designs:
        return ["(not counted)"]
    lines = [
        f"Training split, {stats.get('images')} images x {stats.get('epochs')} epoch, the "
        "protocol's augmentation and sample budgets. Share = sampled positives (negatives) of "
        "a scale / all sampled anchors of the design (the normalisation of Figure 2).",
        "",
        "| design | positive share @16/@32/@64/@128 | negative share @16/@32/@64/@128 | "
        "recall ceiling |",
        "|---|---|---|---|",
    ]
    for name, d in designs.items():
        pos = " / ".join(f"{v:.3f}" for v in d["normalised"]["positives"])
        neg = " / ".join(f"{v:.3f}" for v in d["normalised"]["negatives"])
        ceiling = d.get("recall_ceiling")
        lines.append(f"| {name} | {pos} | {neg} | "
                     f"{'n/a' if ceiling is None else f'{ceiling:.3f}'} |")
    for name, reason in (stats.get("not_counted") or {}).items():
        lines.append(f"| {name} | not counted: {reason} | | |")
    base, gs = designs.get("fpn-finest"), designs.get("fpn-finest-sampling")
    if base and gs:
        # How strongly group sampling changes what the classifier sees, at this scale.
        ratio = [g / b if b else float("nan")
                 for g, b in zip(gs["sampled_positives"], base["sampled_positives"], strict=True)]
        lines += ["", "Group sampling against fpn-finest, sampled positives per scale "
                  "(fpn-finest-sampling / fpn-finest), @16/@32/@64/@128: "
                  + " / ".join(f"{r:.2f}" for r in ratio)
                  + ". A ratio near 1 means the per-group cap rarely binds at this scale."]
    return lines


def markdown(report: dict) -> str:
    """report.md: protocol, results table(s), verdicts, anchor statistics, sub-detectors,
    calibrated merge, runs; one block per budget N for a sweep."""
    sweep = "by_budget" in report
    lines = [
        "# Group Sampling ablation (paper Tables 1, 3, 4)"
        + (" — sample-budget sweep" if sweep else ""),
        "",
        "AP in percent on the validation split (official WIDER protocol). Ours: mean ± spread "
        "(sample standard deviation) over seeds; the paper's row (ResNet-50, full WIDER FACE, "
        "100 epochs) is beside it and is NOT comparable in absolute terms.",
        "",
    ]
    if not report["complete"]:
        missing = ", ".join(
            (f"N={m['budget']} " if "budget" in m else "") + f"{m['design']}/seed {m['seed']}"
            for m in report["missing_runs"])
        lines += [f"**Partial results**: runs not finished: {missing}. Re-run the same "
                  "command to continue (finished runs are reused).", ""]
    older = [f"{r['design']}/seed {r['seed']}" for r in report["runs"] if r.get("older_code")]
    if older:
        lines += [f"**Older code**: {', '.join(sorted(set(older)))} were produced by an earlier "
                  "version of the detector or evaluation code than the one that wrote this "
                  "report (--report-only); re-run without it to redo them with the current "
                  "code.", ""]
    lines += ["## Protocol (fixed before results)", "", *_protocol_lines(report), "",
              "Rules of the verdicts:", "", *_rule_lines(report["rules"]), ""]
    sections = report["by_budget"] if sweep else {str(report["n_per_group"]): report}
    if sweep:
        lines += ["## Does the per-group quota bind? Sampled positives per scale, "
                  "fpn-finest-sampling / fpn-finest", "",
                  "| N | @16 | @32 | @64 | @128 |", "|---|---|---|---|---|"]
        for n, sec in sections.items():
            ratio = sec.get("positives_vs_fpn_finest")
            cells = ["n/a"] * 4 if ratio is None else [f"{r:.2f}" for r in ratio]
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
        lines += ["", "A ratio near 1 means the quota rarely binds (group sampling then "
                  "draws what random sampling draws); well below 1, group sampling takes fewer "
                  "positives of that scale than the random sampler does.", ""]
    for n, sec in sections.items():
        tag = f" at N = {n}" if sweep else ""
        lines += [f"## Results{tag}", "", *results_table(sec), "",
                  f"## Verdicts on the paper's claims{tag}", ""]
        lines += [f"- {line}" for line in sec["verdict_lines"]]
        lines += ["", f"### Sub-detectors alone{tag} (Easy / Medium / Hard / All)", "",
                  *_sub_detector_lines(sec), ""]
        if sec.get("calibration"):
            lines += [f"### Merge with and without calibration{tag}", "",
                      *_calibration_lines(sec), ""]
        figure = f"figure2-N{n}.png" if sweep else "figure2.png"
        lines += [f"### Anchor statistics{tag} (Figure 2: `{figure}`)", "",
                  *_anchor_lines(sec), ""]
    lines += ["## Runs", "", "| N | design | seed | All | All calibrated | @16 | @128 | "
              "train s | detect s | loss first -> last |", "|" + "---|" * 10]
    for r in report["runs"]:
        cal = "–" if r.get("calibrated_all") is None else f"{r['calibrated_all']:.1f}"
        lines.append(
            f"| {r.get('budget', '')} | {r['design']} | {r['seed']} | {r['ap']['all']:.1f} | "
            f"{cal} | {r['ap']['@16']:.1f} | {r['ap']['@128']:.1f} | {r['train_seconds']:.0f} | "
            f"{r['detect_seconds']:.0f} | {_loss(r['first_loss'])} -> {_loss(r['last_loss'])} |"
        )
    lines += ["", "Figures: `figure2*.png` (sampled positive/negative shares per scale), "
              "`ap_by_scale*.png` (sub-detector AP, ours and the paper's).", ""]
    return "\n".join(lines)


def _sub_detector_lines(sec: dict) -> list[str]:
    """Per design, each sub-detector's Easy/Medium/Hard/All alone (means over seeds)
    beside the merged output's."""
    head = "| design | merged | " + " | ".join(SUB_DETECTORS) + " |"
    lines = [head, "|---|---|" + "---|" * len(SUB_DETECTORS)]

    def cell(mean: dict, prefix: str) -> str:
        keys = ([f"{prefix}/{s}" for s in ("easy", "medium", "hard")] + [prefix]) if prefix \
            else list(TITLES)
        vals = [mean.get(k) for k in keys]
        if any(v is None for v in vals):
            return "–" if vals[-1] is None else f"All {vals[-1]:.1f}"
        return " / ".join(f"{v:.1f}" for v in vals)

    for name, d in sec["designs"].items():
        if not d["seeds"]:
            continue
        lines.append(f"| {name} | {cell(d['mean'], '')} | "
                     + " | ".join(cell(d["mean"], sub) for sub in SUB_DETECTORS) + " |")
    return lines


def _calibration_lines(sec: dict) -> list[str]:
    lines = ["Merged AP, mean over seeds: plain NMS merge -> calibrated merge (seeds where "
             "calibration is higher / seeds).", "",
             "| design | Easy | Medium | Hard | All |", "|---|---|---|---|---|"]
    for name, entry in sec["calibration"].items():
        cells = [f"{entry[s]['nms']:.1f} -> {entry[s]['calibrated']:.1f} "
                 f"({entry[s]['calibrated_higher']}/{entry[s]['runs']})" for s in TITLES]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _rule_lines(rules: str) -> list[str]:
    # The rules are the verdicts module's bullet list; re-flow each bullet onto one line.
    return ["* " + " ".join(item.split()) for item in re.split(r"(?m)^\s*\* ", rules)
            if item.strip()]


def _loss(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


# ---------------------------------------------------------------------------- figures


def plot_figure2(state: AblationState, path: Path) -> None:
    """The paper's Figure 2 for the ablation's designs, from the cached anchor counts."""
    from detector.anchor_stats import COUNT_FIELDS, AnchorStats, DesignStats, plot_distributions
    from detector.designs import get_design

    stats = state.anchor_stats or {}
    overrides = state.protocol.design_overrides()
    designs = {
        name: DesignStats(
            get_design(name, **overrides),
            np.array([d[f] for f in COUNT_FIELDS], dtype=np.int64),
        )
        for name, d in stats.get("designs", {}).items()
    }
    rebuilt = AnchorStats(
        designs=designs, source=stats.get("source", {"kind": "training set"}),
        epochs=int(stats.get("epochs", 1)), seed=int(stats.get("seed", 0)),
        augment=stats.get("augment", {}), images_counted=int(stats.get("images", 0)),
    )
    plot_distributions(rebuilt, path)


def plot_ap_by_scale(report: dict, path: Path) -> None:
    """Sub-detector AP per design: ours (mean, error bar = spread) and the paper's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["designs"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    x = np.arange(len(SUB_DETECTORS))
    width = 0.8 / max(len(names), 1)
    for k, name in enumerate(names):
        d = report["designs"][name]
        mean = [np.nan if d["mean"][m] is None else d["mean"][m] for m in SUB_DETECTORS]
        err = [0.0 if d["spread"][m] is None else d["spread"][m] for m in SUB_DETECTORS]
        paper = [np.nan if d["paper"][m] is None else d["paper"][m] for m in SUB_DETECTORS]
        offset = (k - (len(names) - 1) / 2) * width
        axes[0].bar(x + offset, mean, width, yerr=err, capsize=2, label=name)
        axes[1].bar(x + offset, paper, width, label=name)
    for ax, title in zip(axes, ("ours (mean ± spread over seeds)", "paper (Tables 1, 3, 4)"),
                         strict=True):
        ax.set_xticks(x, list(SUB_DETECTORS))
        ax.set_ylabel("AP on All (%)")
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=7)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
