"""The `relay` command line: one module per command group; app.py registers them."""
