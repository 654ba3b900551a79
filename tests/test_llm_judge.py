"""LLM annotation against a loopback chat-completions server: parsing, retries, failures, concurrency, Spark."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from spark_jql.config import JudgeConfig
from spark_jql.devtools.fake_judge import FakeJudgeServer, document_of
from spark_jql.errors import InputError
from spark_jql.method.judge import (
    PREFLIGHT_TEXT,
    JudgeFailureError,
    JudgePanel,
    check_judges,
    default_prompt,
    judge_texts,
    load_prompt,
    parse_score,
    preflight,
    prompt_set,
    retry_after_seconds,
)


def config(url: str, **kw) -> JudgeConfig:
    base = {"judges": [{"name": "fake", "base_url": url, "model": "fake-judge-7b"}],
            "max_retries": 2, "backoff_seconds": 0.01, "timeout_seconds": 5, "concurrency": 4}
    return JudgeConfig.model_validate({**base, **kw})


@pytest.mark.parametrize("answer, expected, why", [
    ("reasoning...\nEducational score: 3", 3, None),
    ("Score: 2 ... final answer. Educational score: 4", 4, None),
    ("**Educational score:** 5", 5, None),
    ("educational score: 1", 1, None),
    ("Educational score: 2\nOn reflection... Educational score: 5", 2, None),  # the first, as FineWeb-Edu reads it
    ("4", None, "no match"),  # the prompt asks for the line; a bare number is not read as a score
    ("Educational score: 7", None, "score 7 outside 0-5"),
    ("Educational score: 2.5", None, "decimal score 2.5"),
    ("Educational score: 2,5", None, "decimal score 2.5"),
    ("no number here", None, "no match"),
    ("", None, "empty answer"),
    (None, None, "empty answer"),
])
def test_parse_score(answer, expected, why):
    score, error = parse_score(answer)
    assert score == expected
    assert (error is None) if why is None else (error.startswith("unparsable answer:") and why in error)


def test_decimal_scores_can_be_rounded_and_patterns_replaced():
    assert parse_score("Educational score: 3.5", decimals="round") == (4, None)
    assert parse_score("Educational score: 2.49", decimals="round") == (2, None)
    assert parse_score("Educational score: 5.5", decimals="round")[0] is None  # 6 is out of range
    assert parse_score("Rating: 4/5", pattern=r"Rating:\s*(\d+)") == (4, None)
    with pytest.raises(Exception, match="exactly one group"):
        JudgeConfig.model_validate({"judges": [{"name": "a", "base_url": "http://h:1/v1", "model": "m"}], "score_pattern": "x"})


def test_default_prompt_and_custom_prompt(tmp_path):
    text = default_prompt()
    assert "{text}" in text and "additive 5-point" in text and 'the format: "Educational score: <total points>"' in text
    assert load_prompt(None) == text
    custom = tmp_path / "p.txt"
    custom.write_text("Rate {text} 0-5. JSON like {\"a\": 1} is fine.")
    assert load_prompt(str(custom)).startswith("Rate {text}")
    (tmp_path / "bad.txt").write_text("no placeholder")
    with pytest.raises(InputError, match="placeholder"):
        load_prompt(str(tmp_path / "bad.txt"))
    with pytest.raises(InputError, match="not found"):
        load_prompt(str(tmp_path / "missing.txt"))
    # per judge and per language, checked on the driver with the setting named
    (tmp_path / "de.txt").write_text("Bewerte {text}")
    cfg = JudgeConfig.model_validate({
        "judges": [{"name": "a", "base_url": "http://h:1/v1", "model": "m"},
                   {"name": "b", "base_url": "http://h:1/v1", "model": "m", "prompt_file": str(custom),
                    "prompt_files": {"fra": str(tmp_path / "de.txt")}}],
        "prompt_files": {"deu": str(tmp_path / "de.txt")}})
    a, b = prompt_set(cfg, cfg.judges[0]), prompt_set(cfg, cfg.judges[1])
    assert a.for_language("deu").template == "Bewerte {text}" and a.for_language("eng").name == "fineweb-edu"
    assert b.for_language("deu").name == "p.txt" and b.for_language("fra").name == "de.txt"
    assert a.default.label.startswith("fineweb-edu sha256:") and len(a.default.label.split(":")[1]) == 12
    bad = cfg.model_copy(update={"prompt_files": {"deu": str(tmp_path / "missing.txt")}})
    with pytest.raises(InputError, match=r"prompt_files.deu: prompt file not found"):
        check_judges(bad)


def test_judge_texts_scores_retries_and_failures():
    texts = ["a page at level 3", "FLAKY page at level 4", "BROKEN page", "BAD page", "GIBBERISH page", "", None,
             "page at level 0"]
    with FakeJudgeServer() as server:
        results = judge_texts(texts, config(server.url).judges[0], config(server.url))
    by_text = dict(zip(map(str, texts), results))
    assert [r.score for r in results] == [3, 4, None, None, None, None, None, 0]
    assert results[0].prompt.startswith("fineweb-edu sha256:")
    assert by_text["a page at level 3"].raw.endswith("Educational score: 3") and by_text["a page at level 3"].error is None
    assert by_text["FLAKY page at level 4"].attempts == 2 and by_text["FLAKY page at level 4"].error is None
    assert by_text["BROKEN page"].attempts == 3 and by_text["BROKEN page"].error.startswith("http 503")
    assert by_text["BAD page"].attempts == 1 and by_text["BAD page"].error.startswith("http 400")  # not retried
    assert by_text["GIBBERISH page"].error.startswith("unparsable answer") and by_text["GIBBERISH page"].raw == "I cannot decide."
    assert by_text[""].error == "no_text" and by_text["None"].error == "no_text" and by_text[""].attempts == 0
    assert server.requests["BROKEN page"] == 3 and "" not in server.requests
    body = server.bodies[0]
    assert body["model"] == "fake-judge-7b" and body["temperature"] == 0.0 and body["max_tokens"] == 512
    assert "additive 5-point" in body["messages"][0]["content"]


def test_concurrency_is_bounded_and_used():
    texts = [f"doc {i} at level {i % 6}" for i in range(24)]
    with FakeJudgeServer(latency=0.05) as server:
        cfg = config(server.url, concurrency=3)
        results = judge_texts(texts, cfg.judges[0], cfg)
    assert [r.score for r in results] == [i % 6 for i in range(24)]
    assert 2 <= server.max_in_flight <= 3


def test_all_judges_are_in_flight_at_once_each_with_its_own_bound():
    texts = [f"doc {i} at level {i % 6}" for i in range(16)]
    with FakeJudgeServer(latency=0.1) as server:
        cfg = config(server.url, concurrency=2, judges=[
            {"name": "a", "base_url": server.url, "model": "a", "concurrency": 4},
            {"name": "b", "base_url": server.url, "model": "b"}])
        with JudgePanel(cfg) as panel:
            results = panel.judge({"a": texts, "b": texts[:8]})
    assert [r.score for r in results["a"]] == [i % 6 for i in range(16)] and len(results["b"]) == 8
    assert server.max_in_flight == 6  # 4 for a + 2 for b, together
    models = [b["model"] for b in server.bodies]
    assert models.count("a") == 16 and models.count("b") == 8


def test_retry_after_is_honoured():
    assert retry_after_seconds("3") == 3.0 and retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    assert 0 <= retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    slept = []
    with FakeJudgeServer() as server:
        cfg = config(server.url, backoff_seconds=0.0)
        from spark_jql.method.judge import ChatClient
        client = ChatClient(cfg.judges[0], cfg, sleep=lambda s: (slept.append(s), time.sleep(s)))
        result = client.judge("RATED page at level 2", prompt_set(cfg, cfg.judges[0]).default)
        assert result.score == 2 and result.attempts == 2
        gap = server.times["RATED page at level 2"]
        assert slept == [1.0] and gap[1] - gap[0] >= 1.0  # the server's Retry-After, not the 0 s backoff
        capped = ChatClient(cfg.judges[0], cfg.model_copy(update={"max_retry_after_seconds": 0.1}), sleep=slept.append)
        capped.judge("RATED again at level 1", prompt_set(cfg, cfg.judges[0]).default)
        assert slept[-1] == 0.1


def test_failure_rate_stops_a_failing_judge_fast():
    texts = [f"doc {i}" for i in range(64)]
    with FakeJudgeServer(refuse=True) as server:
        cfg = config(server.url, concurrency=4, max_retries=4, backoff_seconds=0.05, min_requests=8, max_failure_rate=0.5)
        start = time.perf_counter()
        with JudgePanel(cfg) as panel, pytest.raises(JudgeFailureError, match=r"judge 'fake' .*failed.*max_failure_rate=0.5.*http 503"):
            panel.judge({"fake": texts})
        assert time.perf_counter() - start < 5
        assert server.total < 64  # stopped asking once the breaker tripped
    port = server.httpd.server_address[1]
    with pytest.raises(JudgeFailureError, match=rf"pre-flight request to judges.0.base_url=http://127.0.0.1:{port}/v1"):
        preflight(config(f"http://127.0.0.1:{port}/v1"))


def test_timeouts_unreachable_server_and_api_key(monkeypatch):
    with FakeJudgeServer() as server:
        cfg = config(server.url, timeout_seconds=0.2, max_retries=1)
        [slow] = judge_texts(["SLOW page at level 2"], cfg.judges[0], cfg)
        assert slow.score is None and slow.attempts == 2 and "timed out" in slow.error.lower()
        monkeypatch.setenv("FAKE_JUDGE_KEY", "sk-test")
        cfg = config(server.url, judges=[{"name": "k", "base_url": server.url, "model": "m", "api_key_env": "FAKE_JUDGE_KEY"}])
        [ok] = judge_texts(["level 5"], cfg.judges[0], cfg)
        assert ok.score == 5 and server.headers[-1]["Authorization"] == "Bearer sk-test"
        port = server.httpd.server_address[1]
    cfg = config(f"http://127.0.0.1:{port}/v1", max_retries=1)  # server gone: connection refused
    [down] = judge_texts(["level 1"], cfg.judges[0], cfg)
    assert down.score is None and down.attempts == 2 and down.error
    monkeypatch.delenv("FAKE_JUDGE_KEY")
    with pytest.raises(InputError, match="FAKE_JUDGE_KEY"):
        judge_texts(["x"], cfg.judges[0].model_copy(update={"api_key_env": "FAKE_JUDGE_KEY"}), cfg)


def test_timed_out_requests_are_cancelled_not_left_running():
    """A request past timeout_seconds has its connection closed: the server aborts it instead of generating on."""
    texts = [f"STUCK page {i} at level 2" for i in range(8)]  # each would generate for 30 s
    with FakeJudgeServer() as server:
        cfg = config(server.url, timeout_seconds=0.2, max_retries=1, backoff_seconds=0.1, concurrency=2)
        results = judge_texts(texts, cfg.judges[0], cfg)
        deadline = time.monotonic() + 10
        while server.cancelled < 16 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(r.score is None and "timed out" in r.error for r in results)
        assert server.total == 16 and server.cancelled == 16  # every attempt aborted by the server, none finished
        assert server.in_flight == 0
        # abandoned requests would each run 30 s and all 16 overlap; aborted ones end soon after the 0.2-s timeout
        # (bounds loose enough for a loaded machine, where the server notices a closed connection late)
        assert max(server.cancelled_after) < 5
        assert server.max_in_flight < 8


def test_several_endpoints_are_balanced_with_failures_counted_per_endpoint():
    texts = [f"doc {i} at level {i % 6}" for i in range(40)]
    with FakeJudgeServer(latency=0.02) as a, FakeJudgeServer(latency=0.02) as b, FakeJudgeServer(refuse=True) as down:
        cfg = config(a.url, concurrency=4, max_retries=2, backoff_seconds=0.0,
                     judges=[{"name": "r", "base_urls": [a.url, b.url, down.url], "model": "m"}])
        from spark_jql.method.judge import ChatClient
        client = ChatClient(cfg.judges[0], cfg)
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda t: client.judge(t, prompt_set(cfg, cfg.judges[0]).default), texts))
        assert [r.score for r in results] == [i % 6 for i in range(40)]  # a failed attempt is retried on another replica
        assert {r.endpoint for r in results} == {a.url, b.url} and min(a.total, b.total) >= 10
        stats = client.endpoints.summary()
        assert stats[down.url]["failures"] == stats[down.url]["attempts"] == down.total >= 1
        assert down.total <= 6  # passed over after 3 failures in a row (a few more while in flight)
        assert stats[a.url]["failures"] == stats[b.url]["failures"] == 0
        with pytest.raises(JudgeFailureError, match=rf"judges.0.base_urls\[2\]={down.url}"):
            preflight(cfg)
    with pytest.raises(Exception, match="base_url .*or base_urls"):
        JudgeConfig.model_validate({"judges": [{"name": "x", "model": "m"}]})


def test_generation_settings_and_system_prompt_per_judge():
    with FakeJudgeServer() as server:
        cfg = config(server.url, temperature=0.0, max_tokens=512, judges=[
            {"name": "a", "base_url": server.url, "model": "a", "temperature": 0.7, "max_tokens": 64,
             "system_prompt": "You are a strict teacher."},
            {"name": "b", "base_url": server.url, "model": "b"}])
        with JudgePanel(cfg) as panel:
            results = panel.judge({"a": ["page at level 4"], "b": ["page at level 4"]})
    assert results["a"][0].score == results["b"][0].score == 4
    bodies = {b["model"]: b for b in server.bodies}
    assert bodies["a"]["temperature"] == 0.7 and bodies["a"]["max_tokens"] == 64
    assert bodies["a"]["messages"][0] == {"role": "system", "content": "You are a strict teacher."}
    assert bodies["b"]["temperature"] == 0.0 and bodies["b"]["max_tokens"] == 512 and len(bodies["b"]["messages"]) == 1


def test_judge_config_validation():
    with pytest.raises(Exception, match="unique"):
        JudgeConfig.model_validate({"judges": [{"name": "a", "base_url": "http://h:1/v1", "model": "m"}] * 2})
    with pytest.raises(Exception):
        JudgeConfig.model_validate({"judges": [{"name": "a b", "base_url": "http://h:1/v1", "model": "m"}]})
    with pytest.raises(Exception, match="base_url must be an http"):
        JudgeConfig.model_validate({"judges": [{"name": "a", "base_url": "localhost:8000", "model": "m"}]})


@pytest.mark.spark
def test_spark_judge_stage_units_resume_retry_failed_and_stops(spark, tmp_path, capsys):
    """The CLI stage: units committed one by one, a rerun resumes, a judged output fed back re-asks only failures."""
    from spark_jql.cli import main

    rows = [{"id": str(i), "text": f"document {i} at level {i % 6}"} for i in range(30)]
    rows += [{"id": "broken", "text": "BROKEN doc"}, {"id": "flaky", "text": "FLAKY doc at level 2"},
             {"id": "empty", "text": ""}, {"id": "null", "text": None}]
    data = tmp_path / "docs.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "out" / "judged"
    with FakeJudgeServer(latency=0.01) as server:
        cfg = config(server.url, concurrency=2, max_retries=0, rows_per_unit=20,
                     judges=[{"name": "alpha", "base_url": server.url, "model": "a"},
                             {"name": "beta", "base_url": server.url, "model": "b"}])
        judge_yaml = tmp_path / "judges.yaml"
        judge_yaml.write_text(yaml.safe_dump(cfg.model_dump()))
        job = ["--set", f"io.input=[{data}]", "--set", f"io.output={tmp_path / 'out'}", "--set", "spark.arrow_batch_size=8",
               "judge", "--judge-config", str(judge_yaml), "--partitions", "2"]
        assert main(job) == 0
        assert server.max_in_flight <= 2 * 2 * 2  # concurrency x judges x running tasks (local[2])
        first = dict(server.requests)
        units = sorted(p.name for p in (out / "_jql_units").glob("unit-*.json"))
        assert len(units) == 2  # 34 rows / 20 per unit
        # an interrupted run: the last unit never committed; the rerun asks for its rows only
        (out / "_jql_units" / units[-1]).unlink()
        unit_rows = {r["id"] for r in spark.read.parquet(str(out / "jql_unit=00001")).collect()}
        assert main(job) == 0
        asked_again = {d for d, n in server.requests.items() if n > first.get(d, 0)} - {PREFLIGHT_TEXT}
        assert asked_again == {r["text"] for r in rows if r["id"] in unit_rows and r["text"]} and asked_again
        written = spark.read.parquet(str(out))
        assert written.count() == len(rows) and written.select("id").distinct().count() == len(rows)
        out_rows = {r["id"]: r for r in written.collect()}
        for i in range(30):
            r = out_rows[str(i)]
            assert r["judge_alpha"] == i % 6 and r["judge_beta"] == i % 6 and r["judge_alpha_error"] is None
            assert r["judge_alpha_raw"].endswith(f"Educational score: {i % 6}")
            assert r["judge_alpha_model"] == f"a @ {server.url}" and r["judge_beta_prompt"].startswith("fineweb-edu sha256:")
        assert out_rows["broken"]["judge_alpha_error"].startswith("http 503")
        assert out_rows["empty"]["judge_alpha_error"] == "no_text" and out_rows["null"]["judge_beta_error"] == "no_text"
        # feed the judged output back: only failed rows are asked again (FLAKY now answers)
        before = dict(server.requests)
        retried = tmp_path / "retried"
        again = ["--set", f"io.input=[{out}]", "--set", f"io.output={tmp_path / 'second'}",
                 "judge", "--judge-config", str(judge_yaml), "--retry-failed", "--output", str(retried)]
        assert main(again) == 0
        asked = {d for d, n in server.requests.items() if n > before.get(d, 0)} - {PREFLIGHT_TEXT}
        assert "BROKEN doc" in asked and asked <= {"BROKEN doc", "FLAKY doc at level 2"}  # FLAKY if a judge failed on it
        fixed = {r["id"]: r for r in spark.read.parquet(str(retried)).collect()}
        assert len(fixed) == len(rows) and fixed["flaky"]["judge_alpha"] == fixed["flaky"]["judge_beta"] == 2
        assert fixed["3"]["judge_alpha_raw"] == out_rows["3"]["judge_alpha_raw"] and fixed["broken"]["judge_beta"] is None
        assert main(["--set", f"io.input=[{out}]", "judge", "--judge-config", str(judge_yaml), "--output", str(retried)]) == 2
        assert "--retry-failed" in capsys.readouterr().err
    # the server is gone: the pre-flight request fails in seconds, exit 2, one line naming the endpoint
    assert main(job) == 2
    err = capsys.readouterr().err
    assert "pre-flight request to judges.0.base_url" in err and len(err.strip().splitlines()) == 1
    with FakeJudgeServer(refuse=True) as down:
        judge_yaml.write_text(yaml.safe_dump(config(down.url, preflight=False, max_retries=0, min_requests=4,
                                                    judges=[{"name": "alpha", "base_url": down.url, "model": "a"}]).model_dump()))
        assert main(job[:-2] + ["--output", str(tmp_path / "failing")]) == 2
        assert "judge 'alpha'" in capsys.readouterr().err and down.total < len(rows)


def test_judge_api_rejects_bad_input(spark):
    from spark_jql.spark.judge import judge

    cfg = config("http://127.0.0.1:9/v1")
    df = spark.createDataFrame([("1", 5, "x")], "id string, n int, judge_fake string")
    with pytest.raises(InputError, match="not string"):
        judge(df, cfg, text_column="n")
    with pytest.raises(InputError, match="judge_fake"):
        judge(df, cfg, text_column="id")


@pytest.mark.spark
def test_ml_filter_preset_on_spark_keeps_decimals_and_asks_per_language(spark):
    from spark_jql.spark.judge import judge

    rows = [("1", "deu", "DECIMAL page"), ("2", "fra", "page\nat level 4"), ("3", "xyz", "page at level 1")]
    df = spark.createDataFrame(rows, "id string, lang string, text string")
    with FakeJudgeServer() as server:
        cfg = config(server.url, preset="ml-filter", truncation="chars", language_column="lang")
        out = {r["id"]: r for r in judge(df, cfg).collect()}
    assert dict(judge(df, cfg).dtypes)["judge_fake"] == "double"
    assert out["1"]["judge_fake"] == 3.5 and out["2"]["judge_fake"] == 4.0 and out["3"]["judge_fake"] == 1.0
    assert [out[i]["judge_fake_prompt"].split()[0] for i in "123"] == ["ml-filter/de", "ml-filter/fr", "ml-filter"]
    sent = {document_of(b["messages"][0]["content"]): b["messages"][0]["content"] for b in server.bodies}
    assert "page at level 4" in sent and "web page in French" in sent["page at level 4"]  # newline stripped


def test_judge_bench_spreads_requests_over_replicas():
    from spark_jql.devtools.judge_bench import measure

    row = measure(endpoints=2, docs_per_endpoint=8, slots=2, latency=0.02)
    assert row["scored"] == row["docs"] == 16 and sum(row["per_endpoint"]) == 16
    assert min(row["per_endpoint"]) >= 3, row  # both replicas used (fewest in flight first; exact split depends on load)
