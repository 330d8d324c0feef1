"""Observability: task timings, call statistics, progress, traces."""
