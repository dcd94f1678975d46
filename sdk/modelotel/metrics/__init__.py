"""Metrics: self-telemetry, the hot-path buffers, the recorder that folds them, and the export loop."""
