"""Stage evaluate: the best trial on the test split, through the serving code path."""
