"""Training a model inside a Tune trial: the shared loop, the single-worker trial, DDP."""
