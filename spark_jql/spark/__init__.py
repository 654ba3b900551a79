"""Spark side of spark_jql: a thin wrapper around the Spark-free scorer."""

from spark_jql.spark.api import annotate, apply_thresholds, compute_thresholds

__all__ = ["annotate", "compute_thresholds", "apply_thresholds"]
