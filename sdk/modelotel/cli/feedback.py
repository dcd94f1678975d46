"""``modelotel feedback``: a labels file ingested as feedback for signed prediction ids."""

from __future__ import annotations

import argparse
import sys
import time

from .. import config
from .shared import (
    Help,
    UsageError,
    add_command,
)

FEEDBACK_OK, FEEDBACK_REFUSED, FEEDBACK_USAGE, FEEDBACK_EXPORT_FAILED = 0, 1, 2, 3


FEEDBACK_LINES_AFTER_ROWS = 100_000  # --progress auto off a terminal: lines once the file is this large ...


FEEDBACK_LINES_AFTER_S = 5.0  # ... or has taken this long


FEEDBACK_HELP = Help(
    summary="ingest a labels file (CSV, JSON lines, Parquet) as feedback for signed prediction ids",
    description="""
        Ingest a labels file: one row per judged prediction, as labelling pipelines produce them. Each row is
        judged like modelotel.record_feedback (any prediction id from last_prediction_id(), signed with the same
        MODELOTEL_FEEDBACK_KEY as this process has) and exported through the configured exporter
        (MODELOTEL_EXPORT_FILE, OTEL_EXPORTER_OTLP_ENDPOINT, ... as for the SDK) when the file is done.

        Reads LABELS_FILE: CSV or TSV, JSON lines (.jsonl, .ndjson, .json) or Parquet; text formats may be gzipped. Its
        columns: the prediction id; the true label (or a boolean --correct-column); optionally when the label
        became known (--time-column: ISO 8601 or epoch seconds; default now) and a fairness group
        (--group-column).

        Every row is accounted for: rows read = recorded + refused, refused by reason (missing_id, missing_label,
        bad_time, bad_correct, bad_json, and every record_feedback reason: feedback_id_forged,
        feedback_id_truncated, feedback_id_foreign, feedback_id_unknown_key, feedback_id_expired,
        feedback_duplicate, ...) with the first line numbers (file lines, header = 1; Parquet: 0-based row index).
        --errors writes every refused row.
    """,
    examples=(
        (
            "a CSV of labels with a fairness group, refused rows kept for a look",
            "MODELOTEL_FEEDBACK_KEY=... MODELOTEL_EXPORT_FILE=feedback.jsonl \\\n"
            "    modelotel feedback labels.csv --group-column region --errors bad_rows.csv",
        ),
        (
            "a Parquet file whose label column is 'truth', as JSON",
            "modelotel feedback labels.parquet --label-column truth --json",
        ),
    ),
    exit_codes=(
        (FEEDBACK_OK, "every row recorded"),
        (FEEDBACK_REFUSED, "some rows refused (the recorded ones are still exported)"),
        (FEEDBACK_USAGE, "usage error, unreadable file, or no MODELOTEL_FEEDBACK_KEY"),
        (FEEDBACK_EXPORT_FAILED, "the export failed (nothing, or not everything, was delivered)"),
    ),
)


class RowProgress:
    """Rows judged, on stderr: a bar redrawn in place (``bar``, at most 5 times a second), a line every 5 s
    (``lines``), or nothing. ``auto``: a bar on a terminal; off one, lines once the file is large (over
    FEEDBACK_LINES_AFTER_ROWS rows or FEEDBACK_LINES_AFTER_S seconds), and then a final line. Asked for
    explicitly (``bar``, ``lines``), the final count is shown whatever the size."""

    def __init__(self, mode: str, source: str, done, stream=None, clock=time.monotonic) -> None:
        self.stream = stream or sys.stderr
        self.forced = mode in ("bar", "lines")
        if mode == "auto":
            mode = "bar" if self.stream.isatty() else "auto-lines"
        self.mode = mode
        self.source = source
        self.done = done  # () -> fraction of the file read
        self.clock = clock
        self.started = clock()
        self.last = self.started
        self.shown = False

    def large(self, summary, now: float) -> bool:
        return summary.read >= FEEDBACK_LINES_AFTER_ROWS or now - self.started >= FEEDBACK_LINES_AFTER_S

    def __call__(self, summary) -> None:
        if self.mode == "none" or summary.read & 1023:  # the clock is read once per 1,024 rows
            return
        now = self.clock()
        if now - self.last < (0.2 if self.mode == "bar" else 5.0):
            return
        if self.mode == "auto-lines" and not self.large(summary, now):
            return
        self.last = now
        self.show(summary, now)

    def show(self, summary, now: float) -> None:
        fraction = self.done()
        rate = summary.read / max(now - self.started, 1e-6)
        text = f"{summary.read:,} rows ({fraction:.0%}), {summary.refused:,} refused, {rate:,.0f} rows/s"
        if self.mode == "bar":
            filled = int(30 * fraction)
            self.stream.write(f"\r{self.source} [{'#' * filled}{'.' * (30 - filled)}] {text}\x1b[K")
        else:
            self.stream.write(f"{self.source}: {text}\n")
        self.stream.flush()
        self.shown = True

    def close(self, summary) -> None:
        now = self.clock()
        if self.shown or self.forced or (self.mode == "auto-lines" and self.large(summary, now)):
            self.show(summary, now)
            if self.mode == "bar":
                self.stream.write("\n")
            self.stream.flush()


def _feedback_columns(args: argparse.Namespace):
    from ..feedback.labels_file import Columns

    return Columns(
        id=args.id_column,
        label=args.label_column or "label",
        correct=args.correct_column,
        time=args.time_column,
        group=args.group_column,
        label_explicit=args.label_column is not None,
    )


def _feedback_table(path: str, location: str, summary, seconds: float, export_ok: bool) -> str:
    lines = [
        f"{path}: {summary.read:,} rows read = {summary.recorded:,} recorded ({summary.items:,} items judged) "
        f"+ {summary.refused:,} refused, in {seconds:.1f} s ({summary.read / max(seconds, 1e-9):,.0f} rows/s)"
    ]
    if summary.reasons:
        width = max(len("reason"), *(len(r) for r in summary.reasons))
        lines.append(f"{'reason':<{width}}  {'rows':>9}  first {location}s  (first message)")
        for reason, tally in sorted(summary.reasons.items(), key=lambda kv: -kv[1].count):
            first = ", ".join(map(str, tally.first)) + (", ..." if tally.count > len(tally.first) else "")
            lines.append(f"{reason:<{width}}  {tally.count:>9,}  {first}  ({tally.message})")
    lines.append("export: ok" if export_ok else "export: FAILED (see the errors above)")
    return "\n".join(lines)


def _feedback_json(args, location: str, fmt: str, summary, seconds: float, export_ok: bool) -> str:
    import json

    return json.dumps(
        {
            "file": args.labels_file,
            "format": fmt,
            "location": location,
            "rows_read": summary.read,
            "recorded": summary.recorded,
            "items_judged": summary.items,
            "refused": summary.refused,
            "reasons": {
                reason: {"count": t.count, f"first_{location}s": t.first, "message": t.message}
                for reason, t in summary.reasons.items()
            },
            "export_ok": export_ok,
            "seconds": seconds,
            "rows_per_s": summary.read / seconds if seconds > 0 else None,
        },
        indent=2,
    )


def cmd_feedback(args: argparse.Namespace) -> int:
    import csv

    from .. import runtime
    from ..feedback.ingest import IngestSummary, ingest
    from ..feedback.labels_file import LabelsFile, LabelsFileError

    try:
        settings = config.feedback_settings()
    except config.ConfigError as exc:  # main() maps ConfigError to 3, which here means a failed export
        raise UsageError(str(exc), FEEDBACK_USAGE) from None
    if settings.key is None:
        raise UsageError(
            f"{config.ENV_FEEDBACK_KEY} is not set: ids made by other processes cannot be judged; set it to the "
            "serving processes' key",
            FEEDBACK_USAGE,
        )
    try:
        labels = LabelsFile(args.labels_file, args.format, _feedback_columns(args))
    except LabelsFileError as exc:
        raise UsageError(str(exc), FEEDBACK_USAGE) from None
    errors_fh = writer = None
    if args.errors:
        try:
            errors_fh = open(args.errors, "w", newline="", encoding="utf-8")  # noqa: SIM115 (closed below)
        except OSError as exc:
            labels.close()
            raise UsageError(f"--errors {args.errors}: {exc.strerror or exc}", FEEDBACK_USAGE) from None
        writer = csv.writer(errors_fh)
        writer.writerow([labels.location, "reason", "message"])
    try:
        runtime.configure()
    except config.ConfigError as exc:
        labels.close()
        raise UsageError(str(exc), FEEDBACK_USAGE) from None
    loop = runtime.STATE.loop
    progress = RowProgress(args.progress, args.labels_file, labels.done)
    started = time.monotonic()
    summary = IngestSummary()
    try:
        with labels:
            ingest(
                labels.rows(),
                positive_label=args.positive_label,
                on_bad_row=(lambda where, reason, message: writer.writerow((where, reason, message)))
                if writer
                else None,
                on_row=progress,
                summary=summary,
            )
            progress.close(summary)  # while the file is open: the fraction read is its position
    except LabelsFileError as exc:
        exported = runtime.shutdown()  # what was judged before the file broke is still exported
        before = (
            f" ({summary.read:,} rows read before it: {summary.recorded:,} recorded"
            f"{' and exported' if exported else ', export FAILED'}, {summary.refused:,} refused)"
            if summary.read
            else ""
        )
        raise UsageError(f"{exc}{before}", FEEDBACK_USAGE) from None
    finally:
        if errors_fh is not None:
            errors_fh.close()
    export_ok = runtime.shutdown()
    export_ok = export_ok and (loop is None or loop.failures == 0)  # an earlier periodic export failing counts
    seconds = time.monotonic() - started
    if args.json:
        print(_feedback_json(args, labels.location, labels.format, summary, seconds, export_ok))
    else:
        print(_feedback_table(args.labels_file, labels.location, summary, seconds, export_ok))
    if not export_ok:
        return FEEDBACK_EXPORT_FAILED
    return FEEDBACK_REFUSED if summary.refused else FEEDBACK_OK


def add_parser(sub) -> None:
    from ..feedback.labels_file import FORMATS

    p = add_command(sub, "feedback", FEEDBACK_HELP)
    p.add_argument(
        "labels_file",
        metavar="LABELS_FILE",
        help="the labels file (.csv/.tsv/.jsonl/.ndjson/.json/.parquet; .gz for text formats)",
    )
    p.add_argument("--format", choices=FORMATS, help="the file's format (default: from its extension)")
    p.add_argument("--id-column", default="prediction_id", help="the prediction id column (default prediction_id)")
    p.add_argument("--label-column", help="the true label column (default label)")
    p.add_argument("--correct-column", help="a boolean column: was the prediction correct (instead of a label)")
    p.add_argument("--time-column", help="when the label became known: ISO 8601 or epoch seconds (default: now)")
    p.add_argument("--group-column", help="the fairness group (ml.fairness.group)")
    p.add_argument("--positive-label", help="the positive class for fairness rates (default: the model's)")
    p.add_argument(
        "--progress",
        choices=("auto", "bar", "lines", "none"),
        default="auto",
        help="progress on stderr (default auto: a bar on a terminal, lines for large files otherwise)",
    )
    p.add_argument("--errors", metavar="FILE", help="write every refused row (line, reason, message) as CSV")
    p.add_argument("--json", action="store_true", help="a machine-readable summary on stdout")
    p.usage_exit = FEEDBACK_USAGE
    p.set_defaults(func=cmd_feedback)
