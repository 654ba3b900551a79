"""LLM annotation against a loopback chat-completions server: parsing, retries, failures, concurrency, Spark."""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from spark_jql.config import JudgeConfig
from spark_jql.errors import InputError
from spark_jql.method.judge import default_prompt, judge_texts, load_prompt, parse_score


class FakeJudgeServer:
    """Speaks POST /v1/chat/completions; behaviour is chosen by markers in the document text."""

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.requests: dict[str, int] = {}
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = body["messages"][0]["content"]
                doc = re.search(r"<document>\n(.*)\n</document>", prompt, re.S)
                doc = doc.group(1) if doc else prompt
                with server.lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    server.requests[doc] = server.requests.get(doc, 0) + 1
                    seen = server.requests[doc]
                    server.bodies.append(body)
                    server.headers.append(dict(self.headers))
                try:
                    status, payload = self._answer(doc, body, seen)
                finally:  # counted out before the answer is sent: the client cannot start its next request earlier
                    with server.lock:
                        server.in_flight -= 1
                self._send(status, payload)

            def _answer(self, doc, body, seen):
                time.sleep(server.delay)
                if "SLOW" in doc:
                    time.sleep(1.0)
                if self.path != "/v1/chat/completions":
                    return 404, {"error": "not found"}
                if "BROKEN" in doc or ("FLAKY" in doc and seen == 1):
                    return 503, {"error": "overloaded"}
                if "BAD" in doc:
                    return 400, {"error": "context too long"}
                if "GIBBERISH" in doc:
                    answer = "I cannot decide."
                else:
                    level = re.search(r"level (\d)", doc)
                    answer = f"Some reasoning.\nEducational score: {level.group(1) if level else 0}"
                return 200, {"id": "x", "object": "chat.completion", "model": body["model"],
                             "choices": [{"index": 0, "finish_reason": "stop",
                                          "message": {"role": "assistant", "content": answer}}]}

            def _send(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):  # a client that timed out: not worth a traceback
                pass

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def config(url: str, **kw) -> JudgeConfig:
    base = {"judges": [{"name": "fake", "base_url": url, "model": "fake-judge-7b"}],
            "max_retries": 2, "backoff_seconds": 0.01, "timeout_seconds": 5, "concurrency": 4}
    return JudgeConfig.model_validate({**base, **kw})


@pytest.mark.parametrize("answer, expected", [
    ("reasoning...\nEducational score: 3", 3),
    ("Score: 2 ... final answer. Educational score: 4", 4),
    ("**Educational score:** 5", 5),
    ("4", 4),
    (" 3/5 ", 3),
    ("Educational score: 7", None),
    ("Educational score: 2.5", None),
    ("no number here", None),
    ("", None),
    (None, None),
])
def test_parse_score(answer, expected):
    assert parse_score(answer) == expected


def test_default_prompt_and_custom_prompt(tmp_path):
    text = default_prompt()
    assert "{text}" in text and "additive 5-point" in text and "Educational score:" in text
    assert load_prompt(None) == text
    custom = tmp_path / "p.txt"
    custom.write_text("Rate {text} 0-5. JSON like {\"a\": 1} is fine.")
    assert load_prompt(str(custom)).startswith("Rate {text}")
    (tmp_path / "bad.txt").write_text("no placeholder")
    with pytest.raises(InputError, match="placeholder"):
        load_prompt(str(tmp_path / "bad.txt"))
    with pytest.raises(InputError, match="not found"):
        load_prompt(str(tmp_path / "missing.txt"))


def test_judge_texts_scores_retries_and_failures():
    texts = ["a page at level 3", "FLAKY page at level 4", "BROKEN page", "BAD page", "GIBBERISH page", "", None,
             "page at level 0"]
    with FakeJudgeServer() as server:
        results = judge_texts(texts, config(server.url).judges[0], config(server.url))
    by_text = dict(zip(map(str, texts), results))
    assert [r.score for r in results] == [3, 4, None, None, None, None, None, 0]
    assert by_text["a page at level 3"].raw.endswith("Educational score: 3") and by_text["a page at level 3"].error is None
    assert by_text["FLAKY page at level 4"].attempts == 2 and by_text["FLAKY page at level 4"].error is None
    assert by_text["BROKEN page"].attempts == 3 and by_text["BROKEN page"].error.startswith("http 503")
    assert by_text["BAD page"].attempts == 1 and by_text["BAD page"].error.startswith("http 400")  # not retried
    assert by_text["GIBBERISH page"].error == "unparsable answer" and by_text["GIBBERISH page"].raw == "I cannot decide."
    assert by_text[""].error == "no_text" and by_text["None"].error == "no_text" and by_text[""].attempts == 0
    assert server.requests["BROKEN page"] == 3 and "" not in server.requests
    body = server.bodies[0]
    assert body["model"] == "fake-judge-7b" and body["temperature"] == 0.0 and body["max_tokens"] == 512
    assert "additive 5-point" in body["messages"][0]["content"]


def test_concurrency_is_bounded_and_used():
    texts = [f"doc {i} at level {i % 6}" for i in range(24)]
    with FakeJudgeServer(delay=0.05) as server:
        cfg = config(server.url, concurrency=3)
        results = judge_texts(texts, cfg.judges[0], cfg)
    assert [r.score for r in results] == [i % 6 for i in range(24)]
    assert 2 <= server.max_in_flight <= 3


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


def test_judge_config_validation():
    with pytest.raises(Exception, match="unique"):
        JudgeConfig.model_validate({"judges": [{"name": "a", "base_url": "u", "model": "m"}] * 2})
    with pytest.raises(Exception):
        JudgeConfig.model_validate({"judges": [{"name": "a b", "base_url": "u", "model": "m"}]})


@pytest.mark.spark
def test_spark_judge_stage_keeps_rows_and_records_failures(spark, tmp_path):
    """The CLI stage: reads io.input, adds four columns per judge, writes parquet, summarises."""
    from spark_jql.cli import main

    rows = [{"id": str(i), "text": f"document {i} at level {i % 6}"} for i in range(30)]
    rows += [{"id": "broken", "text": "BROKEN doc"}, {"id": "empty", "text": ""}, {"id": "null", "text": None}]
    data = tmp_path / "docs.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with FakeJudgeServer(delay=0.01) as server:
        cfg = config(server.url, concurrency=2, max_retries=1,
                     judges=[{"name": "alpha", "base_url": server.url, "model": "a"},
                             {"name": "beta", "base_url": server.url, "model": "b"}])
        judge_yaml = tmp_path / "judges.yaml"
        judge_yaml.write_text(yaml.safe_dump(cfg.model_dump()))
        rc = main(["--set", f"io.input=[{data}]", "--set", f"io.output={tmp_path / 'out'}", "--set", "spark.arrow_batch_size=8",
                   "judge", "--judge-config", str(judge_yaml), "--judge-set", "concurrency=2", "--partitions", "3"])
        assert rc == 0
        # concurrency x judges x running tasks (local[2]: at most 2 tasks at a time)
        assert server.max_in_flight <= 2 * 2 * 2
    written = spark.read.parquet(str(tmp_path / "out" / "judged"))
    assert written.columns[:2] == ["id", "text"] and "judge_beta_attempts" in written.columns
    out = {r["id"]: r for r in written.collect()}
    assert len(out) == len(rows)
    for i in range(30):
        r = out[str(i)]
        assert r["judge_alpha"] == i % 6 and r["judge_beta"] == i % 6 and r["judge_alpha_error"] is None
        assert r["judge_alpha_raw"].endswith(f"Educational score: {i % 6}")
    assert out["broken"]["judge_alpha"] is None and out["broken"]["judge_alpha_error"].startswith("http 503")
    assert out["broken"]["judge_beta_attempts"] == 2
    assert out["empty"]["judge_alpha_error"] == "no_text" and out["null"]["judge_beta_error"] == "no_text"


def test_judge_api_rejects_bad_input(spark):
    from spark_jql.spark.judge import judge

    cfg = config("http://127.0.0.1:9/v1")
    df = spark.createDataFrame([("1", 5, "x")], "id string, n int, judge_fake string")
    with pytest.raises(InputError, match="not a string"):
        judge(df, cfg, text_column="n")
    with pytest.raises(InputError, match="judge_fake"):
        judge(df, cfg, text_column="id")
