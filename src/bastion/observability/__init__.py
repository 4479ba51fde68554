"""Observability: inference tables, usage, traces and metrics."""
