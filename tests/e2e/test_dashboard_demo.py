"""The Grafana dashboard on the demo's traffic: every panel's every query, run as Grafana runs it, shows data.

The stack is the demo's, with Prometheus in place of the file: examples/fastapi_server.py exports OTLP every second
(as examples/demo.py starts it) to our collector (``collector_config/grafana.yaml``), which remote-writes to a real
Prometheus holding the rules of ``modelotel rules --slo examples/slo.yaml`` (evaluated every second).
examples/traffic.py drives its four phases (normal, slow, errors, drift) and delayed feedback, scaled down to
``DURATION_S``. Then ``modelotel dashboard --slo examples/slo.yaml`` is read as Grafana reads it:

* the time range is the traffic's; the data source is left at Grafana's defaults (scrape interval 15 s); the
  ``export_interval`` variable is set to the demo's 1 s, as its user would pick it; ``$__interval`` is
  Grafana's (range / max data points, rounded on Grafana's ladder, at least the target's min step, else the
  data source's scrape interval), ``$__rate_interval`` is ``max($__interval + s, 4 s)`` with ``s`` that same
  min step or scrape interval; ``$model`` and ``$version`` are "All" (``.*``) and, once, the demo's model;
* every target runs as a range query with step ``$__interval`` (what a time-series or stat panel sends; a table
  target marked ``instant`` as an instant query).

Each target must return data, finite while the traffic runs, with the panel's unit: ``percentunit`` in [0, 1]
(the budget remaining may go below 0: overspent), ``s`` latencies that match the traffic generator's own
(the slow phase's p99 at least 400 ms and at most the slowest request the client saw, within the native
histogram's 2.2% bucket error), ``reqps`` the rate sent (within 15%: rate() over a few 1 s export points moves
by about a call per window at the phase boundaries), counts non-negative. Units are Grafana unit ids, legends
name their series, and the variables' ``label_values`` queries return the demo's model and version.

Cost: about 45 s (the model server ~4 s to start, 20 s of traffic, the data landing and rules catching up ~5 s).
Needs ``prometheus`` and the collector; a missing one fails under MODELOTEL_CI=1.
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

import pytest
import yaml

from collector_support import CONFIGS, ROOT, free_port, run_collector, run_prometheus

EXAMPLES = ROOT / "examples"
sys.path.insert(0, str(EXAMPLES))

import demo  # noqa: E402
import traffic  # noqa: E402

pytestmark = pytest.mark.collector

DURATION_S = 30.0  # phases scaled down: 9 s normal, 6 s slow, 4.5 s errors, 10.5 s drift
RATE = 40.0
SEED = 5
EXPORT_INTERVAL_S = demo.EXPORT_INTERVAL_S  # the demo server's: one point a second
DATASOURCE_SCRAPE_S = 15.0  # a Prometheus data source whose "scrape interval" nobody set: Grafana's default
MAX_DATA_POINTS = 600  # what Grafana asks for a 12-column panel on a 1280 px screen (one per pixel)
SKETCH_ERROR = 0.022  # a quantile of a scale-5 native histogram lies within one bucket: 2**(1/32) - 1
RATE_TOLERANCE = 0.15

# Grafana's unit ids (packages/grafana-data/src/valueFormats/categories.ts: the Misc, Date & time, Time and
# Throughput categories), and its custom-unit syntax ``suffix:<text>`` (Grafana docs, "Custom units").
GRAFANA_UNITS = {
    *("none", "string", "short", "percent", "percentunit", "humidity", "dB", "hex0x", "hex", "sci", "locale"),
    *("pixel", "hertz", "ns", "µs", "ms", "s", "m", "h", "d", "dtdurationms", "dtdurations", "dthms", "dtdhms"),
    *("timeticks", "clockms", "clocks", "cps", "ops", "reqps", "rps", "wps", "iops", "cpm", "opm", "rpm", "wpm"),
    *("dateTimeAsIso", "dateTimeAsIsoNoDateIfToday", "dateTimeAsUS", "dateTimeAsUSNoDateIfToday", "dateTimeFromNow"),
}


# -- Grafana's variables ------------------------------------------------------------------------------------

# rangeutil.roundInterval: (below this many ms, use this interval), the bottom of Grafana's ladder
LADDER_MS = [
    (10, 1), (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000), (3500, 2000),
    (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000), (45000, 30000), (90000, 60000),
    (210000, 120000), (450000, 300000), (750000, 600000), (1050000, 900000), (1500000, 1200000),
]  # fmt: skip


def grafana_interval(range_s: float, max_data_points: int, min_interval_s: float) -> float:
    """``$__interval`` in seconds: range / max data points, rounded on Grafana's ladder, at least the minimum."""
    ms = range_s * 1000 / max_data_points
    rounded = next((to for below, to in LADDER_MS if ms < below), LADDER_MS[-1][1])
    return max(rounded / 1000, min_interval_s)


def rate_interval(interval_s: float, scrape_s: float) -> float:
    """Grafana's Prometheus ``$__rate_interval``: max($__interval + scrape interval, 4 x scrape interval)."""
    return max(interval_s + scrape_s, 4 * scrape_s)


def parse_duration(text: str) -> float:
    match = re.fullmatch(r"(\d+)(ms|s|m|h)", text)
    assert match, text
    return int(match[1]) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[match[2]]


def duration(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def substitute(expr: str, variables: dict[str, str]) -> str:
    # longest names first: $__rate_interval before $__interval
    for name in sorted(variables, key=len, reverse=True):
        expr = expr.replace(name, variables[name])
    assert "$" not in expr, f"a Grafana variable the test does not know in {expr!r}"
    return expr


# -- the stack ----------------------------------------------------------------------------------------------


@dataclass
class Prometheus:
    url: str

    def get(self, path: str, **params: str):
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{path} {params}: HTTP {exc.code}: {exc.read().decode()}") from None
        assert body["status"] == "success", body
        return body["data"]

    def value(self, promql: str) -> float | None:
        result = self.get("/api/v1/query", query=promql)["result"]
        return float(result[0]["value"][1]) if result else None


def modelotel(*args: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "sdk"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "modelotel", *args], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """The demo's traffic landed in Prometheus, its rules evaluated: (Prometheus, traffic result, dashboard)."""
    tmp = tmp_path_factory.mktemp("dashboard-demo")
    (tmp / "rules.yaml").write_text(modelotel("rules", "--slo", str(EXAMPLES / "slo.yaml")))
    config = {"global": {"evaluation_interval": "1s"}, "rule_files": [str(tmp / "rules.yaml")], "scrape_configs": []}
    (tmp / "prometheus.yaml").write_text(yaml.safe_dump(config))
    board = json.loads(modelotel("dashboard", "--slo", str(EXAMPLES / "slo.yaml")))
    with run_prometheus(tmp, tmp / "prometheus.yaml") as (url, prom_proc):
        prom = Prometheus(url)
        grpc_port = free_port()
        env = {
            "MODELOTEL_PROM_REMOTE_WRITE_URL": f"{url}/api/v1/write",
            "MODELOTEL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{grpc_port}",
            "MODELOTEL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{free_port()}",
            "MODELOTEL_COLLECTOR_METRICS_PORT": str(free_port()),
            "MODELOTEL_TRACES_EXPORTERS": "[debug]",
            "MODELOTEL_LOGS_EXPORTERS": "[debug]",
        }
        with run_collector(CONFIGS / "grafana.yaml", env, tmp / "collector.log", free_port()) as collector:
            server_env = demo.server_env(tmp / "unused.jsonl", f"http://127.0.0.1:{grpc_port}", traces=False)
            server_env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "sdk"), os.environ.get("PYTHONPATH", "")])
            server_env["MODELOTEL_EXAMPLES_CACHE"] = str(tmp_path_factory.getbasetemp() / "model-cache")
            server, client = demo.start_server("fastapi", tmp, server_env)
            lines: list[str] = []
            try:
                result = traffic.run(client, DURATION_S, RATE, SEED, out=lines.append)
            finally:
                client.close()
                code = server.stop()
            log = (tmp / "server.log").read_text(errors="replace")
            assert code in (0, -15) and "Traceback" not in log, log[-3000:]
            calls = len(result.requests)
            deadline = time.monotonic() + 30
            while prom.value("sum(histogram_count(ml_inference_duration_seconds))") != calls:
                if time.monotonic() > deadline:
                    raise AssertionError(f"the demo's {calls} calls did not land:\n{collector.output()[-3000:]}")
                time.sleep(0.2)
            landed = time.time()
            # Two more evaluations of every rule group: each then saw every sample.
            while (prom.value("min(timestamp(slo:objective:ratio))") or 0) < landed + 2:
                if time.monotonic() > deadline + 30:
                    raise AssertionError(f"rules not evaluated:\n{prom_proc.output()[-3000:]}")
                time.sleep(0.2)
            yield prom, result, board, lines


# -- the checks ---------------------------------------------------------------------------------------------


def panels(board: dict) -> list[dict]:
    return [p for p in board["panels"] if p["type"] != "row"]


def unit_of(panel: dict) -> str | None:
    if panel["type"] == "heatmap":
        return panel["options"]["yAxis"].get("unit")
    return panel["fieldConfig"]["defaults"].get("unit")


@dataclass
class Series:
    labels: dict[str, str]
    points: list[tuple[float, float]]  # (time, value); a native histogram: (time, total count)
    buckets: list[float]  # every bucket count of every native-histogram sample
    bounds: list[float]  # and every bucket boundary


@dataclass
class Query:
    """What Grafana sends for one target over ``[start, end]``: its step and the variables' values."""

    start: float
    end: float
    interval: float
    rate_interval: float
    variables: dict[str, str]


def grafana_query(
    target: dict, chosen: dict[str, str], start: float, end: float, datasource_scrape: float = DATASOURCE_SCRAPE_S
) -> Query:
    min_step = substitute(target["interval"], chosen) if target.get("interval") else None
    scrape = parse_duration(min_step) if min_step else datasource_scrape
    interval = grafana_interval(end - start, MAX_DATA_POINTS, scrape)
    window = rate_interval(interval, scrape)
    variables = {
        **chosen,
        "$__rate_interval": duration(window),
        "$__interval": duration(interval),
        "$__range": duration(end - start),
    }
    start, end = grid(start, end, interval)
    return Query(start, end, interval, window, variables)


def run_target(prom: Prometheus, target: dict, chosen: dict[str, str], start: float, end: float, **grafana):
    q = grafana_query(target, chosen, start, end, **grafana)
    expr = substitute(target["expr"], q.variables)
    start, end, step = q.start, q.end, q.interval
    if target.get("instant"):
        data = prom.get("/api/v1/query", query=expr, time=repr(end))
        rows = [{"metric": r["metric"], "values": [r["value"]]} for r in data["result"]]
    else:
        params = {"query": expr, "start": repr(start), "end": repr(end), "step": repr(step)}
        rows = prom.get("/api/v1/query_range", **params)["result"]
    out = []
    for r in rows:
        points = [(float(t), float(v)) for t, v in r.get("values", [])]
        buckets, bounds = [], []
        for t, h in r.get("histograms", []):
            points.append((float(t), float(h["count"])))
            buckets += [float(b[3]) for b in h.get("buckets", [])]
            bounds += [float(x) for b in h.get("buckets", []) for x in (b[1], b[2])]
        out.append(Series(r["metric"], sorted(points), buckets, bounds))
    return expr, out, q


def grid(start: float, end: float, step: float) -> tuple[float, float]:
    """Grafana aligns a range query's start and end to the step."""
    return math.floor(start / step) * step, math.ceil(end / step) * step


def test_every_panel_shows_the_demos_traffic(demo_run):
    prom, result, board, lines = demo_run
    started = time.monotonic()
    calls_end = result.phase("drift").end  # predictions stop here; feedback goes on a little
    start, end = result.start, result.end + 5
    options = {v["name"]: [o["value"] for o in v.get("options", [])] for v in board["templating"]["list"]}
    assert duration(EXPORT_INTERVAL_S) in options["export_interval"], options
    chosen = {"$model": ".*", "$version": ".*", "$export_interval": duration(EXPORT_INTERVAL_S)}
    failures: list[str] = []
    queries = returned = 0
    for panel in panels(board):
        title, unit = panel["title"], unit_of(panel)
        if unit not in GRAFANA_UNITS and not (unit or "").startswith("suffix:"):
            failures.append(f"{title}: unit {unit!r} is not a Grafana unit id")
        legends = [t.get("legendFormat", "") for t in panel["targets"]]
        if not all(legends) or len(set(legends)) != len(legends):
            failures.append(f"{title}: legends {legends} do not name each series")
        for target in panel["targets"]:
            queries += 1
            expr, series, q = run_target(prom, target, chosen, start, end)
            # The steps whose window lies in the traffic (a point is exported up to 1 s after its calls).
            lag = q.rate_interval if "$__rate_interval" in target["expr"] else 0.0
            steady = (result.start + lag + 2 * EXPORT_INTERVAL_S, calls_end)
            where = f"{title} [{target.get('legendFormat')}] `{expr}`"
            values = [v for s in series for t, v in s.points if steady[0] <= t <= steady[1] or target.get("instant")]
            if not values:
                failures.append(f"{where}: no data while the traffic ran ({len(series)} series)")
                continue
            returned += 1
            bad = [v for v in values if not math.isfinite(v)]
            if bad:
                failures.append(f"{where}: {len(bad)} of {len(values)} values not finite")
            finite = [v for v in values if math.isfinite(v)]
            legend_labels = re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", ""))
            for s in series:
                missing = [name for name in legend_labels if name not in s.labels]
                if missing:
                    failures.append(f"{where}: legend names {missing}, which the series lacks ({s.labels})")
            if panel["type"] == "heatmap":  # the unit is the y axis's: the buckets' bounds; counts are rates
                bounds = [b for s in series for b in s.bounds]
                if not bounds or any(b < 0 or not math.isfinite(b) for s in series for b in s.buckets):
                    failures.append(f"{where}: no buckets, or a bucket count negative or not finite")
                failures += check_unit(where, title, unit, bounds or [0.0])
            else:
                failures += check_unit(where, title, unit, finite, (result.start, time.time()))
    failures += check_latency(prom, board, result, chosen)
    failures += check_rates(prom, board, result, chosen)
    failures += check_firing(prom, board, result, chosen)
    failures += check_variables(prom, board, start, end)
    print(f"{queries} queries, {returned} returned data; checked in {time.monotonic() - started:.1f} s")
    print("\n".join(lines))
    assert not failures, "\n".join(failures)


def check_unit(
    where: str, title: str, unit: str | None, values: list[float], run: tuple[float, float] = (0.0, math.inf)
) -> list[str]:
    low, high = min(values), max(values)
    if unit == "percentunit":
        floor = -math.inf if title == "Error budget remaining" else 0.0  # overspent: below 0 is the message
        if low < floor or high > 1:
            return [f"{where}: a ratio outside [0, 1]: {low:g}..{high:g}"]
    elif unit == "s":
        if low <= 0 or high > 60:
            return [f"{where}: durations {low:g}..{high:g} s are not the demo's (ms to 0.4 s)"]
    elif unit == "dateTimeFromNow":  # epoch milliseconds, within the run
        if low < run[0] * 1000 or high > run[1] * 1000:
            return [f"{where}: times {low:.0f}..{high:.0f} ms are not in the run {run}"]
    elif low < 0:
        return [f"{where}: a negative {unit} value {low:g}"]
    return []


def target_named(board: dict, title: str, legend_prefix: str = "") -> dict:
    for panel in panels(board):
        for t in panel["targets"]:
            if panel["title"] == title and t.get("legendFormat", "").startswith(legend_prefix):
                return t
    raise AssertionError(f"no panel {title!r} with a legend starting {legend_prefix!r}")


def values_within(series: list[Series], lo: float, hi: float) -> list[float]:
    return [v for s in series for t, v in s.points if lo <= t <= hi and math.isfinite(v)]


def check_latency(prom, board, result, chosen) -> list[str]:
    out = []
    slow = result.phase("slow")
    client_slow = [r.latency_s for r in slow.requests]
    # The slow phase's calls are exported up to one interval after they end; its peak p99 is a slow call's.
    lo, hi = slow.start, slow.end + 2 * EXPORT_INTERVAL_S
    _, p99, _ = run_target(prom, target_named(board, "Inference latency", "p99"), chosen, lo, hi)
    got = values_within(p99, lo, hi)
    low_bound, high_bound = demo_slow_s() * (1 - SKETCH_ERROR), max(client_slow) * (1 + SKETCH_ERROR)
    seen = f"{min(client_slow):.4f}..{max(client_slow):.4f}"
    print(f"p99 in the slow phase peaks at {max(got, default=None)} s; the client saw {seen} s")
    if not got or not low_bound <= max(got) <= high_bound:
        peak = max(got, default=None)
        out.append(f"latency p99 in the slow phase peaks at {peak}, not in [{low_bound:.3f}, {high_bound:.3f}] s")
    normal = result.phase("normal")
    target = target_named(board, "Inference latency", "p50")
    window = grafana_query(target, chosen, normal.start, normal.end).rate_interval
    lo, hi = normal.start + window + 1.5 * EXPORT_INTERVAL_S, normal.end
    _, p50, _ = run_target(prom, target, chosen, lo, hi)
    got = values_within(p50, lo, hi)
    client_p99 = statistics.quantiles([r.latency_s for r in normal.requests], n=100)[98]
    if not got or not all(0 < v <= client_p99 * (1 + SKETCH_ERROR) for v in got):
        out.append(f"latency p50 in the normal phase {got} not within (0, client p99 {client_p99:.4f}] s")
    return out


def check_firing(prom, board, result, chosen) -> list[str]:
    """The slow phase burns fraud-latency's budget 20x over (examples/slo.yaml): its page tiers fire, and both
    panels that count firing tiers say so while it lasts."""
    slow = result.phase("slow")
    out = []
    for panel in panels(board):
        if panel["title"] != "Alert tiers firing":
            continue
        _, series, _ = run_target(prom, panel["targets"][0], chosen, slow.start, result.end)
        counts = {s.labels.get("slo_name", "the SLO's row"): max(v for _, v in s.points) for s in series if s.points}
        if "fraud-latency" in panel["targets"][0]["expr"] and not any(v >= 1 for v in counts.values()):
            out.append(f"{panel['title']}: fraud-latency's tiers never shown firing: {counts}")
    # Since when: the page fires once the slow phase's first calls are exported and the rules evaluated (1 s each).
    target = target_named(board, "Firing since")
    _, series, _ = run_target(prom, target, chosen, slow.start, result.end)
    since = [v / 1000 for s in series if s.labels.get("slo_name") == "fraud-latency" for _, v in s.points]
    if not since or not all(slow.start <= t <= slow.end + 3 * EXPORT_INTERVAL_S for t in since):
        out.append(f"Firing since: fraud-latency {since}, not within the slow phase {slow.start}..{slow.end}")
    return out


def demo_slow_s() -> float:
    return traffic.SLOW_MS / 1000


def check_rates(prom, board, result, chosen) -> list[str]:
    target = target_named(board, "Calls per second")
    window = grafana_query(target, chosen, result.start, result.end).rate_interval
    lo, hi = result.start + window + 2 * EXPORT_INTERVAL_S, result.phase("drift").end
    _, calls, _ = run_target(prom, target, chosen, lo, hi)
    got = values_within(calls, lo, hi)
    sent = len(result.requests) / (result.phase("drift").end - result.start)
    print(f"calls per second: median {statistics.median(got) if got else None} of {len(got)} steps, {sent:.2f} sent")
    if not got or abs(statistics.median(got) / sent - 1) > RATE_TOLERANCE:
        return [f"calls per second: median {statistics.median(got) if got else None} against {sent:.1f} sent"]
    # The same panel with the demo's model picked in the variable (Grafana escapes a single value as a regex).
    picked = {**chosen, "$model": "fraud"}
    _, one, _ = run_target(prom, target, picked, lo, hi)
    if values_within(one, lo, hi) != got:
        return ["calls per second with $model=fraud differ from All"]
    return []


def check_variables(prom: Prometheus, board: dict, start: float, end: float) -> list[str]:
    """Grafana's label_values(metric, label) is /api/v1/label/<label>/values?match[]=metric over the range."""
    out = []
    chosen = {"$model": "fraud"}
    for variable in board["templating"]["list"]:
        if variable["type"] != "query":
            continue
        definition = substitute(variable["definition"], chosen)
        match = re.fullmatch(r"label_values\((.+), (\w+)\)", definition)
        if not match:
            out.append(f"variable {variable['name']}: {definition!r} is not label_values(selector, label)")
            continue
        selector, label = match.groups()
        got = prom.get(f"/api/v1/label/{label}/values", **{"match[]": selector, "start": repr(start), "end": repr(end)})
        want = ["fraud"] if label == "ml_model_name" else [demo_model_version()]
        if got != want:
            out.append(f"variable {variable['name']}: {got} (want {want})")
    return out


def demo_model_version() -> str:
    import fraud_model

    return fraud_model.MODEL_VERSION


def test_the_min_step_keeps_rate_panels_filled(demo_run):
    """Why each rate target carries ``interval: $export_interval``: without it Grafana sizes ``$__rate_interval``
    from the data source's scrape interval, 15 s unless set, a quarter of the SDK's default 60 s export interval,
    so a window holds one point at most and rate() returns nothing. Scaled to the demo's 1 s exports (a 0.25 s
    scrape interval), the same targets without their min step lose most of their points; with it, none."""
    prom, result, board, _ = demo_run
    chosen = {"$model": ".*", "$version": ".*", "$export_interval": duration(EXPORT_INTERVAL_S)}
    start, end = result.start, result.phase("drift").end
    scrape = EXPORT_INTERVAL_S / 4
    filled: dict[str, tuple[float, float]] = {}
    for panel in panels(board):
        for target in panel["targets"]:
            if "$__rate_interval" not in target["expr"]:
                continue
            assert target["interval"] == "$export_interval", panel["title"]
            bare = {k: v for k, v in target.items() if k != "interval"}
            shares = []
            for t in (target, bare):
                _, series, q = run_target(prom, t, chosen, start, end, datasource_scrape=scrape)
                first = start + q.rate_interval + 2 * EXPORT_INTERVAL_S  # the first window wholly in the traffic
                steps = [first + i * q.interval for i in range(math.floor((end - first) / q.interval) + 1)]
                have = {p for s in series for p, v in s.points if math.isfinite(v)}
                shares.append(sum(any(abs(p - t) < q.interval / 2 for p in have) for t in steps) / len(steps))
            filled[f"{panel['title']} [{target['legendFormat']}]"] = (shares[0], shares[1])
    print({k: (round(a, 2), round(b, 2)) for k, (a, b) in filled.items()})
    assert len(filled) >= 14 and all(a >= 0.9 and b <= 0.25 for a, b in filled.values()), filled
