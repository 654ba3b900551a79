"""Configuration: defaults, validation errors that name the key, overrides."""

from __future__ import annotations

import pytest

from spark_jql.config import (
    DEFAULT_EMBEDDER,
    ConfigError,
    EmbedderConfig,
    HeadConfig,
    JobConfig,
    ScorerConfig,
    default_heads,
    load_config,
    parse_override,
)


def _error(overrides: list[str], path=None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    return str(info.value)


# -- defaults ---------------------------------------------------------------
def test_default_heads_match_jql_reference():
    # The JQL reference pipeline loads exactly these three heads from this repository.
    expected = [
        ("Edu-JQL-Gemma-SF", "checkpoints/edu-gemma-snowflake-balanced.ckpt"),
        ("Edu-JQL-Mistral-SF", "checkpoints/edu-mistral-snowflake-balanced.ckpt"),
        ("Edu-JQL-Llama-SF", "checkpoints/edu-llama-snowflake-balanced.ckpt"),
    ]
    heads = default_heads()
    assert [(h.name, h.filename) for h in heads] == expected
    assert {h.repo_id for h in heads} == {"Jackal-AI/JQL-Edu-Heads"}
    assert all(h.path is None and h.revision is None for h in heads)


def test_defaults_follow_jql():
    cfg = load_config()
    assert isinstance(cfg, JobConfig)
    assert cfg.scorer.embedder.model == DEFAULT_EMBEDDER == "Snowflake/snowflake-arctic-embed-m-v2.0"
    assert cfg.scorer.embedder.max_length == "auto"  # the model's own: 8192 for this one, as JQL truncates
    from spark_jql.scoring.models import resolve

    assert resolve(cfg.scorer.embedder).max_length == 8192
    assert cfg.scorer.embedder.trust_remote_code is False
    assert cfg.scorer.aggregate == "mean"
    assert [h.name for h in cfg.scorer.heads] == [h.name for h in default_heads()]
    assert cfg.filter.quantile in cfg.thresholds.quantiles


def test_config_is_frozen():
    cfg = ScorerConfig()
    with pytest.raises(Exception):
        cfg.aggregate = "max"


# -- errors name the key ----------------------------------------------------
def test_unknown_key_is_named():
    msg = _error(["scorer.embedder.max_lenght=512"])
    assert "scorer.embedder.max_lenght" in msg
    assert "unknown key" in msg


def test_unknown_key_in_yaml_file_is_named(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("scorer:\n  token_budgett: 4096\nthresholds:\n  quantiles: [0.6]\nfilter:\n  quantile: 0.6\n")
    msg = _error([], path)
    assert "scorer.token_budgett" in msg and "unknown key" in msg
    assert str(path) in msg


@pytest.mark.parametrize(
    "override, key",
    [
        ("scorer.max_batch_docs=many", "scorer.max_batch_docs"),
        ("scorer.embedder.max_length=[1, 2]", "scorer.embedder.max_length"),
        ("scorer.token_budget=lots", "scorer.token_budget"),
        ("scorer.aggregate=average", "scorer.aggregate"),
        ("scorer.embedder.dtype=fp8", "scorer.embedder.dtype"),
        ("scorer.embedder.device=gpu", "scorer.embedder.device"),
        ("spark.arrow_batch_size=0", "spark.arrow_batch_size"),
    ],
)
def test_wrong_type_or_value_names_key(override, key):
    msg = _error([override])
    assert key in msg
    assert "unknown key" not in msg


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:12"])
def test_valid_devices(device):
    assert EmbedderConfig(device=device).device == device


@pytest.mark.parametrize("bad", [[0.5, 1.0], [0.0, 0.5], [-0.1], [1.5]])
def test_quantiles_outside_open_unit_interval_rejected(bad):
    msg = _error([f"thresholds.quantiles={bad}", "filter.quantile=0.5"])
    assert "thresholds.quantiles" in msg
    assert "strictly between 0 and 1" in msg


def test_quantiles_sorted_and_deduplicated():
    cfg = load_config(None, ["thresholds.quantiles=[0.9, 0.6, 0.9, 0.75]", "filter.quantile=0.75"])
    assert cfg.thresholds.quantiles == [0.6, 0.75, 0.9]


def test_filter_quantile_must_be_computed():
    msg = _error(["thresholds.quantiles=[0.6, 0.7]", "filter.quantile=0.65"])
    assert "filter.quantile" in msg and "0.65" in msg
    cfg = load_config(None, ["thresholds.quantiles=[0.6, 0.7]", "filter.quantile=0.7"])
    assert cfg.filter.quantile == 0.7


def test_token_budget_smaller_than_max_length_rejected():
    msg = _error(["scorer.embedder.max_length=1024", "scorer.token_budget=1000"])
    assert "token_budget (1000)" in msg and "max_length (1024)" in msg
    # Equal is the smallest budget that still fits the longest document.
    cfg = load_config(None, ["scorer.embedder.max_length=1024", "scorer.token_budget=1024"])
    assert cfg.scorer.token_budget == 1024
    assert load_config(None, ["scorer.token_budget=auto"]).scorer.token_budget == "auto"


def test_duplicate_head_names_rejected():
    heads = [{"name": "a", "path": "/x/a.ckpt"}, {"name": "b", "path": "/x/b.ckpt"}, {"name": "a", "path": "/x/c.ckpt"}]
    with pytest.raises(ConfigError) as info:
        load_config(None, [f"scorer.heads={heads}"])
    assert "scorer.heads" in str(info.value) and "['a']" in str(info.value)


@pytest.mark.parametrize(
    "head, words",
    [
        ({"name": "both", "path": "/x/h.ckpt", "repo_id": "org/repo", "filename": "h.ckpt"}, ["'both'", "exactly one"]),
        ({"name": "neither"}, ["'neither'", "exactly one"]),
        ({"name": "nofile", "repo_id": "org/repo"}, ["'nofile'", "needs 'filename'"]),
    ],
)
def test_head_source_must_be_unique(head, words):
    with pytest.raises(ValueError) as info:
        HeadConfig(**head)
    for word in words:
        assert word in str(info.value)
    # The same mistake inside a job config is a ConfigError naming the heads list.
    msg = _error([f"scorer.heads=[{head}]"])
    assert "scorer.heads.0" in msg


def test_head_name_must_be_a_plain_identifier():
    with pytest.raises(ValueError):
        HeadConfig(name="bad name/with slash", path="/x.ckpt")
    with pytest.raises(ValueError):
        HeadConfig(name="", path="/x.ckpt")


def test_heads_cannot_be_empty():
    assert "scorer.heads" in _error(["scorer.heads=[]"])


# -- overrides --------------------------------------------------------------
@pytest.mark.parametrize(
    "item, expected",
    [
        ("scorer.token_budget=20000", ("scorer.token_budget", 20000)),
        ("thresholds.quantiles=[0.5, 0.9]", ("thresholds.quantiles", [0.5, 0.9])),
        ("scorer.oom_retry=false", ("scorer.oom_retry", False)),
        ("io.output=s3://bucket/out=1", ("io.output", "s3://bucket/out=1")),  # split at the first '='
        (" scorer.aggregate =median", ("scorer.aggregate", "median")),
        ("io.output=", ("io.output", "")),
    ],
)
def test_parse_override(item, expected):
    key, value = parse_override(item)
    assert (key, value) == expected
    assert type(value) is type(expected[1])


def test_override_without_equals_rejected():
    with pytest.raises(ConfigError, match="key.path=value"):
        parse_override("scorer.token_budget")


def test_overrides_apply_and_validate():
    cfg = load_config(
        None,
        [
            "scorer.token_budget=20000",
            "scorer.embedder.max_length=512",
            "columns.language=lang",
            "io.input=data/*.parquet",
            "thresholds.quantiles=[0.5, 0.9]",
            "filter.quantile=0.9",
            "spark.conf={spark.sql.adaptive.enabled: true, spark.executor.cores: 4}",
        ],
    )
    assert cfg.scorer.token_budget == 20000 and isinstance(cfg.scorer.token_budget, int)
    assert cfg.scorer.embedder.max_length == 512
    assert cfg.scorer.embedder.model == DEFAULT_EMBEDDER  # siblings keep their defaults
    assert cfg.columns.language == ["lang"]
    assert cfg.io.input == ["data/*.parquet"]
    assert cfg.thresholds.quantiles == [0.5, 0.9]
    assert cfg.spark.conf == {"spark.sql.adaptive.enabled": "true", "spark.executor.cores": "4"}


def test_override_beats_file(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("scorer:\n  token_budget: 9000\n  embedder:\n    max_length: 512\n")
    assert load_config(path).scorer.token_budget == 9000
    cfg = load_config(path, ["scorer.token_budget=20000"])
    assert cfg.scorer.token_budget == 20000
    assert cfg.scorer.embedder.max_length == 512


def test_override_into_a_value_rejected():
    with pytest.raises(ConfigError, match="not a section"):
        load_config(None, ["scorer.aggregate=mean", "scorer.aggregate.kind=max"])


def test_bad_config_files(tmp_path):
    missing = tmp_path / "nope.yaml"
    assert str(missing) in _error([], missing)
    not_mapping = tmp_path / "list.yaml"
    not_mapping.write_text("- a\n- b\n")
    assert "mapping" in _error([], not_mapping)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_config(empty) == JobConfig()


def test_scorer_section_alone():
    cfg = load_config(None, ["embedder.model=/models/x", "token_budget=4096", "embedder.max_length=4096"], model=ScorerConfig)
    assert isinstance(cfg, ScorerConfig)
    assert cfg.embedder.model == "/models/x" and cfg.token_budget == 4096


# -- several files, environment substitution, did you mean --------------------
def test_config_files_merge_in_order_then_set(tmp_path):
    a = tmp_path / "a.yaml"
    a.write_text("io:\n  input: [data/*.parquet]\n  output: out_a\nscorer:\n  embedder:\n    model: /models/enc\n"
                 "    max_length: 512\nspark:\n  conf:\n    spark.executor.cores: 4\n")
    b = tmp_path / "b.yaml"
    b.write_text("io:\n  output: out_b\nscorer:\n  embedder:\n    max_length: 1024\nspark:\n  conf:\n    spark.task.cpus: 2\n")
    cfg = load_config([a, b])
    assert cfg.io.input == ["data/*.parquet"]  # only in a: kept
    assert cfg.io.output == "out_b"  # in both: the later file wins
    assert cfg.scorer.embedder.model == "/models/enc" and cfg.scorer.embedder.max_length == 1024  # merged key by key
    assert cfg.spark.conf == {"spark.executor.cores": "4", "spark.task.cpus": "2"}
    assert load_config([b, a]).io.output == "out_a"
    assert load_config([a, b], ["io.output=out_set"]).io.output == "out_set"  # --set last


def test_merge_replaces_lists_whole():
    from spark_jql.config import merge_trees

    assert merge_trees({"a": {"x": [1, 2], "y": 1}}, {"a": {"x": [3]}}) == {"a": {"x": [3], "y": 1}}
    assert merge_trees({"a": 1}, {"a": {"b": 2}}) == {"a": {"b": 2}}


def test_error_names_every_merged_file(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("filter:\n  quantile: 0.6\n")
    b.write_text("filter:\n  quantile: 1.5\n")
    msg = _error([], [a, b])
    assert f"{a} + {b}" in msg and "filter.quantile" in msg


def test_environment_substitution_in_yaml_values(tmp_path, monkeypatch):
    path = tmp_path / "job.yaml"
    path.write_text("io:\n  output: ${OUT}/jql\n  input: ['${DATA:-data}/*.parquet']\n"
                    "scorer:\n  max_batch_docs: ${BATCH:-64}\n  embedder:\n    model: $${NOT_A_VAR}\n")
    monkeypatch.setenv("OUT", "/tmp/run1")
    monkeypatch.delenv("DATA", raising=False)
    monkeypatch.delenv("BATCH", raising=False)
    cfg = load_config(path)
    assert cfg.io.output == "/tmp/run1/jql"
    assert cfg.io.input == ["data/*.parquet"]  # the default
    assert cfg.scorer.max_batch_docs == 64  # a number once substituted
    assert cfg.scorer.embedder.model == "${NOT_A_VAR}"  # $${ is a literal ${
    monkeypatch.setenv("DATA", "/lake")
    monkeypatch.setenv("BATCH", "128")
    cfg = load_config(path)
    assert cfg.io.input == ["/lake/*.parquet"] and cfg.scorer.max_batch_docs == 128


def test_unset_variable_without_default_is_one_line(tmp_path, monkeypatch):
    path = tmp_path / "job.yaml"
    path.write_text("io:\n  output: ${JQL_SURELY_UNSET_VAR}/out\n")
    monkeypatch.delenv("JQL_SURELY_UNSET_VAR", raising=False)
    msg = _error([], path)
    assert str(path) in msg and "io.output" in msg and "JQL_SURELY_UNSET_VAR is not set" in msg and "\n" not in msg


@pytest.mark.parametrize("override, hint", [
    ("filter.quantle=0.7", "filter.quantle: unknown key (did you mean 'quantile'?)"),
    ("filtr.quantile=0.7", "filtr: unknown key (did you mean 'filter'?)"),
    ("scorer.embedder.max_lenght=512", "(did you mean 'max_length'?)"),
    ("scorer.heads=[{name: a, pth: /x.ckpt}]", "scorer.heads.0.pth: unknown key (did you mean 'path'?)"),
])
def test_unknown_key_suggests_the_closest(override, hint):
    assert hint in _error([override])


def test_unknown_key_without_a_close_one_suggests_nothing():
    assert "did you mean" not in _error(["filter.zzzzzz=1"])
