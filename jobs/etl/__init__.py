"""Stage ETL: raw files to a validated, PII-safe, split Parquet dataset with a digest (stage.py)."""
