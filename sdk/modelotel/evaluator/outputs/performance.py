"""``modelotel performance`` output: a table per model, or JSON at full precision (``quality.performance``)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from ..quality.performance import Distribution, Performance
from .text import iso, json_number

ATTRIBUTION = (
    "feedback figures count the predictions made in the window (ml.prediction.time_bucket_end; series without it "
    "count when exported); label latency counts labels that arrived in the window; coverage divides by the "
    "ml.predictions exported in the window (off by at most one export interval at each edge)"
)


def _model(p: Performance) -> dict[str, str]:
    name, version, role = p.model
    return {"name": name, "version": version, "role": role}


def _distribution(d: Distribution | None, unit: str) -> dict[str, Any] | None:
    if d is None:
        return None
    return {
        "count": d.count,
        "mean": json_number(d.mean),
        "unit": unit,
        "relative_accuracy": json_number(d.relative_accuracy),
        "quantiles": [
            {"q": q.q, "value": json_number(q.value), "low": json_number(q.low), "high": json_number(q.high)}
            for q in d.quantiles
        ],
    }


def performance_json(p: Performance) -> dict[str, Any]:
    c, cal, f, r = p.classification, p.calibration, p.fairness, p.regression
    return {
        "model": _model(p),
        "judged": p.judged,
        "correct": p.correct,
        "incorrect": p.incorrect,
        "accuracy": json_number(p.accuracy),
        "judged_by_arrival": p.by_arrival,
        "coverage": None
        if p.coverage is None
        else {
            "judged": p.coverage.judged,
            "predictions": p.coverage.predictions,
            "ratio": json_number(p.coverage.ratio),
        },
        "classification": None
        if c is None
        else {
            "labels": list(c.labels),
            "confusion_matrix": [list(row) for row in c.matrix],
            "orientation": "rows true, columns predicted (sklearn confusion_matrix)",
            "classes": [
                {
                    "label": k.label,
                    "precision": json_number(k.precision),
                    "recall": json_number(k.recall),
                    "f1": json_number(k.f1),
                    "support": k.support,
                    "predicted": k.predicted,
                }
                for k in c.classes
            ],
            "macro_avg": {
                "precision": json_number(c.macro.precision),
                "recall": json_number(c.macro.recall),
                "f1": json_number(c.macro.f1),
                "support": c.macro.support,
            },
            "weighted_avg": {
                "precision": json_number(c.weighted.precision),
                "recall": json_number(c.weighted.recall),
                "f1": json_number(c.weighted.f1),
                "support": c.weighted.support,
            },
            "label_accuracy": json_number(c.label_accuracy),
            "rows": c.rows,
            "zero_division": 0,
            "undefined_precision": list(c.undefined_precision),
            "undefined_recall": list(c.undefined_recall),
        },
        "calibration": None
        if cal is None
        else {
            "count": cal.count,
            "ece": json_number(cal.ece),
            "ece_bound": json_number(cal.ece_bound),
            "binning_bound": json_number(cal.binning_bound),
            "mce": json_number(cal.mce),
            "mce_bound": json_number(cal.mce_bound),
            "brier": json_number(cal.brier),
            "brier_low": json_number(cal.brier_low),
            "brier_high": json_number(cal.brier_high),
            "out_of_range": cal.out_of_range,
        },
        "fairness": None
        if f is None
        else {
            "groups": [
                {
                    "group": g.group,
                    "feedback": g.counts.feedback,
                    "accuracy": json_number(g.accuracy),
                    "selection_rate": json_number(g.selection_rate),
                    "tpr": json_number(g.tpr),
                    "fpr": json_number(g.fpr),
                }
                for g in f.groups
            ],
            "demographic_parity_difference": json_number(f.demographic_parity_difference),
            "equalized_odds_difference": json_number(f.equalized_odds_difference),
            "ungrouped_feedback": f.ungrouped,
        },
        "regression": None
        if r is None
        else {
            "count": r.count,
            "mae": json_number(r.mae),
            "mse": json_number(r.mse),
            "rmse": json_number(r.rmse),
            "abs_error": _distribution(r.abs_error, "model output unit"),
        },
        "label_latency": _distribution(p.latency, "s"),
        "estimated": _estimated_json(p),
        "not_computed": dict(p.missing),
        "notes": list(p.notes),
    }


def _estimate(e: Any) -> dict[str, Any]:
    return {"value": json_number(e.value), "lower": json_number(e.low), "upper": json_number(e.high)}


def _estimated_json(p: Performance) -> dict[str, Any] | None:
    """CBPE of the window's predictions beside the realized figures (quality/cbpe.py)."""
    est = p.estimated
    if est is None:
        return None
    a, gap, b = est.accuracy, est.gap, est.binary
    realized = {k.label: k for k in p.classification.classes} if p.classification is not None else {}
    out: dict[str, Any] = {
        "method": "CBPE: the confidences read as probabilities of being right"
        + (f", calibrated with {est.reference_feedback} judged earlier predictions" if est.reference_feedback else ""),
        "predictions": a.count,
        "accuracy": _estimate(a.accuracy),
        "sampling_sd": json_number(a.sampling_sd),
        "realized_accuracy": json_number(p.accuracy),
        "gap": None if gap is None else json_number(gap.gap),
        "gap_allowed": None if gap is None else json_number(gap.allowed),
        "gap_flagged": None if gap is None else gap.flagged,
        "positive_label": est.positive_label,
        "binary": None,
    }
    if b is not None:
        pos = realized.get(est.positive_label or "")
        out["binary"] = {
            "precision": _estimate(b.precision),
            "recall": _estimate(b.recall),
            "f1": _estimate(b.f1),
            "realized_precision": None if pos is None else json_number(pos.precision),
            "realized_recall": None if pos is None else json_number(pos.recall),
            "realized_f1": None if pos is None else json_number(pos.f1),
            "predicted_positive": b.predicted_positive,
            "predicted_negative": b.predicted_negative,
        }
    return out


def to_json(perfs: Sequence[Performance], start: float, end: float) -> str:
    doc = {
        "window": {"start": iso(start), "end": iso(end), "start_s": start, "end_s": end},
        "attribution": ATTRIBUTION,
        "models": [performance_json(p) for p in perfs],
    }
    return json.dumps(doc, indent=2)


def _num(x: float | None, fmt: str = ".3f") -> str:
    return "-" if x is None or not math.isfinite(x) else format(x, fmt)


def _seconds(s: float) -> str:
    if not math.isfinite(s):
        return "-"
    if s >= 86400:
        return f"{s / 86400:.3g} d"
    if s >= 3600:
        return f"{s / 3600:.3g} h"
    if s >= 60:
        return f"{s / 60:.3g} min"
    if s >= 1 or s == 0:
        return f"{s:.3g} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} \u00b5s"


def _quantiles(d: Distribution, show) -> str:
    parts = [f"p{q.q * 100:g} {show(q.value)} [{show(q.low)}, {show(q.high)}]" for q in d.quantiles]
    return ", ".join(parts)


def _why(p: Performance, figure: str) -> str:
    return f"not computed: {p.missing.get(figure, 'no data')}"


def performance_text(p: Performance) -> list[str]:
    name, version, role = p.model
    lines = [f"model {name} version {version or '-'} role {role or '-'}"]
    cov = p.coverage
    lines.append(
        f"  coverage       {cov.judged:,} judged of {cov.predictions:,} predictions: {cov.ratio:.1%}"
        if cov is not None
        else f"  coverage       {_why(p, 'coverage')}"
    )
    lines.append(
        f"  accuracy       {p.accuracy:.4f} ({p.correct:,} of {p.correct + p.incorrect:,} judged)"
        if p.accuracy is not None
        else f"  accuracy       {_why(p, 'accuracy')}"
    )
    c = p.classification
    if c is None:
        lines.append(f"  confusion      {_why(p, 'confusion')}")
    else:
        width = max(len("weighted avg"), *(len(label) for label in c.labels)) + 1
        lines.append(f"  confusion matrix ({c.rows:,} items; rows true, columns predicted):")
        cell = max(8, *(len(label) + 1 for label in c.labels), len(f"{c.rows:,}") + 1)
        lines.append("    " + " " * width + "".join(f"{label:>{cell}}" for label in c.labels))
        for label, row in zip(c.labels, c.matrix, strict=True):
            lines.append(f"    {label:<{width}}" + "".join(f"{v:>{cell},}" for v in row))
        lines.append(f"    {'class':<{width}} {'precision':>9} {'recall':>9} {'F1':>9} {'support':>9}")
        for k in c.classes:
            lines.append(f"    {k.label:<{width}} {k.precision:>9.4f} {k.recall:>9.4f} {k.f1:>9.4f} {k.support:>9,}")
        for what, a in (("macro avg", c.macro), ("weighted avg", c.weighted)):
            lines.append(f"    {what:<{width}} {a.precision:>9.4f} {a.recall:>9.4f} {a.f1:>9.4f} {a.support:>9,}")
        undefined = sorted(set(c.undefined_precision) | set(c.undefined_recall))
        if undefined:
            lines.append(f"    0/0 counted as 0 (sklearn zero_division=0) for: {', '.join(undefined)}")
    cal = p.calibration
    lines.append(
        f"  calibration    ECE {cal.ece:.4f} \u00b1 {cal.ece_bound + cal.binning_bound:.4f}, Brier {cal.brier:.4f} "
        f"\u00b1 {cal.brier_bound:.4f} (n={cal.count:,})"
        if cal is not None
        else f"  calibration    {_why(p, 'calibration')}"
    )
    r = p.regression
    if r is None:
        lines.append(f"  regression     {_why(p, 'regression')}")
    else:
        lines.append(f"  regression     MAE {r.mae:.6g}, RMSE {r.rmse:.6g} (n={r.count:,})")
        lines.append(f"    |error|      {_quantiles(r.abs_error, lambda x: format(x, '.4g'))}")
    lat = p.latency
    lines.append(
        f"  label latency  {_quantiles(lat, _seconds)} (n={lat.count:,} arrived in the window)"
        if lat is not None
        else f"  label latency  {_why(p, 'latency')}"
    )
    est = p.estimated
    if est is None:
        lines.append(f"  estimated      {_why(p, 'estimated')}")
    else:
        a, gap = est.accuracy, est.gap
        how = f"calibrated with {est.reference_feedback:,} earlier judged" if est.reference_feedback else "uncalibrated"
        line = f"  estimated      accuracy {a.accuracy.value:.4f} (CBPE over {a.count:,} predictions, {how})"
        if gap is not None:
            line += f"; realized {gap.realized:.4f}, gap {gap.gap * 100:+.2f} points"
            if gap.flagged:
                line += f" beyond {gap.allowed * 100:.2f}: miscalibration or concept drift (CBPE cannot see it)"
        lines.append(line)
        b = est.binary
        if b is not None:
            lines.append(
                f"    {est.positive_label}: precision {b.precision.value:.4f}, recall {b.recall.value:.4f}, "
                f"F1 {b.f1.value:.4f} (estimated)"
            )
    f = p.fairness
    if f is not None:
        lines.append(
            f"  fairness       {len(f.groups)} groups: demographic parity difference "
            f"{_num(f.demographic_parity_difference)}, equalized odds difference {_num(f.equalized_odds_difference)} "
            "(modelotel fairness for the groups)"
        )
    for note in p.notes:
        lines.append(f"  note: {note}")
    return lines


def to_text(perfs: Sequence[Performance], start: float, end: float) -> str:
    lines = [f"window {iso(start)} .. {iso(end)} of prediction time"]
    for p in perfs:
        lines.append("")
        lines.extend(performance_text(p))
    return "\n".join(lines)
