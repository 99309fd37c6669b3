"""Batch scoring: :func:`batch.run.score_customers` on a local or a Spark backend."""
