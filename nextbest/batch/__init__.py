"""Batch scoring: :func:`nextbest.batch.run.decide_customers` on a local or a Spark backend."""
