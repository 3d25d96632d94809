"""What you submit to a cluster: the stages (one package each), the pipeline that chains them
(``python -m jobs.pipeline``) and the ``relay`` CLI.

Layers, checked by import-linter (pyproject.toml): cli > pipeline > stages > the libraries the
stages share (gates, train, metrics, data) > artifacts. May import ``serving`` and ``cluster``.
"""
