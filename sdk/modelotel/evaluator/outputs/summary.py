"""The report's summary: per SLO, its status, what fires since when, the budget left and the next step, most
urgent first. ``summary_text`` renders it as plain text (docs/report.md shows one).

Order (``urgency``): a page firing, a ticket firing, failing, invalid or no data, inconclusive, passing; within
one rank, the smaller budget left first. "Since" is ``slo_history.run_start`` of the firing tier (or of the
failure when no tier fires), exact to one ledger bin under the bound stated there.

The next step is the SLO's own runbook when its spec names one, else the situation's runbook in
docs/runbooks.md, picked by the status and the kind of SLI (latency and errors: a release to roll back;
OOD, confidence and drift: the inputs changed; accuracy and calibration: the model is wrong for today's inputs).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from ..durations import format_duration
from ..engine.verdict import SLOResult
from .slo_history import History, RunStart, failing, run_start, tier_fires

LABELS = {"pass": "PASS", "fail": "FAIL", "inconclusive": "INCONCLUSIVE", "no_match": "NO DATA", "invalid": "INVALID"}
RUNBOOKS = "docs/runbooks.md"
RELEASE_KINDS = ("latency", "percentile", "error_ratio", "ratio")
INPUT_KINDS = ("ood_rate", "low_confidence_rate", "drift", "estimated_accuracy")
MODEL_KINDS = ("accuracy", "calibration", "abs_error")


@dataclass(frozen=True)
class Firing:
    tier: str
    severity: str
    burn_rate: float  # the tier's threshold
    long_burn: float | None
    short_burn: float | None
    since: RunStart | None


@dataclass(frozen=True)
class NextStep:
    text: str
    link: str  # the SLO's runbook (a URL or a path), or a section of docs/runbooks.md
    own: bool  # the link is the SLO's own runbook


@dataclass(frozen=True)
class SummaryLine:
    result: SLOResult
    label: str  # PASS, FAIL, INCONCLUSIVE, NO DATA, INVALID
    firing: tuple[Firing, ...]
    failing_since: RunStart | None  # when the SLO started failing (with no tier firing)
    next_step: NextStep | None
    rank: int  # 0 most urgent
    notes: tuple[str, ...] = ()  # the intervals the CLI shows beside (CBPE estimate and gap, label coverage)

    @property
    def name(self) -> str:
        return self.result.slo.name


def urgency(result: SLOResult) -> int:
    firing = {a.severity for a in result.alerts if a.firing}
    if "page" in firing:
        return 0
    if firing:
        return 1
    return {"fail": 2, "invalid": 3, "no_match": 3, "inconclusive": 4}.get(result.status, 5)


def next_step(result: SLOResult) -> NextStep | None:
    """The SLO's runbook, or the runbook of the situation; None when nothing needs doing."""
    runbook = getattr(result.slo, "runbook", "") or ""
    firing = any(a.firing for a in result.alerts)
    if result.status == "pass" and not firing:
        return None
    kind = result.slo.sli.kind
    if result.status == "inconclusive":
        text, section = (
            "too few events to judge: wait for traffic or check min_events",
            "low-traffic-inconclusive-verdicts",
        )
    elif result.status in ("no_match", "invalid"):
        text, section = f"fix the input or the spec: {result.reason}", "which-situation-is-it"
    elif not firing:
        text, section = (
            "the burn is over and the budget is spent: pause risky releases",
            "the-budget-is-spent-pause-releases",
        )
    elif kind in RELEASE_KINDS:
        text = "a recent release? `modelotel compare` the versions and roll back; no release: check drift"
        section = "the-canary-comparison-says-rollback"
    elif kind in INPUT_KINDS:
        text, section = (
            "the inputs changed: `modelotel drift`, fall back for out-of-distribution inputs",
            ("drift-or-out-of-distribution-inputs"),
        )
    elif kind in MODEL_KINDS:
        text, section = (
            "the model is wrong for today's inputs: check drift, fall back, collect labels",
            ("fall-back-to-a-safer-model"),
        )
    else:
        text, section = "find the situation in the runbooks", "which-situation-is-it"
    if runbook:
        return NextStep(text, runbook, True)
    return NextStep(text, f"{RUNBOOKS}#{section}", False)


def summarize(
    results: list[SLOResult], ledgers: list, histories: list[History], notes: list[tuple[str, ...]] | None = None
) -> list[SummaryLine]:
    """One line per SLO, most urgent first (``ledgers``, ``histories`` and ``notes`` by result)."""
    lines = []
    notes = notes if notes is not None else [()] * len(results)
    for result, ledger, hist, extra in zip(results, ledgers, histories, notes, strict=True):
        firing = tuple(
            Firing(
                a.name,
                a.severity,
                a.burn_rate,
                a.long_burn,
                a.short_burn,
                run_start(ledger, hist, tier_fires(a.name)) if ledger is not None else None,
            )
            for a in sorted(result.alerts, key=lambda a: (a.severity != "page", -a.burn_rate))
            if a.firing
        )
        since = None
        if not firing and result.status == "fail" and ledger is not None:
            since = run_start(ledger, hist, failing)
        label = LABELS.get(result.status, result.status.upper())
        lines.append(SummaryLine(result, label, firing, since, next_step(result), urgency(result), extra))
    remaining = {id(line): line.result.budget_remaining_ratio for line in lines}
    lines.sort(key=lambda line: (line.rank, remaining[id(line)] if remaining[id(line)] is not None else 2.0))
    return lines


def clock(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def since_text(start: RunStart, at: float) -> str:
    """``since 2026-12-07 03:06:40 UTC (for 25s)``: how long up to the evaluation time, not up to when the page
    is read; ``at least since ... (for at least ...)`` when it held at the first evaluated time."""
    when = clock(start.since)
    held = format_duration(max(round(at - start.since), 0)) if at - start.since >= 1 else "0s"
    if start.before_first:
        return f"at least since {when} (for at least {held})"
    return f"since {when} (for {held})"


def sli_text(result: SLOResult) -> str:
    if result.sli is None:
        return "SLI -"
    text = f"SLI {result.sli:.3%}"
    lo, hi = result.sli_lower, result.sli_upper
    if lo is not None and hi is not None and hi - lo > 5e-6:
        text += f" [{lo:.3%}, {hi:.3%}]"
    return f"{text} (objective {result.slo.objective:.3%})"


def budget_text(result: SLOResult) -> str:
    """As the CLI's footer: overspent, or the time to exhaustion at the current burn."""
    remaining = result.budget_remaining_ratio
    if remaining is None:
        return "budget left -"
    text = f"budget left {remaining:.1%}"
    if remaining <= 0:
        text += f" ({-remaining:.0%} overspent)" if remaining < 0 else " (spent exactly)"
    elif result.time_to_exhaustion is not None and result.status in ("pass", "fail"):
        text += f", exhausted in {format_duration(max(round(result.time_to_exhaustion), 1))} at the current burn"
    return text


def firing_text(f: Firing, at: float) -> str:
    burns = "/".join("-" if b is None else f"{b:.1f}x" for b in (f.short_burn, f.long_burn))
    text = f"{f.tier} ({f.severity}) firing: burn {burns} (short/long) >= {f.burn_rate:g}x"
    return text + (f", {since_text(f.since, at)}" if f.since else "")


def headline(lines: list[SummaryLine], at: float) -> str:
    """``3 of 4 SLOs need attention: 2 paging, 0 with a ticket only. As of 2026-12-07 03:07:03 UTC.``"""
    attention = sum(1 for line in lines if line.rank < 5)
    asof = f"As of {clock(at)}."
    if not attention:
        return f"All {len(lines)} SLOs pass; nothing fires. {asof}"
    pages = sum(1 for line in lines if line.rank == 0)
    tickets = sum(1 for line in lines if line.rank == 1)
    return f"{attention} of {len(lines)} SLOs need attention: {pages} paging, {tickets} with a ticket only. {asof}"


def summary_text(lines: list[SummaryLine], at: float) -> str:
    """The summary as plain text, one block per SLO."""
    out = [headline(lines, at)]
    width = max((len(line.label) for line in lines), default=4)
    for line in lines:
        r = line.result
        out.append(f"{line.label:<{width}}  {line.name}: {sli_text(r)}; {budget_text(r)}")
        pad = " " * (width + 2)
        for f in line.firing:
            out.append(f"{pad}{firing_text(f, at)}")
        if line.failing_since is not None:
            out.append(f"{pad}no tier fires; failing {since_text(line.failing_since, at)}")
        if r.status != "pass" and r.status != "fail":
            out.append(f"{pad}{r.reason}")
        for note in line.notes:
            out.append(f"{pad}{note}")
        if line.next_step is not None:
            out.append(f"{pad}next: {line.next_step.text} ({line.next_step.link})")
    return "\n".join(out)
