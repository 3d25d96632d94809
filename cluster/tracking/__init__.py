"""MLflow: the Tracker (retry, then spool while the server is down), the model registry and
bundle (spec + weight files + sha256), and the loopback tracking server."""
