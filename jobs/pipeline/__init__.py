"""The pipeline: the stages in order, the one entry point, lineage and reproduction."""
