"""The results: the parquet store, leaderboards, figures and the reproduce check."""
