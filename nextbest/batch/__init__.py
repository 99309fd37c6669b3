"""Batch scoring: :func:`nextbest.batch.run.score_customers` on a local or a Spark backend."""
