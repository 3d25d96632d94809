"""Stage tune: Ray Tune with ASHA over the training trial; one MLflow run per trial."""
