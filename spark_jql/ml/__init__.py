"""pyspark.ml stages: JQL scoring and thresholds in a ``Pipeline``, saved and loaded with pyspark.ml's own persistence.

    from pyspark.ml import Pipeline
    from spark_jql.ml import JQLScorer, JQLThresholds

    model = Pipeline(stages=[JQLScorer(config=ScorerConfig()), JQLThresholds(quantile=0.6)]).fit(docs)
    model.write().overwrite().save("s3://.../jql_pipeline")   # the thresholds travel with the model
    marked = PipelineModel.load("s3://.../jql_pipeline").transform(new_docs)   # + jql_keep, jql_drop_reason
"""

from spark_jql.ml.stages import JQLScorer, JQLThresholds, JQLThresholdsModel

__all__ = ["JQLScorer", "JQLThresholds", "JQLThresholdsModel"]
