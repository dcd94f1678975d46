"""OTLP writers: JSON lines (``json``) and protobuf (``proto``) encoders, and the bounded file appender."""
