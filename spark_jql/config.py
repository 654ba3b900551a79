"""Typed, validated configuration: the one place every knob is declared.

Every setting has a default that works for the published JQL models; YAML files
in ``conf/`` and ``--set key=value`` overrides are validated here, so a typo or a
wrong type fails before Spark starts, with the offending key in the message.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from spark_jql import paths
from spark_jql.fingerprint import runtime
from spark_jql.judge_presets import PRESETS
from spark_jql.layout import OutputLayout
from spark_jql.paths import is_filesystem_root

DEFAULT_EMBEDDER = "Snowflake/snowflake-arctic-embed-m-v2.0"
JQL_HEADS_REPO = "Jackal-AI/JQL-Edu-Heads"
DEFAULT_MAX_LENGTH = 8192
INT_MAX = 2**31 - 1  # Spark's Int.MaxValue: the largest percentile_approx accuracy and batch size it takes
# Column names spark_jql writes (schema.py's, and units.UNIT_COLUMN); an input column may not be read as one.
WRITTEN_PREFIXES = ("score_", "jql_", "_jql_", "__jql")


class ConfigError(ValueError):
    """Raised for any invalid configuration; the message names the key."""


def require_unique_names(items: list, what: str) -> list:
    names = [item.name for item in items]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{what} names must be unique, repeated: {dupes}")
    return items


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class EmbedderConfig(_Strict):
    """Which encoder turns text into vectors, and how it is run."""

    model: str = Field(DEFAULT_EMBEDDER, description="Hub id or local directory of a Hugging Face encoder.")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) to pin.")
    max_length: int | Literal["auto"] = Field(
        "auto", description="Truncation length in tokens. 'auto': the model's own, as JQL's calls give "
        "(8194 for jina-embeddings-v3, 8192 for arctic-embed-m-v2.0 and gte-multilingual-base and any other model).",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="'auto': bfloat16 on CUDA, float32 on CPU."
    )
    device: str = runtime("auto", description="'auto', 'cpu', 'cuda' or 'cuda:N'.")
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2", "flex_attention"] = runtime("sdpa")
    trust_remote_code: bool = Field(False, description="Run model code from the Hub. Off unless you opt in.")
    pooling: Literal["auto", "cls", "mean"] = Field(
        "auto", description="'cls': first token (arctic-embed, gte); 'mean': over real tokens (jina-v3). 'auto': the model's."
    )
    normalize: bool = Field(True, description="L2-normalise embeddings (JQL: yes, for all three embedders).")
    prefix: str | None = Field(
        None, description="Text put before every document. None: the model's (jina-embeddings-v3: the chosen task's "
        "instruction from its config, '' for text-matching; none for the other embedders). An explicit value wins.",
    )
    task_adapter: str | None = Field(
        "auto", description="LoRA task adapter sub-folder to load (jina-v3: 'text_matching', as JQL's task='text-matching'); "
        "'auto': the model's, None: none.",
    )

    @field_validator("max_length")
    @classmethod
    def _check_max_length(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 2:
            raise ValueError(f"max_length must be 'auto' or at least 2, got {value}")
        return value

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if value in ("auto", "cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit()):
            return value
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {value!r}")


class HeadConfig(_Strict):
    """One regression head: a local file, or a file in a Hub repository."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    path: str | None = Field(None, description="Local .ckpt (Lightning) or .safetensors (spark_jql) file.")
    repo_id: str | None = Field(None, description="Hub repository holding the file.")
    filename: str | None = Field(None, description="File inside repo_id.")
    revision: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> "HeadConfig":
        if (self.path is None) == (self.repo_id is None):
            raise ValueError(f"head {self.name!r}: give exactly one of 'path' or 'repo_id'+'filename'")
        if self.repo_id is not None and not self.filename:
            raise ValueError(f"head {self.name!r}: 'repo_id' needs 'filename'")
        return self


def default_heads() -> list[HeadConfig]:
    """The three published JQL-Edu heads on the arctic-embed-m-v2.0 embedder."""
    return [
        HeadConfig(
            name=f"Edu-JQL-{judge.capitalize()}-SF",
            repo_id=JQL_HEADS_REPO,
            filename=f"checkpoints/edu-{judge}-snowflake-balanced.ckpt",
        )
        for judge in ("gemma", "mistral", "llama")
    ]


class ScorerConfig(_Strict):
    """Everything that decides a document's scores; its hash keys the per-worker model cache."""

    embedder: EmbedderConfig = Field(default_factory=EmbedderConfig)
    heads: list[HeadConfig] = Field(default_factory=default_heads, min_length=1)
    aggregate: Literal["mean", "median", "min", "max"] = Field(
        "mean", description="How the per-head scores are combined into the score the filter uses."
    )
    token_budget: int | Literal["auto"] = runtime(
        "auto",
        description="Tokens per micro-batch (padded layout: rows x longest; packed: real tokens). "
        "'auto': 16384 on CPU, sized from free memory on GPU.",
    )
    layout: Literal["auto", "padded", "packed"] = runtime(
        "auto", description="Micro-batch layout. 'padded': rows padded to the longest, with a mask; 'packed': real "
        "tokens only in one row, attention per document (GTE, jina-v3). 'auto': packed on CUDA when variable-length "
        "attention is available, padded elsewhere.",
    )
    max_batch_docs: int = runtime(4096, ge=1, description="Upper bound on documents per micro-batch.")
    oom_retry: bool = runtime(True, description="On CUDA out-of-memory, split the micro-batch and retry.")
    store_embedding: Literal["none", "float16", "bfloat16"] = Field(
        "none", description="Also write each document's embedding (column jql_embedding: little-endian float16 or "
        "bfloat16 bytes) so new heads can rescore without the encoder. 'none': off.",
    )

    @field_validator("heads")
    @classmethod
    def _unique_names(cls, heads: list[HeadConfig]) -> list[HeadConfig]:
        return require_unique_names(heads, "head")

    @model_validator(mode="after")
    def _budget_fits_longest(self) -> "ScorerConfig":
        if (isinstance(self.token_budget, int) and isinstance(self.embedder.max_length, int)
                and self.token_budget < self.embedder.max_length):
            raise ValueError(
                f"token_budget ({self.token_budget}) is smaller than embedder.max_length "
                f"({self.embedder.max_length}): the longest allowed document would not fit in a micro-batch"
            )
        return self


class ColumnsConfig(_Strict):
    """Names of the columns spark_jql reads and writes."""

    text: str = Field("text", min_length=1)
    language: list[str] = Field(default_factory=lambda: ["language"])
    constant_language: str | None = Field(
        None, min_length=1, description="Monolingual input: use this language instead of reading a column."
    )
    embedding: str | None = Field(
        None, description="Score stored embeddings from this column (heads only: no encoder, CPU) instead of the text."
    )
    embedding_dtype: Literal["auto", "float16", "bfloat16", "float32"] = Field(
        "auto", description="Encoding of a binary embedding column; 'auto': from its spark_jql metadata."
    )

    @field_validator("language", mode="before")
    @classmethod
    def _as_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("text")
    @classmethod
    def _text_not_written(cls, value: str) -> str:
        if value.startswith(WRITTEN_PREFIXES):
            raise ValueError(f"{value!r} is a name spark_jql writes ({', '.join(WRITTEN_PREFIXES)}...), not an input text column")
        return value

    @field_validator("language")
    @classmethod
    def _language_names(cls, values: list[str]) -> list[str]:
        if any(not v for v in values):
            raise ValueError("a language column name is empty")
        if len(set(values)) != len(values):
            raise ValueError(f"language columns repeat: {values}")
        written = [v for v in values if v.startswith(WRITTEN_PREFIXES)]
        if written:
            raise ValueError(f"{written} are names spark_jql writes, not input language columns")
        return values

    @model_validator(mode="after")
    def _some_language(self) -> "ColumnsConfig":
        if not self.language and self.constant_language is None:
            raise ValueError(
                "language is empty: name the language column(s), e.g. [language], or set "
                "columns.constant_language for monolingual input"
            )
        if self.constant_language is None and self.text in self.language:
            raise ValueError(f"text column {self.text!r} is also a language column")
        return self


class ThresholdConfig(_Strict):
    quantiles: list[float] = Field(default_factory=lambda: [0.6, 0.7], min_length=1)
    relative_error: float = Field(
        0.001, gt=0, lt=1,
        description="percentile_approx accuracy = 1/relative_error; Spark takes at most 2^31-1, so >= 4.66e-10.",
    )
    min_docs: int = Field(1000, ge=1, description="Languages with fewer scored documents use the global threshold.")

    @field_validator("quantiles")
    @classmethod
    def _in_open_unit_interval(cls, values: list[float]) -> list[float]:
        bad = [q for q in values if not 0 < q < 1]
        if bad:
            raise ValueError(f"quantiles must lie strictly between 0 and 1, got {bad}")
        return sorted(set(values))

    @field_validator("relative_error")
    @classmethod
    def _spark_accuracy(cls, value: float) -> float:
        if round(1.0 / value) > INT_MAX:
            raise ValueError(
                f"{value} is below 1/2147483647 (4.66e-10): Spark's percentile_approx takes an accuracy "
                "(1/relative_error) of at most 2147483647; 0.001 (the default) to 1e-6 are typical"
            )
        return value


class FilterConfig(_Strict):
    quantile: float = Field(0.6, gt=0, lt=1, description="Which computed quantile's threshold to keep above.")
    write_dropped: bool = Field(True, description="Also write dropped documents, with the reason.")


class SparkConfig(_Strict):
    master: str | None = Field(None, description="Spark master for local runs; None leaves it to spark-submit.")
    app_name: str = "spark_jql"
    arrow_batch_size: int = runtime(
        2048, ge=1, le=INT_MAX,
        description="Rows at most per batch handed to the scorer. spark-jql's stages set Spark's Arrow batch size "
                    "to it for their run and restore it; in df.transform(annotate) batches are cut from Spark's "
                    "(spark.sql.execution.arrow.maxRecordsPerBatch, left alone, caps this).",
    )
    slots: int | None = runtime(
        None, ge=1, description="Task slots that score at once (GPUs x tasks per GPU); None: from the session's "
        "GPU resources, else its default parallelism.",
    )
    partitions_per_slot: int = runtime(
        2, ge=1, le=1000, description="Partitions per slot in each unit, planned by bytes (waves of work per slot). The "
        "unit's smallest files come last in smaller partitions, which evens out the end; each further wave costs "
        "every slot one more task start.",
    )
    conf: dict[str, str] = Field(default_factory=dict, description="Extra Spark settings.")

    @field_validator("conf", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()}
        return value


class OutputTables(_Strict):
    """Catalog tables to write outputs to instead of (filtered, dropped) or besides (scored) files."""

    scored: str | None = Field(None, description="Also save the scored rows as this table once annotate is done.")
    filtered: str | None = Field(None, description="Write kept documents to this table instead of filtered/.")
    dropped: str | None = Field(None, description="Write dropped documents to this table instead of dropped/.")

    @field_validator("scored", "filtered", "dropped")
    @classmethod
    def _table_name(cls, value: str | None) -> str | None:
        if value is not None and not TABLE_NAME.match(value):
            raise ValueError(f"not a table name (catalog.schema.table, each part a word or `quoted`): {value!r}")
        return value


TABLE_NAME = re.compile(r"^(`[^`]+`|[A-Za-z_][A-Za-z0-9_]*)(\.(`[^`]+`|[A-Za-z_][A-Za-z0-9_]*)){0,2}$")
FORMAT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.]*$")


class IOConfig(_Strict):
    input: list[str] = Field(default_factory=list, description="Paths or globs (parquet, jsonl, jsonl.gz), or a table format's path.")
    input_table: str | None = Field(None, description="Catalog table to read instead of io.input (units: its files).")
    input_format: str = Field(
        "auto", description="'auto' (by file name), 'parquet', 'json', or a table format by name ('delta', 'iceberg') for io.input."
    )
    output: str = Field("output", description="Root directory of all outputs.")
    output_format: str = Field("parquet", description="Format of filtered/ and dropped/ (and the output tables): parquet, delta, ...")
    output_tables: OutputTables = Field(default_factory=OutputTables)
    output_columns: list[str] | None = Field(
        None, description="Columns written to filtered/dropped (jql_drop_reason is always added to dropped); None: all."
    )
    partition_by_language: bool = Field(False, description="Partition filtered/ and dropped/ by columns.language.")
    mode: Literal["overwrite", "error"] = Field(
        "overwrite", description="'error': refuse up front to replace any output (an interrupted run still resumes)."
    )
    unit_bytes: int = runtime(
        2 * 2**30, ge=1, description="Input bytes per unit of work (files are grouped up to this size); each unit is "
        "committed on its own, so a rerun resumes. Several waves of the cluster per unit.",
    )
    files_per_unit: int | None = runtime(
        None, ge=1, description="Input files per unit of work instead of unit_bytes (an explicit override).",
    )
    units_in_flight: int = runtime(
        2, ge=1, le=16, description="Units scored at once: the next unit's tasks start while the previous unit drains.",
    )
    resume: bool = Field(True, description="Skip units a previous run over the same inputs and scorer finished.")
    incremental: bool = Field(
        True, description="A rerun over the previous inputs (unchanged) plus new files scores only the new files."
    )
    on_bad_file: Literal["fail", "skip"] = Field(
        "fail",
        description="An unreadable file or a bad record (malformed JSON, non-string text): stop naming it, or skip it "
        "and count it in the summary.",
    )

    @field_validator("input", mode="before")
    @classmethod
    def _as_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("input")
    @classmethod
    def _no_empty_input(cls, values: list[str]) -> list[str]:
        if any(not v.strip() for v in values):
            raise ValueError(f"an input path is empty: {values}")
        return values

    @field_validator("output")
    @classmethod
    def _not_a_root(cls, value: str) -> str:
        if is_filesystem_root(value):
            raise ValueError(
                f"output {value!r} is {'empty' if not value.strip() else 'the root of a filesystem'}; stages replace "
                "scored/, stats/, filtered/ ... under it, so give a directory of its own, e.g. out/jql"
            )
        return value

    @model_validator(mode="after")
    def _output_apart_from_input(self) -> "IOConfig":
        clash = output_overlaps_input(self.output, self.input)
        if clash:
            raise ValueError(clash)
        return self

    @field_validator("input_format", "output_format")
    @classmethod
    def _format_name(cls, value: str) -> str:
        if not FORMAT_NAME.match(value):
            raise ValueError(f"not a data source format name: {value!r}")
        return value.lower()

    @field_validator("input_table")
    @classmethod
    def _input_table_name(cls, value: str | None) -> str | None:
        if value is not None and not TABLE_NAME.match(value):
            raise ValueError(f"not a table name (catalog.schema.table): {value!r}")
        return value

    @field_validator("output_columns")
    @classmethod
    def _some_columns(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or len(set(value)) != len(value) or not all(value)):
            raise ValueError("output_columns must list distinct, non-empty column names (or be null for all)")
        return value

    @model_validator(mode="after")
    def _one_input(self) -> "IOConfig":
        if self.input_table is not None and self.input:
            raise ValueError("give io.input (paths) or io.input_table, not both")
        if self.input_format not in ("auto", "parquet", "json") and len(self.input) > 1:
            raise ValueError(f"io.input_format {self.input_format!r} reads one table path; io.input has {len(self.input)}")
        return self


def output_overlaps_input(output: str, inputs: list[str], replaced: list[str] | None = None) -> str | None:
    """Why ``output`` may not be used with ``inputs`` (None if it may): outputs inside an input, or the reverse.

    Lexical (works for every filesystem, classified by spark_jql/paths.py): an input directory or a glob that
    covers the output would read the outputs back as input on the next run; an input inside a directory a run
    replaces (``replaced``, by default the job's scored/, stats/, filtered/, dropped/ under ``output``) would be deleted.
    Stages with an output of their own (embed, judge, langid) check it with ``replaced=[their output]``.
    """
    out_fs, out = paths.split(output)
    replaced = replaced if replaced is not None else OutputLayout(output).job_folders
    for pattern in inputs:
        in_fs, inp = paths.split(pattern)
        if in_fs != out_fs or not inp:
            continue
        if any(c in inp for c in "*?["):
            ancestors = [out] + [str(p) for p in PurePosixPath(out).parents]
            inside = any(fnmatch.fnmatchcase(a, inp) for a in ancestors)
        else:
            inside = paths.is_inside(output, pattern)
        if inside:
            return f"output {output!r} lies inside the input {pattern!r}: the next run would read its outputs as input"
        for folder in replaced:
            if paths.is_inside(pattern, folder):
                return f"input {pattern!r} lies inside {paths.normalise(folder)!r}, which a run with output {output!r} replaces"
    return None


def table_key(name: str, catalog: str | None = None, database: str | None = None) -> tuple[str, ...]:
    """A table name as Spark resolves it: backticks off, case folded, and (given the session's current catalog and
    database) qualified to ``(catalog, database, table)``; without them, only the parts as written."""
    parts = [p[1:-1] if p.startswith("`") else p for p in re.findall(r"`[^`]+`|[^.]+", name)]
    if catalog is not None and database is not None:
        parts = [catalog, database, *parts][-3:] if len(parts) == 1 else [catalog, *parts] if len(parts) == 2 else parts
    return tuple(p.lower() for p in parts)


def table_clash(input_table: str | None, outputs: dict[str, str | None], catalog: str | None = None,
                database: str | None = None) -> str | None:
    """Why these tables may not be used together (None if they may): an output that is the input table, or two
    outputs that are one table. ``outputs``: setting -> table name; names compare as :func:`table_key` resolves them."""
    named = [("io.input_table", input_table)] + list(outputs.items())
    seen: dict[tuple[str, ...], tuple[str, str]] = {}
    for setting, table in named:
        if table is None:
            continue
        key = table_key(table, catalog, database)
        if key in seen:
            first, first_name = seen[key]
            if first == "io.input_table":
                return (f"{setting}={table!r} is the input table (io.input_table={first_name!r}): writing it would "
                        "replace the documents being read; name another table")
            return f"{setting}={table!r} and {first}={first_name!r} are the same table; name two tables"
        seen[key] = (setting, table)
    return None


class ReportConfig(_Strict):
    """What ``spark-jql report`` adds beyond the numbers: example documents per score band (off by default,
    because it reads the text in ``scored/`` and puts some of it in a page that may be shared)."""

    samples: int = Field(0, ge=0, le=100, description="Example documents shown per score band (0: no examples section).")
    sample_chars: int = Field(300, ge=20, le=10000, description="Each example is cut to this many characters.")


class JobConfig(_Strict):
    """A whole spark-jql run."""

    io: IOConfig = Field(default_factory=IOConfig)
    columns: ColumnsConfig = Field(default_factory=ColumnsConfig)
    scorer: ScorerConfig = Field(default_factory=ScorerConfig)
    thresholds: ThresholdConfig = Field(default_factory=ThresholdConfig)
    filter: FilterConfig = Field(default_factory=FilterConfig)
    spark: SparkConfig = Field(default_factory=SparkConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)

    def output_tables(self) -> dict[str, str | None]:
        """The catalog tables a run writes, by setting (dropped/ only when it is written)."""
        tables = self.io.output_tables
        return {"io.output_tables.scored": tables.scored, "io.output_tables.filtered": tables.filtered,
                "io.output_tables.dropped": tables.dropped if self.filter.write_dropped else None}

    @model_validator(mode="after")
    def _tables_apart(self) -> "JobConfig":
        clash = table_clash(self.io.input_table, self.output_tables())
        if clash:
            raise ValueError(clash)
        return self

    @model_validator(mode="after")
    def _filter_quantile_computed(self) -> "JobConfig":
        if self.filter.quantile not in self.thresholds.quantiles:
            raise ValueError(
                f"filter.quantile {self.filter.quantile} is not among thresholds.quantiles {self.thresholds.quantiles}"
            )
        tables = self.io.output_tables
        if self.io.output_format == "iceberg" and (tables.filtered is None or (self.filter.write_dropped and tables.dropped is None)):
            raise ValueError("io.output_format 'iceberg' writes catalog tables only (Iceberg creates no table at a bare path): "
                             "set io.output_tables.filtered and io.output_tables.dropped, e.g. lake.db.kept")
        if self.io.partition_by_language and self.columns.constant_language is not None:
            raise ValueError("io.partition_by_language needs language columns, but columns.constant_language is set")
        if self.io.partition_by_language and self.io.output_columns is not None:
            missing = [c for c in self.columns.language if c not in self.io.output_columns]
            if missing:
                raise ValueError(f"io.partition_by_language: language column(s) {missing} are not in io.output_columns")
        return self


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation holds (``X``, ``X | None``, ``list[X]``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _known_keys(model: type[BaseModel] | None, loc: tuple) -> list[str]:
    """The keys allowed next to the one at ``loc`` (list indices skipped); [] where that is not a model."""
    cls = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = cls.model_fields.get(part) if cls is not None else None
        cls = _model_in(field.annotation) if field is not None else None
        if cls is None:
            return []
    return list(cls.model_fields) if cls is not None else []


def did_you_mean(model: type[BaseModel] | None, loc: tuple) -> str:
    """`` (did you mean 'quantile'?)`` for a misspelt key, or ''."""
    close = difflib.get_close_matches(str(loc[-1]), _known_keys(model, loc), n=1, cutoff=0.6) if loc else []
    return f" (did you mean {close[0]!r}?)" if close else ""


def _format_errors(err: ValidationError, source: str, overridden: tuple[str, ...] = (),
                   model: type[BaseModel] | None = None) -> str:
    """One line (the CLI prints errors as one line): ``invalid configuration (src): key: why (got x); key2: ...``.

    ``src`` says where the faulty values came from: the file, ``--set`` (keys a ``--set`` override gave or
    lies under), or both; a ``--set`` mistake is not blamed on the file.
    """
    parts, origins = [], set()
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        msg = ("unknown key" + did_you_mean(model, tuple(e["loc"])) if e["type"] == "extra_forbidden"
               else e["msg"].removeprefix("Value error, "))
        shown = e["type"] not in ("extra_forbidden", "value_error") and not isinstance(e["input"], dict)
        parts.append((f"{key}: " if key else "") + msg + (f" (got {e['input']!r})" if shown else ""))
        given = any(key == o or key.startswith(o + ".") for o in overridden)  # the value itself came from --set
        below = any(not key or o.startswith(key + ".") for o in overridden)  # a section check over --set values
        origins.update(["--set"] if given else ["--set", source] if below and source != "defaults" else
                       ["--set"] if below else [source])
    where = " and ".join(sorted(origins, key=lambda o: o == "--set")) or source
    return f"invalid configuration ({where}): " + "; ".join(parts)


def _yaml_problem(err: Exception) -> str:
    """``line L, column C: problem`` of a YAML parse error (the line counted from 1)."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or getattr(err, "context", None) or type(err).__name__
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    context, started = getattr(err, "context", None), getattr(err, "context_mark", None)
    if context and started is not None and started is not mark:
        problem += f" ({context} that starts at line {started.line + 1})"
    return f"{where}{problem}"


def _set_path(tree: dict, dotted: str, value: Any) -> None:
    node = tree
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {dotted!r}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def parse_override(item: str) -> tuple[str, Any]:
    """``a.b=value`` -> ("a.b", value parsed as YAML, so numbers, lists and booleans work)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like key.path=value")
    key, raw = item.split("=", 1)
    try:
        return key.strip(), yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {item!r}: the value is not valid YAML ({_yaml_problem(err)}); "
                          "quote it, e.g. --set 'key=\"text\"'") from None


# Top-level keys of the cluster recipes in conf/ (Databricks cluster spec, EMR configurations and steps): a file
# with them is handed to the cluster, not to spark-jql.
CLUSTER_RECIPE_KEYS = {"cluster_name", "spark_version", "node_type_id", "num_workers", "spark_conf", "init_scripts",
                       "Classification", "Properties", "Configurations", "ActionOnFailure", "HadoopJarStep", "Jar", "Args"}


def _read_config_file(path: Path) -> dict:
    """The YAML (or JSON) mapping in ``path``; one line naming the file and the line for anything else."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path} is not valid YAML: {_yaml_problem(err)}") from None
    except (UnicodeDecodeError, OSError) as err:
        raise ConfigError(f"cannot read config file {path}: {err}") from None
    entries = loaded if isinstance(loaded, list) else [loaded]
    if all(isinstance(e, dict) for e in entries) and any(CLUSTER_RECIPE_KEYS & set(e) for e in entries):
        raise ConfigError(f"{path} is a cluster recipe (keys {sorted(CLUSTER_RECIPE_KEYS & set().union(*entries))[:4]}): "
                          "it is handed to Databricks or EMR (to create the cluster or add a step), not to spark-jql; pass a spark-jql "
                          "config such as conf/gpu-cluster.yaml, conf/emr.yaml or conf/databricks.yaml")
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return substitute_env(loaded, f"config file {path}")


def load_config(path: str | Path | Sequence[str | Path] | None = None, overrides: list[str] | None = None,
                model: type[BaseModel] = JobConfig):
    """Load YAML files (none, one or several), apply ``key=value`` overrides, validate.

    Several files merge in order: a later file wins, mappings merge key by key (lists and values are
    replaced whole); the ``--set`` overrides apply last. ``${VAR}`` and ``${VAR:-default}`` in a file's
    values are replaced from the environment (:func:`substitute_env`).
    """
    files = [] if path is None else [path] if isinstance(path, (str, Path)) else list(path)
    tree: dict = {}
    for file in files:
        tree = merge_trees(tree, _read_config_file(Path(file)))
    source = " + ".join(str(f) for f in files) or "defaults"
    overridden = []
    for item in overrides or []:
        key, value = parse_override(item)
        _set_path(tree, key, value)
        overridden.append(key)
    try:
        return model.model_validate(tree)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source, tuple(overridden), model)) from None


def merge_trees(base: dict, update: dict) -> dict:
    """``update`` over ``base``: mappings merged key by key (recursively), anything else replaced."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_trees(merged[key], value)
        else:
            merged[key] = value
    return merged


ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def substitute_env(tree: Any, where: str, environ: Mapping[str, str] | None = None, key: str = "") -> Any:
    """Every string value of ``tree`` with ``${VAR}`` / ``${VAR:-default}`` replaced from the environment.

    As in the shell, ``${VAR:-default}`` takes the default when VAR is unset or empty, and ``${VAR}`` of a set
    but empty variable is empty. ``$${`` is a literal ``${``. An unset variable without a default is a
    ConfigError naming the file (``where``), the key and the variable.
    """
    environ = os.environ if environ is None else environ
    if isinstance(tree, dict):
        return {k: substitute_env(v, where, environ, f"{key}.{k}" if key else str(k)) for k, v in tree.items()}
    if isinstance(tree, list):
        return [substitute_env(v, where, environ, f"{key}.{i}") for i, v in enumerate(tree)]
    if not isinstance(tree, str) or "${" not in tree:
        return tree

    def replace(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        value = environ.get(name)
        if value:
            return value
        if default is not None:
            return default
        if value is not None:  # set but empty, no default: empty, as the shell does
            return value
        raise ConfigError(f"{where}: {key}: environment variable {name} is not set (${{{name}}}); export it "
                          f"or give a default, ${{{name}:-value}}")

    parts = tree.split("$${")
    return "${".join(ENV_REFERENCE.sub(replace, part) for part in parts)


# --- JQL steps 2 and 3: LLM judges and head training ---------------------------------------------


# The co-authors' published trainer for the JQL heads; ``preset: jql`` starts from it.
JQL_TRAIN_RECIPE = {
    "optimizer": "adamw",
    "weight_decay": 0.01,
    "lr_schedule": "cosine",
    "learning_rate": 5e-4,
    "batch_size": 1024,
    "epochs": 20,
    "early_stopping_patience": 5,
    "precision": "bf16",
}


class TrainConfig(_Strict):
    """How regression heads are trained on frozen embeddings (``spark-jql train``).

    ``preset: default`` is spark_jql's small-data defaults; ``preset: jql`` is the co-authors'
    recipe (MSE, AdamW weight decay 0.01, cosine schedule, lr 5e-4, batch 1024, 20 epochs,
    early stopping on validation Spearman with patience 5, bf16). Keys given next to a preset win.
    """

    preset: Literal["default", "jql"] = Field("default", description="Starting point: spark_jql's defaults or 'jql' (the co-authors' recipe).")
    hidden_dim: int = Field(1000, ge=1, description="Hidden units of Linear(d, h) -> ReLU -> Linear(h, 1) (JQL: 1000).")
    optimizer: Literal["adam", "adamw"] = Field("adam", description="Adam (L2 weight decay) or AdamW (decoupled weight decay).")
    learning_rate: float = Field(1e-3, gt=0, description="Peak learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="Weight decay of the optimizer.")
    lr_schedule: Literal["constant", "cosine"] = Field("constant", description="'cosine': decays to 0 over epochs x steps per epoch.")
    precision: Literal["float32", "bf16"] = Field("float32", description="'bf16': bfloat16 autocast for the forward pass (weights stay float32).")
    epochs: int = Field(20, ge=1, description="Upper bound on passes over the training split.")
    batch_size: int = Field(256, ge=1, description="Documents per optimiser step.")
    balanced: bool = Field(
        False, description="Draw each epoch so every label value (rounded) is equally likely, with replacement."
    )
    val_fraction: float = Field(0.1, ge=0, lt=1, description="Share of documents held out for validation (0: none; ignored with a validation file).")
    early_stopping_patience: int | None = Field(
        3, ge=1, description="Stop after this many epochs without a better validation Spearman; None: never."
    )
    min_delta: float = Field(0.0, ge=0, description="A validation Spearman counts as better only if it beats the best by more than this.")
    shuffle_buffer: int = Field(
        65536, ge=1, description="Rows shuffled together when streaming from parquet (memory: rows x dim x 4 bytes)."
    )
    read_batch_rows: int = Field(8192, ge=1, description="Rows decoded at a time when streaming from parquet.")
    seed: int = Field(0, description="Seeds the split, the initial weights and the batch order.")
    device: str = Field("cpu", description="'cpu', 'cuda' or 'cuda:N' (training is small; cpu is the default).")

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset") == "jql":
            return {**JQL_TRAIN_RECIPE, **data}
        return data

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if value in ("cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit()):
            return value
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {value!r}")


class JudgeEndpoint(_Strict):
    """One LLM judge behind OpenAI-compatible chat-completions endpoints (e.g. vLLM replicas of one model)."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_]+$", description="Used in the output column names.")
    base_url: str | None = runtime(None, description="Server root up to /v1, e.g. http://host:8000/v1 (or base_urls).")
    base_urls: list[str] = runtime(
        default_factory=list, description="Several replicas of the same model: requests are balanced across them on the "
        "client (fewest in flight first), each endpoint's failures counted on its own.",
    )
    model: str = Field(min_length=1, description="Model name the server expects.")
    api_key_env: str | None = runtime(None, description="Environment variable holding the API key (never the key itself).")
    concurrency: int | None = runtime(None, ge=1, description="Requests in flight to this judge per task; None: the shared 'concurrency'.")
    prompt_file: str | None = Field(None, description="This judge's prompt template; None: the shared prompt_file.")
    prompt_files: dict[str, str] = Field(
        default_factory=dict, description="Language -> prompt template for this judge (overrides every shared prompt)."
    )
    system_prompt: str | None = Field(None, description="A system message sent before the prompt; None: none.")
    temperature: float | None = Field(None, ge=0, description="This judge's sampling temperature; None: the shared one.")
    max_tokens: int | None = Field(None, ge=1, description="This judge's answer length limit; None: the shared one.")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return None if value is None else _judge_url(value)

    @field_validator("base_urls")
    @classmethod
    def _http_urls(cls, values: list[str]) -> list[str]:
        if len(set(values)) != len(values):
            raise ValueError("base_urls lists an endpoint twice")
        return [_judge_url(v) for v in values]

    @model_validator(mode="after")
    def _some_endpoint(self) -> "JudgeEndpoint":
        if (self.base_url is None) == (not self.base_urls):
            raise ValueError(f"judge {self.name!r}: give base_url (one endpoint) or base_urls (replicas), not both and not neither")
        return self

    @property
    def endpoints(self) -> list[str]:
        return [self.base_url] if self.base_url else list(self.base_urls)

    @property
    def where(self) -> str:
        """The endpoint(s) for messages: one URL, or the first and how many more."""
        urls = self.endpoints
        return urls[0] if len(urls) == 1 else f"{urls[0]} (+{len(urls) - 1} more)"


def _judge_url(value: str) -> str:
    if not value.startswith(("http://", "https://")) or len(value) < 10:
        raise ValueError(f"base_url must be an http:// or https:// URL up to /v1, got {value!r}")
    return value


class JudgeConfig(_Strict):
    """LLM annotation (``spark-jql judge``): endpoints, prompts, parsing, and how hard to push the servers.

    ``preset`` names a prompt + parser + truncation rule with a stated source (spark_jql/judge_presets.py);
    the settings left at None take the preset's value, any given one replaces it.
    """

    judges: list[JudgeEndpoint] = Field(min_length=1)
    preset: Literal["fineweb-edu", "ml-filter"] = Field(
        "fineweb-edu", description="fineweb-edu: FineWeb-Edu's published prompt verbatim, first match, integers 0-5; "
        "ml-filter: the JQL co-authors' pipeline (per-language prompts, last match, decimals kept, token truncation).",
    )
    prompt_file: str | None = Field(None, description="Prompt template with a {text} placeholder; None: the preset's prompt.")
    prompt_files: dict[str, str] = Field(
        default_factory=dict, description="Language -> prompt template for every judge (overrides prompt_file for that language)."
    )
    language_column: str | None = Field(
        None, description="Column whose value picks a prompt from prompt_files; None: the job's first columns.language."
    )
    score_pattern: str | None = Field(
        None, description="Regex with one group, the score; None: the preset's ('Educational score: N').",
    )
    score_match: Literal["first", "last"] | None = Field(None, description="Which match counts; None: the preset's.")
    decimal_scores: Literal["reject", "round", "keep"] | None = Field(
        None, description="A score like 3.5: 'reject' (no score, error 'unparsable answer: decimal ...'), 'round' (half "
        "up) or 'keep' (the score column is then a double); None: the preset's.",
    )
    truncation: Literal["chars", "tokens"] | None = Field(
        None, description="'chars': cut documents to max_chars; 'tokens': cut them so the chat-formatted prompt has at "
        "most max_prompt_tokens tokens of `tokenizer`; None: the preset's.",
    )
    max_chars: int = Field(20000, ge=1, description="Documents are cut to this many characters before prompting (truncation: chars).")
    tokenizer: str | None = Field(None, description="The judge model's tokenizer (Hub id or path), for truncation: tokens.")
    max_prompt_tokens: int = Field(7692, ge=16, description="Prompt budget in tokens (truncation: tokens); 7692 as ml_filter.")
    temperature: float = Field(0.0, ge=0)
    max_tokens: int = Field(512, ge=1, description="Answer length limit sent to the server.")
    concurrency: int = runtime(8, ge=1, description="Requests in flight per judge per Spark task (each judge has its own pool).")
    max_retries: int = runtime(4, ge=0, description="Retries after a failed request (timeouts, 429, 5xx).")
    backoff_seconds: float = runtime(1.0, ge=0, description="First retry delay; doubles each retry, with jitter.")
    max_retry_after_seconds: float = runtime(
        120.0, ge=0, description="A server's Retry-After (429/503) is honoured up to this many seconds."
    )
    timeout_seconds: float = runtime(
        120.0, gt=0, description="Per-request timeout; the connection is then closed, so the server can cancel the request."
    )
    preflight: bool = runtime(True, description="Send one request per judge from the driver before the job; stop if it fails.")
    max_failure_rate: float = runtime(
        0.5, gt=0, le=1, description="Stop the job when more than this share of a judge's requests fail (after min_requests)."
    )
    min_requests: int = runtime(20, ge=1, description="Requests a judge must have made before max_failure_rate applies.")
    rows_per_unit: int = runtime(
        10000, ge=1, description="Rows per committed unit of work (judge stage): a rerun skips finished units."
    )

    @field_validator("judges")
    @classmethod
    def _unique_judges(cls, judges: list[JudgeEndpoint]) -> list[JudgeEndpoint]:
        return require_unique_names(judges, "judge")

    @field_validator("score_pattern")
    @classmethod
    def _one_group(cls, value: str | None) -> str | None:
        import re

        if value is None:
            return None
        try:
            groups = re.compile(value).groups
        except re.error as err:
            raise ValueError(f"score_pattern is not a valid regular expression: {err}") from None
        if groups != 1:
            raise ValueError(f"score_pattern must have exactly one group (the score), has {groups}")
        return value

    @model_validator(mode="after")
    def _tokenizer_for_tokens(self) -> "JudgeConfig":
        if self.truncation_rule == "tokens" and not self.tokenizer:
            raise ValueError(f"truncation by tokens (preset {self.preset!r}) needs `tokenizer`: the judge model's "
                             "tokenizer (Hub id or local path); or set truncation: chars")
        return self

    @property
    def truncation_rule(self) -> str:
        return self.truncation or PRESETS[self.preset].truncation

    def parser(self):
        """The preset's parser with any explicitly given setting in its place."""
        import dataclasses

        base = PRESETS[self.preset].parser
        given = {"pattern": self.score_pattern, "match": self.score_match, "decimals": self.decimal_scores}
        return dataclasses.replace(base, **{k: v for k, v in given.items() if v is not None})

    def concurrency_of(self, judge: JudgeEndpoint) -> int:
        return judge.concurrency or self.concurrency

    def temperature_of(self, judge: JudgeEndpoint) -> float:
        return self.temperature if judge.temperature is None else judge.temperature

    def max_tokens_of(self, judge: JudgeEndpoint) -> int:
        return judge.max_tokens or self.max_tokens


class LangIdConfig(_Strict):
    """Language identification (``spark-jql langid``): adds a language column to corpora without one.

    Uses lingua (``lingua-language-detector``), whose models ship inside its wheel: nothing is
    downloaded at run time. Codes are ISO 639-3; ``code_style: fineweb2`` maps macrolanguages to
    the individual codes FineWeb2 uses (zho -> cmn, ara -> arb, fas -> pes, msa -> zsm, ...).
    """

    languages: list[str] | None = Field(
        None, description="ISO 639-3 codes to choose among (faster, fewer confusions); None: all 75 lingua languages."
    )
    low_accuracy: bool = Field(True, description="Lingua's low-accuracy mode: trigrams only, ~10x less memory; fine for documents.")
    max_chars: int = Field(500, ge=1, description="Characters of each document looked at (the start of the text); 500: 99% agreement, ~220 docs/s per core.")
    min_confidence: float = Field(0.0, ge=0, le=1, description="Below this confidence the language is null.")
    code_style: Literal["fineweb2", "iso639_3"] = Field("fineweb2", description="Language codes as FineWeb2 writes them, or lingua's ISO 639-3.")
    language_column: str = "language"
    script_column: str | None = Field("language_script", description="ISO 15924 script of the text; None: not written.")
    score_column: str | None = Field("language_score", description="Detector confidence in [0, 1]; None: not written.")
    if_exists: Literal["error", "replace", "fill"] = Field(
        "error", description="When the language column exists: fail, replace it, or fill only its null values."
    )

    @field_validator("languages")
    @classmethod
    def _known_codes(cls, values: list[str] | None) -> list[str] | None:
        if values is None:
            return None
        if not values:
            raise ValueError("languages must name at least one code (or be null for all)")
        return [v.strip().lower() for v in values]
