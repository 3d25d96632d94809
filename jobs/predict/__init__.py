"""Batch prediction: score raw files with a registered version (`relay predict --input`)."""
