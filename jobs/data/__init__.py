"""Raw inputs shared by ETL, batch prediction and reproduction: sources, row parsing, row hashes."""
