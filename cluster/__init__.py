"""The substrate: configuration, Ray connection, MLflow tracking and the model bundle format.

Imports neither ``jobs`` nor ``serving``.
"""
