"""The report's parts that need no browser: axes and ticks, when a firing run began, the summary's order and
next steps, a short run's chart, and the size of a day's report. tests/e2e/test_report_browser.py looks at
the rendered page."""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from modelotel.evaluator.engine import evaluate
from modelotel.evaluator.engine.ledger import Bin, Ledger
from modelotel.evaluator.engine.verdict import evaluate_slo
from modelotel.evaluator.outputs import report
from modelotel.evaluator.outputs.chart_axes import (
    MIN_STEP,
    Scale,
    format_seconds,
    linear_ticks,
    log_domain,
    log_ticks,
    spans_decade,
    time_ticks,
)
from modelotel.evaluator.outputs.slo_history import history, run_start, tier_fires
from modelotel.evaluator.outputs.summary import summarize, summary_text
from modelotel.evaluator.outputs.svg import PALETTE, Bar, Series, YAxis, bar_rows, line_chart
from modelotel.evaluator.quality.signals import Signals
from modelotel.evaluator.slo import SLI, SLO, AlertTier, Selector, Window
from modelotel.evaluator.spec import load_specs

import telemetry_gen as gen

finite = st.floats(-1e6, 1e6, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(finite, finite, st.integers(1, 10))
@example(0.0, 5e-324, 2)  # a subnormal range (found by this test in a full run): its ends, no round step
@example(0.0, 5e-324, 1)
def test_linear_ticks_are_round_distinct_and_inside(a, b, n):
    lo, hi = min(a, b), max(a, b)
    ticks = linear_ticks(lo, hi, n)
    assert ticks == sorted(set(ticks)) and 1 <= len(ticks) <= max(n + 2, 3)
    span = hi - lo
    assert all(lo - 1e-9 * max(1, abs(lo), span) <= t <= hi + 1e-9 * max(1, abs(hi), span) for t in ticks)
    if span / n < MIN_STEP:  # below any power of ten a step could be: the range's own ends
        assert ticks in ([lo], [lo, hi]), ticks
    elif len(ticks) > 1:
        step = ticks[1] - ticks[0]
        mantissa = step / 10 ** math.floor(math.log10(step))
        assert any(math.isclose(mantissa, m, rel_tol=1e-6) for m in (1, 2, 2.5, 5, 10)), step


def _is_125(v: float) -> bool:
    k = math.floor(math.log10(v) + 1e-12)
    return any(math.isclose(v, m * 10.0**k, rel_tol=1e-9) for m in (1, 2, 5))


@settings(max_examples=200, deadline=None)
@given(st.floats(1e-7, 1e5), st.floats(1.0, 1e6), st.integers(2, 12))
def test_log_ticks_are_125_and_every_one_inside_is_there(lo, ratio, max_ticks):
    hi = lo * ratio
    ticks = log_ticks(lo, hi, max_ticks)
    assert ticks == sorted(set(ticks)) and all(lo * (1 - 1e-9) <= t <= hi * (1 + 1e-9) for t in ticks)
    assert all(_is_125(t) for t in ticks)
    # exact: every 1-2-5 value in range, enumerated independently
    every = sorted(
        m * 10.0**k
        for k in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 2)
        for m in (1, 2, 5)
        if lo * (1 - 1e-9) <= m * 10.0**k <= hi * (1 + 1e-9)
    )
    if len(every) <= max_ticks:
        assert len(ticks) == len(every) and all(math.isclose(a, b) for a, b in zip(ticks, every, strict=True))
    else:  # thinned to powers of ten
        assert len(ticks) <= max_ticks and all(math.isclose(math.log10(t), round(math.log10(t))) for t in ticks)


@settings(max_examples=200, deadline=None)
@given(st.floats(1e-7, 1e5), st.floats(1.0, 1e6))
def test_log_domain_holds_the_data_and_ends_on_ticks(lo, ratio):
    hi = lo * ratio
    a, b = log_domain(lo, hi)
    assert a <= lo * (1 + 1e-12) and b >= hi * (1 - 1e-12) and _is_125(a) and _is_125(b)
    assert b / a <= ratio * 5.0 * 2.5 * (1 + 1e-9)  # at most one 1-2-5 step wider at each end
    scale = Scale(a, b, log=True)
    assert math.isclose(scale.frac(a), 0.0, abs_tol=1e-12) and math.isclose(scale.frac(b), 1.0)
    mid = math.sqrt(a * b)
    assert math.isclose(scale.frac(mid), 0.5)  # equal distance per factor


@given(st.lists(st.floats(-10, 1e4, allow_nan=False), max_size=20))
def test_spans_decade_is_max_over_min_of_positive_values(values):
    positive = [v for v in values if v > 0]
    assert spans_decade(values) == (bool(positive) and max(positive) / min(positive) > 10)


@settings(max_examples=100, deadline=None)
@given(st.floats(1.7e9, 1.8e9), st.floats(0.0, 5 * 86400))
def test_time_ticks_distinct_inside_and_few(t0, span):
    ticks = time_ticks(t0, t0 + span)
    labels = [label for _, label in ticks]
    assert len(labels) == len(set(labels)) and 1 <= len(ticks) <= 9
    assert all(t0 - 1e-6 <= t <= t0 + span + 1e-6 for t, _ in ticks)
    for t, label in ticks:
        dt = datetime.fromtimestamp(t, timezone.utc)
        assert label in (dt.strftime("%H:%M:%S"), dt.strftime("%H:%M"), dt.strftime("%m-%d %H:%M"))


def test_format_seconds_names_the_unit():
    assert [format_seconds(v) for v in (5e-4, 0.002, 0.25, 1.0, 1.5, 300)] == [
        "500 µs",
        "2 ms",
        "250 ms",
        "1 s",
        "1.5 s",
        "5 min",
    ]


# -- when the current firing run began ---------------------------------------------------------------------

R = 10.0
TIER = AlertTier("t", "page", 2.0, 60.0, 20.0)
ERRORS = SLO(
    "errors",
    SLI("error_ratio", Selector("ml.inference.duration")),
    0.9,
    Window(600.0),
    alert_tiers=(TIER,),
    min_events=1,
)


def _ledger(bad: list[int], total: int = 20, k0: int = 100) -> Ledger:
    led = Ledger(ERRORS, R)
    for i, b in enumerate(bad):
        good = float(total - b)
        led.bins[k0 + i + 1] = Bin(float(total), good, good, good)
    return led


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(0, 20), min_size=3, max_size=60), st.integers(2, 12))
def test_run_start_against_every_bin_end(bad, points):
    """Exact computation: the verdict at every bin end. The bisection finds the run's first bin end whenever the
    state changed at most once between two grid times; otherwise it may pass over a dip (earlier, never later)."""
    k0 = 100
    led = _ledger(bad, k0=k0)
    at = (k0 + len(bad)) * R
    hist = history(led, at - 600.0, at, points)
    holds = tier_fires("t")
    found = run_start(led, hist, holds)
    ks = range(k0, k0 + len(bad) + 1)
    state = {k: holds(evaluate_slo(led, k * R)) for k in ks}
    if not state[ks[-1]]:
        assert found is None
        return
    assert found is not None
    first = ks[-1]
    while first - 1 in state and state[first - 1]:
        first -= 1
    exact = first * R
    grid = [round(t / R) for t in hist.times]
    changes = [sum(state[k] != state[k - 1] for k in range(a + 1, b + 1)) for a, b in zip(grid, grid[1:], strict=False)]
    once = max(changes, default=0) <= 1  # the bound's condition
    if found.before_first:  # "at least since the first grid time"
        assert found.since == hist.times[0] and (exact <= found.since or not once)
        return
    assert state[round(found.since / R)] and not state[round(found.since / R) - 1]
    assert found.since <= exact  # a missed dip makes it earlier, never later
    if once:
        assert found.since == exact


# -- the summary ---------------------------------------------------------------------------------------------


def _day(tmp_path, models=("fraud", "churn", "ranker")):
    """A day of three busy models, two instances each, with a slow hour: OTLP JSON lines (tests/telemetry_gen)."""
    lines = []
    rng = np.random.default_rng(3)
    for m in models:
        t = rng.uniform(0, 86400, 30_000)
        slow = (t > 80_000) & (t < 83_600)
        durations = rng.lognormal(math.log(0.004), 0.4, t.size)
        durations[slow] = rng.uniform(0.4, 0.5, int(slow.sum()))
        # half the first slow calls inside the bucket of the 100 ms threshold, beside slower ones in the same
        # minutes (so the minute's max does not tell that they are under it): the SLI has bounds
        durations[slow & (t < 81_000) & (rng.random(t.size) < 0.5)] = 0.0999
        events = [
            gen.Event(f"{m}-{i % 2}", float(x), float(d), error=bool(rng.random() < 0.001))
            for i, (x, d) in enumerate(zip(t, durations, strict=True))
        ]
        lines += gen.export_lines(events, interval=60.0, end=86400.0, model=m)
    path = tmp_path / "day.jsonl"
    gen.write_lines(path, lines)
    return path


def _spec(tmp_path, entries: list[str]) -> list[SLO]:
    """Native SLO specs, one YAML entry per SLO."""
    path = tmp_path / "slo.yaml"
    path.write_text("slos:\n" + "".join(entries))
    return list(load_specs([str(path)]).slos)


def _entry(name: str, model: str, sli: str, alerts: str, extra: str = "") -> str:
    fields = [f"name: {name}", f"model: {model}", f"sli: {sli}", "objective: 0.99", "window: 1d", "min_events: 10"]
    fields += [f"alerts: {alerts}", *extra.splitlines()]
    return "  - " + "\n    ".join(fields) + "\n"


PAGE_AND_TICKET = (
    "{page-fast: {long_window: 1h, short_window: 5m}, page-slow: off, "
    "ticket-fast: {burn_rate: 1, long_window: 1h, short_window: 5m}, ticket-slow: off}"
)
PAGE_ONLY = "{page-fast: {long_window: 1h, short_window: 5m}, page-slow: off, ticket-fast: off, ticket-slow: off}"
TICKET_ONLY = (
    "{page-fast: off, page-slow: off, ticket-fast: {burn_rate: 1, long_window: 1h, short_window: 5m}, ticket-slow: off}"
)


def _page_ticket_slos(tmp_path, models=("fraud", "churn", "ranker")) -> list[SLO]:
    entries = []
    for m in models:
        entries.append(_entry(f"{m}-latency", m, "latency", PAGE_AND_TICKET, "threshold: 100ms\n"))
        entries.append(_entry(f"{m}-errors", m, "error_ratio", PAGE_ONLY))
    return _spec(tmp_path, entries)


def test_a_day_of_a_busy_service_renders_small_with_the_summary_first(tmp_path):
    data = _day(tmp_path)
    slos = _page_ticket_slos(tmp_path)
    at = gen.EPOCH + 83_000.0  # inside the slow hour: every latency SLO pages
    signals = Signals.create(60.0)
    ev = evaluate(slos, [str(data)], at=at, sinks=signals.timelines())
    html = report.render(ev, signals)
    size = len(html.encode())
    assert size < 200_000, size  # a day, three models, six SLOs: well under 1 MB (docs/report.md)
    assert "<script" not in html
    body = html.split("<body>", 1)[1]
    assert body.index('class="summary"') < body.index("<h2>")  # the summary before every section
    names = re.findall(r'<div class="slo" data-slo="([^"]+)" data-status="(\w+)"', html)
    statuses = dict(names)
    assert {n for n, _ in names[:3]} == {n for n in statuses if n.endswith("latency")}  # the pages first
    assert all(statuses[n] == "fail" for n in statuses if n.endswith("latency"))
    assert all(statuses[n] == "pass" for n in statuses if n.endswith("errors"))
    for result in ev.results:
        if result.slo.name.endswith("latency"):
            assert any(a.firing and a.severity == "page" for a in result.alerts)


def test_summary_order_since_and_next_step(tmp_path):
    data = _day(tmp_path, models=("fraud",))
    own = "https://runbooks.example/fraud-latency"
    slos = _spec(
        tmp_path,
        [
            _entry("quiet", "fraud", "latency", PAGE_ONLY, "threshold: 1s\n"),
            _entry("tickets-only", "fraud", "latency", TICKET_ONLY, "threshold: 100ms\n"),
            _entry("pages", "fraud", "latency", PAGE_AND_TICKET, f"threshold: 100ms\nrunbook: {own}\n"),
        ],
    )
    at = gen.EPOCH + 82_000.0  # 2000 s into the slow hour (from 80,000 s)
    ev = evaluate(slos, [str(data)], at=at)
    hists = [history(led, r.window_start, ev.at, 60) for led, r in zip(ev.ledgers, ev.results, strict=True)]
    lines = summarize(ev.results, ev.ledgers, hists)
    assert [line.name for line in lines] == ["pages", "tickets-only", "quiet"]
    assert [line.label for line in lines] == ["FAIL", "FAIL", "PASS"]
    pages = lines[0]
    assert pages.next_step is not None and pages.next_step.link == own and pages.next_step.own
    assert lines[1].next_step is not None and lines[1].next_step.link.startswith("docs/runbooks.md#")
    assert lines[2].next_step is None
    fired = {f.tier: f for f in pages.firing}
    assert set(fired) == {"page-fast", "ticket-fast"}
    since = fired["page-fast"].since
    assert since is not None and not since.before_first
    # exact: the first bin end from which page-fast fires at every bin end up to now
    led = ev.ledgers[[r.slo.name for r in ev.results].index("pages")]
    k = math.floor(at / led.resolution)
    while tier_fires("page-fast")(evaluate_slo(led, (k - 1) * led.resolution)):
        k -= 1
    assert since.since == k * led.resolution
    assert 80_000 + gen.EPOCH < since.since <= at  # after the slow hour began
    text = summary_text(lines, ev.at)
    assert text.splitlines()[0].startswith("2 of 3 SLOs need attention: 1 paging, 1 with a ticket only")
    assert f"({own})" in text and "page-fast (page) firing" in text and "since " in text
    html = report.render(ev, Signals.create(60.0))
    assert f'<a href="{own}">' in html


def test_a_runbook_with_a_script_scheme_is_not_linked():
    assert report._href("javascript:alert(1)") is None  # noqa: SLF001 - the module's own helper, tested here
    assert report._href("docs/runbooks.md#x") == "docs/runbooks.md#x"  # noqa: SLF001


def test_one_point_is_a_marker_with_one_tick_and_a_note():
    svg = line_chart([Series("p50", [(1.8e9, 0.003)], PALETTE[0])], title="t", y=YAxis("latency", format_seconds))
    assert svg.count("<circle") == 1 and "<polyline" not in svg
    assert "One evaluation point" in svg
    xticks = re.findall(r'<text x="[\d.]+%" y="\d+" text-anchor="\w+"(?: class="minor")?>([^<]+)</text>', svg)
    assert len(xticks) == len(set(xticks)) == 1


def test_latency_over_a_decade_gets_a_log_axis_and_a_narrow_range_does_not():
    wide = [Series("p50", [(0, 0.002), (60, 0.003)], PALETTE[0]), Series("p99", [(0, 0.4), (60, 0.41)], PALETTE[1])]
    narrow = [
        Series("p50", [(0, 0.002), (60, 0.003)], PALETTE[0]),
        Series("p99", [(0, 0.006), (60, 0.007)], PALETTE[1]),
    ]
    y = YAxis("latency", format_seconds, log=True)
    wide_svg, narrow_svg = line_chart(wide, title="w", y=y), line_chart(narrow, title="n", y=y)
    assert "(log scale)" in wide_svg and "(log scale)" not in narrow_svg
    ticks = re.findall(r'text-anchor="end">([^<]+)</text>', wide_svg.split('class="area"')[0])
    assert ticks[:3] == ["500 ms", "200 ms", "100 ms"] or "2 ms" in ticks, ticks
    assert all(re.fullmatch(r"[\d.]+ (µs|ms|s|min)", t) for t in ticks), ticks


def test_budget_band_is_the_budget_each_sli_bound_gives(tmp_path):
    """The band of the budget chart: ``1 - (1 - bound) / (1 - objective)`` for each SLI bound; it brackets the
    engine's budget left at every re-evaluation (exact identity for the middle: the same formula on the SLI)."""
    data = _day(tmp_path, models=("fraud",))
    slos = _page_ticket_slos(tmp_path, models=("fraud",))
    ev = evaluate(slos, [str(data)], at=gen.EPOCH + 83_000.0)
    drawn = 0
    for led, result in zip(ev.ledgers, ev.results, strict=True):
        hist = history(led, result.window_start, ev.at, 30)
        b = round(1 - result.slo.objective, 12)
        for r in hist.results:
            if r.sli is None:
                continue
            assert math.isclose(r.budget_remaining_ratio, 1 - (1 - r.sli) / b, rel_tol=1e-9, abs_tol=1e-9)
            lo, hi = 1 - (1 - r.sli_lower) / b, 1 - (1 - r.sli_upper) / b
            assert lo - 1e-9 <= r.budget_remaining_ratio <= hi + 1e-9
            drawn += hi - lo > 1e-9
        chart = report._budget_chart(hist, (hist.times[0], ev.at))  # noqa: SLF001 - the module's own chart
        wide = any(
            r.sli_lower is not None and 1 - (1 - r.sli_upper) / b - (1 - (1 - r.sli_lower) / b) > 1e-9
            for r in hist.results
        )
        assert ('class="band"' in chart) == wide, result.slo.name
    assert drawn  # the latency threshold (100 ms) falls inside a bucket: the band is there


LINE_FORMS = (  # every line summary_text writes, as a pattern
    r"\d+ of \d+ SLOs need attention: \d+ paging, \d+ with a ticket only\. As of [\d-]+ [\d:]+ UTC\.",
    r"All \d+ SLOs pass; nothing fires\. As of [\d-]+ [\d:]+ UTC\.",
    r"(PASS|FAIL|INCONCLUSIVE|NO DATA|INVALID) +[\w.-]+: SLI [\d.]+% (\[[\d.]+%, [\d.]+%\] )?\(objective [\d.]+%\); "
    r"budget left -?[\d.]+%( \(\d+% overspent\)| \(spent exactly\)|, exhausted in \w+ at the current burn)?",
    r" +[\w-]+ \((page|ticket)\) firing: burn [\d.x/-]+ \(short/long\) >= [\d.]+x, (at least )?since [\d-]+ [\d:]+ UTC "
    r"\(for (at least )?\w+\)",
    r" +no tier fires; failing (at least )?since [\d-]+ [\d:]+ UTC \(for (at least )?\w+\)",
    r" +next: .+ \(\S+\)",
    r" +label coverage [\d.]+% \([\d,]+ of [\d,]+ predictions\)",
    r" +estimated accuracy [\d.]+% \(CBPE\), gap [+-][\d.]+ points.*",
)


def test_the_summary_in_docs_is_in_the_form_summary_text_writes(tmp_path):
    """docs/report.md shows the demo's summary as text: every line of it has a form summary_text writes, and a
    summary rendered here has only lines of those forms."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "report.md").read_text()
    block = doc.split("```text\n", 1)[1].split("```", 1)[0].splitlines()
    data = _day(tmp_path, models=("fraud",))
    ev = evaluate(_page_ticket_slos(tmp_path, models=("fraud",)), [str(data)], at=gen.EPOCH + 83_000.0)
    hists = [history(led, r.window_start, ev.at, 60) for led, r in zip(ev.ledgers, ev.results, strict=True)]
    rendered = summary_text(summarize(ev.results, ev.ledgers, hists), ev.at).splitlines()
    for line in block + rendered:
        assert any(re.fullmatch(form, line) for form in LINE_FORMS), line
    assert len(block) >= 10 and any("firing" in line for line in rendered)


NO_TIERS = "{page-fast: off, page-slow: off, ticket-fast: off, ticket-slow: off}"


def test_every_status_and_shape_renders(tmp_path):
    """No data, too few events, no alert tiers, time slices: each has its status word and next step, and the
    report renders without raising (the summary's order puts them after the failing ones)."""
    data = _day(tmp_path, models=("fraud",))
    slos = _spec(
        tmp_path,
        [
            _entry("typo", "frud", "latency", PAGE_ONLY, "threshold: 100ms\n"),
            _entry("too-few", "fraud", "latency", PAGE_ONLY, "threshold: 100ms\n").replace(
                "min_events: 10", "min_events: 10000000"
            ),
            _entry("no-tiers", "fraud", "latency", NO_TIERS, "threshold: 100ms\n"),
            _entry(
                "sliced", "fraud", "latency", PAGE_ONLY, "threshold: 100ms\npercentile: p95\ntimeslice: {window: 5m}\n"
            ),
        ],
    )
    ev = evaluate(slos, [str(data)], at=gen.EPOCH + 83_000.0)
    html = report.render(ev, Signals.create(60.0))
    statuses = dict(re.findall(r'<div class="slo" data-slo="([^"]+)" data-status="(\w+)"', html))
    assert statuses["typo"] == "no_match" and statuses["too-few"] == "inconclusive"
    assert statuses["no-tiers"] == "fail" and statuses["sliced"] in ("pass", "fail")
    for word in ("NO DATA", "INCONCLUSIVE", "no alert tiers"):
        assert word in html, word
    assert "low-traffic-inconclusive-verdicts" in html and "budget-is-spent" in html
    order = [name for name, _ in re.findall(r'<div class="slo" data-slo="([^"]+)" data-status="(\w+)"', html)]
    assert order.index("no-tiers") < order.index("typo") < order.index("too-few")


def test_a_legend_names_only_bar_categories_that_are_drawn():
    keys = [("low", PALETTE[0]), ("mid", PALETTE[1]), ("high", PALETTE[2])]
    svg = bar_rows([Bar("a", 0.05, "low"), Bar("b", 3.0, "high")], title="t", keys=keys, x_title="PSI")
    legend = re.findall(r'<span class="key" data-key="([^"]+)">', svg)
    drawn = set(re.findall(r'<rect [^>]*data-key="([^"]+)"', svg))
    assert legend == ["klow", "khigh"] and set(legend) == drawn
