"""Real Delta Lake and Apache Iceberg tables through ``run``: in by path and by catalog name, out as tables.

The connectors are the pinned JARs of .ci/connector-jars.txt (``.ci/fetch-jars``), loaded into the one test
session by tests/conftest.py: Delta as the session catalog, Iceberg as the Hadoop catalog ``lake``. Each test
skips, saying why, where its connector cannot run (CI sets SPARK_JQL_REQUIRE_CONNECTORS: a missing JAR fails).
"""

from __future__ import annotations

import pytest
from pyspark.sql import functions as F

from spark_jql import schema
from spark_jql.config import load_config
from spark_jql.devtools.sample_data import generate_documents
from spark_jql.errors import InputError
from spark_jql.spark.job import Job

from .conftest import REPO, job_overrides, require_connector


def _docs(spark, n: int, seed: int, prefix: str):
    rows = [{"id": f"{prefix}{i}", "text": d["text"], "language": d["language"]}
            for i, d in enumerate(generate_documents(n, seed=seed))]
    return spark.createDataFrame(rows, "id string, text string, language string")


def _job(spark, bundle, out, inputs=(), **sets) -> Job:
    return Job(spark, load_config(None, job_overrides(bundle, list(inputs), out, **{"thresholds.min_docs": "5", **sets})))


def _split(kept, dropped) -> tuple[list[str], list[str]]:
    return [r["id"] for r in kept.select("id").collect()], [r["id"] for r in dropped.select("id").collect()]


def _scores(spark, out) -> dict:
    rows = spark.read.option("mergeSchema", "true").parquet(str(out / "scored")).select("id", schema.AGGREGATE).collect()
    assert len(rows) == len({r["id"] for r in rows}), "a document scored twice"
    return {r["id"]: r[schema.AGGREGATE] for r in rows}


def test_delta_by_path_to_delta_folders_partitioned_resumes_and_refuses_to_replace(spark, gte_bundle, tmp_path):
    require_connector("delta")
    source = str(tmp_path / "docs_delta")
    _docs(spark, 24, 31, "d").repartition(3).write.format("delta").save(source)
    out = tmp_path / "out"
    sets = {"io.input_format": "delta", "io.output_format": "delta", "io.partition_by_language": "true",
            "io.files_per_unit": "1"}
    summary = _job(spark, gte_bundle, out, [source], **sets).run()

    assert summary["annotate"]["units"] == 3  # one unit per Delta data file (_metadata.file_path)
    kept = spark.read.format("delta").load(str(out / "filtered"))
    dropped = spark.read.format("delta").load(str(out / "dropped"))
    assert (out / "filtered" / "_delta_log").is_dir() and (out / "dropped" / "_delta_log").is_dir()
    kept_ids, dropped_ids = _split(kept, dropped)
    assert sorted(kept_ids + dropped_ids) == sorted(f"d{i}" for i in range(24))  # none lost, none twice
    assert len(kept_ids) == summary["filter"]["kept_rows"] > 0 and dropped_ids
    assert all("/language=" in f for f in kept.inputFiles())

    # A run that died after a unit's write but before its marker: the rerun redoes that unit alone, same scores.
    before = _scores(spark, out)
    (out / "scored" / "_jql_units" / "unit-00001.json").unlink()
    again = _job(spark, gte_bundle, out, [source], **sets).annotate()
    assert (again["units_resumed"], again["scored_rows"]) == (2, 24)
    assert _scores(spark, out).keys() == before.keys()
    assert all(abs(s - before[i]) < 1e-5 for i, s in _scores(spark, out).items() if s is not None)

    # io.mode=error: the outputs exist (filtered/ and dropped/ as Delta tables), so the rerun stops before any work.
    with pytest.raises(InputError, match="already exists \\(io.mode=error\\)"):
        _job(spark, gte_bundle, out, [source], **{**sets, "io.mode": "error"}).run()


def test_delta_catalog_table_in_and_out_with_mode_error(spark, gte_bundle, tmp_path):
    require_connector("delta")
    spark.sql("DROP TABLE IF EXISTS jql_lake_docs")
    spark.sql("DROP TABLE IF EXISTS jql_lake_kept")
    spark.sql("DROP TABLE IF EXISTS jql_lake_dropped")
    _docs(spark, 20, 32, "c").repartition(2).write.format("delta").saveAsTable("jql_lake_docs")
    tables = {"io.input_table": "jql_lake_docs", "io.output_format": "delta", "io.output_tables.filtered": "jql_lake_kept",
              "io.output_tables.dropped": "jql_lake_dropped", "io.partition_by_language": "true"}
    summary = _job(spark, gte_bundle, tmp_path / "out", **tables).run()
    for name in ("jql_lake_kept", "jql_lake_dropped"):
        detail = spark.sql(f"DESCRIBE DETAIL {name}").first()
        assert detail["format"] == "delta" and detail["partitionColumns"] == ["language"]
    kept_ids, dropped_ids = _split(spark.table("jql_lake_kept"), spark.table("jql_lake_dropped"))
    assert sorted(kept_ids + dropped_ids) == sorted(f"c{i}" for i in range(20))
    assert summary["filter"]["kept_rows"] == len(kept_ids)

    # io.mode=error with the output tables already there: refused before any work (no scored/ under a new output).
    fresh = tmp_path / "fresh"
    with pytest.raises(InputError, match="table jql_lake_kept \\(io.output_tables.filtered\\) already exists"):
        _job(spark, gte_bundle, fresh, **{**tables, "io.mode": "error"}).run()
    assert not (fresh / "scored").exists()


def test_iceberg_by_catalog_name_and_by_path_to_iceberg_tables(spark, gte_bundle, tmp_path):
    require_connector("iceberg")
    spark.sql("DROP TABLE IF EXISTS lake.jql.docs")
    _docs(spark, 20, 33, "i").repartition(2).writeTo("lake.jql.docs").using("iceberg").create()
    outputs = {"io.output_format": "iceberg", "io.output_tables.filtered": "lake.jql.kept",
               "io.output_tables.dropped": "lake.jql.dropped", "io.partition_by_language": "true"}
    by_name = _job(spark, gte_bundle, tmp_path / "by_name", **{"io.input_table": "lake.jql.docs", **outputs}).run()
    kept, dropped = spark.table("lake.jql.kept"), spark.table("lake.jql.dropped")
    kept_ids, dropped_ids = _split(kept, dropped)
    assert sorted(kept_ids + dropped_ids) == sorted(f"i{i}" for i in range(20))
    assert by_name["filter"]["kept_rows"] == len(kept_ids)
    for name in ("lake.jql.kept", "lake.jql.dropped"):  # Iceberg's partition spec, and files under language=...
        assert [r["partition"] for r in spark.sql(f"SELECT partition FROM {name}.partitions").collect()]
        assert all("/language=" in r["file_path"] for r in spark.sql(f"SELECT file_path FROM {name}.files").collect())

    # The same table by its location (io.input_format: iceberg): the same documents, the same scores.
    location = spark.sql("DESCRIBE TABLE EXTENDED lake.jql.docs").where(F.col("col_name") == "Location").first()["data_type"]
    by_path = _job(spark, gte_bundle, tmp_path / "by_path", [location], **{"io.input_format": "iceberg", **outputs}).run()
    assert by_path["annotate"]["scored_rows"] == 20
    named, located = _scores(spark, tmp_path / "by_name"), _scores(spark, tmp_path / "by_path")
    assert located.keys() == named.keys() and all(abs(s - named[i]) < 1e-5 for i, s in located.items() if s is not None)


# -- incremental ETL: units are the table's data files ----------------------------------------------------------


def test_delta_append_scores_only_new_files_and_a_rewrite_starts_over(spark, gte_bundle, tmp_path):
    require_connector("delta")
    source = str(tmp_path / "inc_delta")
    _docs(spark, 16, 34, "a").repartition(2).write.format("delta").save(source)
    out, sets = tmp_path / "out", {"io.input_format": "delta", "io.files_per_unit": "1"}
    first = _job(spark, gte_bundle, out, [source], **sets).annotate()
    assert (first["units"], first["scored_rows"]) == (2, 16)

    _docs(spark, 4, 35, "b").coalesce(1).write.format("delta").mode("append").save(source)
    added = _job(spark, gte_bundle, out, [source], **sets).annotate()
    assert (added["units_resumed"], added["input_files_added"], added["scored_rows"]) == (2, 1, 20)
    assert (first["input_version"], added["input_version"]) == ({"delta_version": 0}, {"delta_version": 1})
    assert set(_scores(spark, out)) == {f"a{i}" for i in range(16)} | {f"b{i}" for i in range(4)}

    spark.sql(f"DELETE FROM delta.`{source}` WHERE id = 'a0'")  # rewrites a data file: old results must not mix in
    with pytest.raises(InputError, match="input file\\(s\\) of the previous run are gone"):
        _job(spark, gte_bundle, out, [source], **{**sets, "io.mode": "error"}).annotate()
    again = _job(spark, gte_bundle, out, [source], **sets).annotate()
    assert again["units_resumed"] == 0 and set(_scores(spark, out)) == ({f"a{i}" for i in range(1, 16)} | {f"b{i}" for i in range(4)})


def test_iceberg_append_scores_only_new_files_and_a_row_delete_starts_over(spark, gte_bundle, tmp_path):
    require_connector("iceberg")
    spark.sql("DROP TABLE IF EXISTS lake.jql.inc")
    (_docs(spark, 16, 36, "a").repartition(2).writeTo("lake.jql.inc").using("iceberg")
     .tableProperty("format-version", "2").tableProperty("write.delete.mode", "merge-on-read").create())
    out, sets = tmp_path / "out", {"io.input_table": "lake.jql.inc", "io.files_per_unit": "1"}
    first = _job(spark, gte_bundle, out, **sets).annotate()
    assert (first["units"], first["scored_rows"]) == (2, 16)  # one unit per data file (Iceberg's files table)

    _docs(spark, 4, 37, "b").coalesce(1).writeTo("lake.jql.inc").append()
    added = _job(spark, gte_bundle, out, **sets).annotate()
    assert (added["units_resumed"], added["input_files_added"], added["scored_rows"]) == (2, 1, 20)
    snapshots = [r["snapshot_id"] for r in spark.sql("SELECT snapshot_id FROM lake.jql.inc.snapshots ORDER BY committed_at").collect()]
    assert [first["input_version"], added["input_version"]] == [{"iceberg_snapshot": s} for s in snapshots]
    assert set(_scores(spark, out)) == {f"a{i}" for i in range(16)} | {f"b{i}" for i in range(4)}

    spark.sql("DELETE FROM lake.jql.inc WHERE id = 'a0'")  # merge-on-read: a delete file, the data files unchanged
    with pytest.raises(InputError, match="input file\\(s\\) of the previous run are gone"):
        _job(spark, gte_bundle, out, **{**sets, "io.mode": "error"}).annotate()
    again = _job(spark, gte_bundle, out, **sets).annotate()
    assert again["units_resumed"] == 0 and set(_scores(spark, out)) == ({f"a{i}" for i in range(1, 16)} | {f"b{i}" for i in range(4)})


def test_user_guide_lake_example_runs(spark, gte_bundle, tmp_path):
    require_connector("delta")
    guide = (REPO / "docs" / "user_guide.md").read_text()
    example = guide.split("<!-- lake-example -->\n```yaml\n", 1)[1].split("```", 1)[0]
    local = {"main.raw.web_docs": "jql_guide_docs", "main.curated.web_docs_kept": "jql_guide_kept",
             "main.curated.web_docs_dropped": "jql_guide_dropped"}
    for name, here in local.items():
        assert name in example
        example = example.replace(name, here)
        spark.sql(f"DROP TABLE IF EXISTS {here}")
    config_file = tmp_path / "lake.yaml"
    config_file.write_text(example)
    _docs(spark, 16, 38, "g").repartition(2).write.format("delta").saveAsTable("jql_guide_docs")
    out = tmp_path / "run"  # replaces the example's /Volumes/... output
    summary = Job(spark, load_config(str(config_file), job_overrides(gte_bundle, [], out, **{"thresholds.min_docs": "5"}))).run()
    kept_ids, dropped_ids = _split(spark.table("jql_guide_kept"), spark.table("jql_guide_dropped"))
    assert sorted(kept_ids + dropped_ids) == sorted(f"g{i}" for i in range(16)) and summary["filter"]["kept_rows"] == len(kept_ids)
    assert spark.sql("DESCRIBE DETAIL jql_guide_kept").first()["format"] == "delta"
