"""Measuring a model: task and per-group metrics, drift against a reference, their plots."""
