# Databricks notebook source
# MAGIC %md
# MAGIC # JQL quality filtering with spark_jql (Databricks)
# MAGIC
# MAGIC Scores a multilingual corpus with the JQL-Edu heads, computes per-language thresholds and keeps the
# MAGIC documents at or above the 0.6 quantile of their language. Run it on a GPU ML cluster set up as in
# MAGIC `conf/databricks-cluster.json` (one GPU per task, `conf/databricks-init.sh` installs the package).
# MAGIC
# MAGIC The models are read from a Unity Catalog volume (download them once with `hf download`),
# MAGIC so workers never need Hub access.

# COMMAND ----------

dbutils.widgets.text("input", "/Volumes/main/corpora/fineweb2/deu_Latn/train/*.parquet")
dbutils.widgets.text("output", "/Volumes/main/corpora/jql/deu_Latn")
dbutils.widgets.text("models", "/Volumes/main/models")
INPUT = dbutils.widgets.get("input")
OUTPUT = dbutils.widgets.get("output")
MODELS = dbutils.widgets.get("models")

# COMMAND ----------

# MAGIC %md ## 1. Configuration (validated before Spark does any work)

# COMMAND ----------

from spark_jql.config import ColumnsConfig, EmbedderConfig, HeadConfig, LangIdConfig, ScorerConfig, ThresholdConfig

scorer = ScorerConfig(
    embedder=EmbedderConfig(model=f"{MODELS}/snowflake-arctic-embed-m-v2.0", dtype="bfloat16"),
    heads=[
        HeadConfig(name=f"Edu-JQL-{j}-SF", path=f"{MODELS}/JQL-Edu-Heads/checkpoints/edu-{j.lower()}-snowflake-balanced.ckpt")
        for j in ("Gemma", "Mistral", "Llama")
    ],
)
columns = ColumnsConfig(language=["language", "language_script"])
print(scorer.model_dump_json(indent=2))

# COMMAND ----------

# MAGIC %md ## 2. (Optional) add a language column, for corpora without one

# COMMAND ----------

from spark_jql.spark.langid import add_language

docs = spark.read.parquet(INPUT)
if "language" not in docs.columns:
    docs = docs.transform(add_language, LangIdConfig())   # language, language_script, language_score
display(docs.groupBy("language", "language_script").count().orderBy("count", ascending=False))

# COMMAND ----------

# MAGIC %md ## 3. Score once (GPU), write `scored/` and `stats/`

# COMMAND ----------

from spark_jql.spark import annotate

scored = docs.transform(annotate, scorer, "text", 4096)
scored.write.mode("overwrite").parquet(f"{OUTPUT}/scored")
scored = spark.read.parquet(f"{OUTPUT}/scored")
scored.drop("text").write.mode("overwrite").parquet(f"{OUTPUT}/stats")

# COMMAND ----------

# MAGIC %md ## 4. Per-language thresholds and the filter (CPU only, re-run at will)

# COMMAND ----------

from spark_jql.spark import apply_thresholds, compute_thresholds

thresholds = compute_thresholds(scored, ThresholdConfig(quantiles=[0.6, 0.7]), columns)
dbutils.fs.put(f"{OUTPUT}/thresholds.json", thresholds.to_json(), overwrite=True)
display(spark.createDataFrame(thresholds.table(0.6)))

kept, dropped = apply_thresholds(scored, thresholds, quantile=0.6, columns=columns)
kept.write.mode("overwrite").parquet(f"{OUTPUT}/filtered")

# COMMAND ----------

# MAGIC %md ## 5. Report: histograms, heads, token retention per language

# COMMAND ----------

from spark_jql.paths import local_view
from spark_jql.report import write_report

result = write_report(spark, OUTPUT)          # reads stats/ and thresholds.json only
# result["report"] is the file written: report.html itself, or its part file where Spark Connect could not rename;
# local_view gives the driver's FUSE path of it (dbfs:/Volumes/... -> /Volumes/..., dbfs:/... -> /dbfs/...).
displayHTML(open(local_view(result["report"]), encoding="utf-8").read())

# COMMAND ----------

# MAGIC %md
# MAGIC The same steps as one job (e.g. a Databricks job task): `spark_jql.cli.run_job(["-c", "conf/databricks.yaml", "run"])`
# MAGIC (it raises on failure, so a failed stage fails the task),
# MAGIC then `spark_jql.cli.run_job(["-c", "conf/databricks.yaml", "report"])`.
