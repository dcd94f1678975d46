"""Spans: choosing a TracerProvider, modelotel's cheap span, and recording exceptions without leaking PII.

When the application already set an SDK TracerProvider we use it (its sampler, id generator,
resource and span processors); otherwise, when traces are on, we build one that exports where the
metrics go and install it globally so the application's own spans join the same pipeline. That
provider's only span processor is a ``SpanQueue`` (tracing/queue.py): a span of ours that ends there is
one list append, and everything else (encoding, writing) happens on the queue's thread.

Modules: ``span`` (the leaf: ``LightSpan``, status constants), ``start`` (starting spans), ``provider``
(choosing a TracerProvider), ``queue`` (the span queue and exporters).
"""
