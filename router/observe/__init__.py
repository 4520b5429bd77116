"""Observability: trace context, spans and their export, metrics, logs."""
