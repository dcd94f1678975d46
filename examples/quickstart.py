"""The embedded-defaults demo: a scikit-learn model, @instrument_model, file export, and a summary read back.

Runs with no collector and no configuration: telemetry goes to an OTLP-JSON-lines file (the same
format the OpenTelemetry Collector's file exporter writes), which is then decoded with modelotel's
own sketch to print latency and confidence quantiles per model.

    python examples/quickstart.py [--out DIR] [--requests N]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import modelotel
from modelotel import conventions as conv
from modelotel.sketch import LogSketch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="out/demo")
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    telemetry = out / "telemetry.jsonl"
    telemetry.unlink(missing_ok=True)

    iris = load_iris()
    clf = LogisticRegression(max_iter=500).fit(iris.data, iris.target)
    modelotel.configure(service_name="iris-demo", exporter="file", path=telemetry, export_interval=1.0, traces=True)

    @modelotel.instrument_model(name="iris", version="1", labels=list(iris.target_names))
    def predict(features):
        if np.isnan(features).any():
            raise ValueError("features contain NaN")
        return clf.predict_proba(features.reshape(1, -1))[0]

    rng = np.random.default_rng(0)
    errors = 0
    started = time.perf_counter()
    for i in range(args.requests):
        x = iris.data[rng.integers(len(iris.data))] + rng.normal(0, 0.3, 4)
        if i % 100 == 99:
            x[2] = np.nan  # a broken client now and then
        try:
            predict(x)
        except ValueError:
            errors += 1
    elapsed = time.perf_counter() - started
    modelotel.shutdown()
    print(f"served {args.requests} predictions ({errors} failed) in {elapsed:.2f} s; telemetry in {telemetry}")
    summarize(telemetry)


def summarize(path: Path) -> None:
    """Latest cumulative point per series, decoded into sketches."""
    latest: dict[tuple, dict] = {}
    spans = 0
    with open(path) as fh:
        for line in fh:
            obj = json.loads(line)
            for rs in obj.get("resourceSpans", []):
                for ss in rs.get("scopeSpans", []):
                    spans += len(ss.get("spans", []))
            for rm in obj.get("resourceMetrics", []):
                for sm in rm.get("scopeMetrics", []):
                    for metric in sm.get("metrics", []):
                        data = metric.get("exponentialHistogram") or metric.get("sum") or {}
                        for point in data.get("dataPoints", []):
                            attrs = tuple(
                                sorted(
                                    (a["key"], str(next(iter(a["value"].values()))))
                                    for a in point.get("attributes", [])
                                )
                            )
                            latest[(metric["name"], attrs)] = point
    rows = defaultdict(dict)
    for (name, attrs), point in latest.items():
        a = dict(attrs)
        key = (a.get(conv.MODEL_NAME, "-"), a.get(conv.ERROR_TYPE, "ok"))
        if name == conv.INFERENCE_DURATION:
            sk = LogSketch.from_otlp_point(point)
            rows[key]["count"] = sk.count
            rows[key]["latency"] = [sk.quantile(q) * 1e6 for q in (0.5, 0.95, 0.99)]
        elif name == conv.PREDICTION_CONFIDENCE_METRIC:
            rows[key]["confidence"] = LogSketch.from_otlp_point(point).quantile(0.5)
    print(f"\n{'model':<10}{'outcome':<14}{'calls':>7}{'p50 us':>10}{'p95 us':>10}{'p99 us':>10}{'conf p50':>10}")
    for (model, outcome), r in sorted(rows.items()):
        if "count" not in r:
            continue
        p50, p95, p99 = r["latency"]
        conf = f"{r['confidence']:.3f}" if "confidence" in r else "-"
        print(f"{model:<10}{outcome:<14}{r['count']:>7}{p50:>10.1f}{p95:>10.1f}{p99:>10.1f}{conf:>10}")
    labels = {dict(a).get(conv.PREDICTION_LABEL): p for (n, a), p in latest.items() if n == conv.PREDICTIONS}
    print("predicted labels: " + ", ".join(f"{k}={v['asInt']}" for k, v in sorted(labels.items(), key=str) if k))
    print(f"spans written: {spans} (one per traced inference, features hashed, no raw values)")
    print(
        f"\nQuantiles are decoded from exponential histograms at scale {conv.DEFAULT_SCALE} "
        f"(relative error <= {LogSketch().relative_accuracy:.2%})."
    )


if __name__ == "__main__":
    main()
