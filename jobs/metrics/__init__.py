"""Measuring a model: task and per-group metrics, their plots (drift: `serving.drift`)."""
