"""What you submit to a cluster: one module per stage (``python -m jobs.<stage>``), the
pipeline that chains them, and the ``relay`` CLI. May import ``cluster`` and ``serving``."""
