"""Model-quality statistics from exported telemetry, pure functions of sketches and counts.

``drift`` (PSI, KS, JS, Hellinger between two sketches) · ``calibration`` (ECE, Brier) · ``fairness`` (per-group
rates) · ``compare`` / ``arms`` (A/B arms) · ``timeline`` (per-bucket series) · ``signals`` (gathers them for the
CLI and the report).
"""
