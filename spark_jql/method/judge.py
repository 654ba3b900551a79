"""LLM judges (JQL step 2): ask a chat-completions server to rate documents 0-5.

The judge is the user's own OpenAI-compatible server (vLLM, TGI, llama.cpp,
a hosted API). The client uses only the standard library (urllib + threads):
nothing to install on executors, and nothing here knows about Spark.

Every document gets a result, never an exception: ``score`` (0-5, or None),
``raw`` (the model's answer, kept for audits and re-parsing), ``error`` (None, or
why there is no score: ``no_text``, ``http 400: ...``, ``unparsable answer``, ...)
and ``attempts``. Timeouts, connection errors, 429 and 5xx are retried with
exponential backoff and jitter; other 4xx answers are not (retrying cannot help).
"""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from spark_jql.config import JudgeConfig, JudgeEndpoint
from spark_jql.errors import InputError

PLACEHOLDER = "{text}"
RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
# The last "score: N" wins (the default prompt asks for "Educational score: N" on the last line);
# else an answer that is nothing but a number.
_SCORE = re.compile(r"score\s*(?:\*\*)?\s*[:=]\s*(?:\*\*)?\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
_BARE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*5)?\s*\.?\s*$")


@dataclass(frozen=True)
class JudgeResult:
    score: int | None
    raw: str | None
    error: str | None
    attempts: int


def default_prompt() -> str:
    return resources.files("spark_jql").joinpath("resources/edu_prompt.txt").read_text(encoding="utf-8")


def load_prompt(path: str | None) -> str:
    """The template (``{text}`` is replaced by the document; other braces are left alone)."""
    if path is None:
        return default_prompt()
    p = Path(path)
    if not p.is_file():
        raise InputError(f"prompt file not found: {path}")
    template = p.read_text(encoding="utf-8")
    if PLACEHOLDER not in template:
        raise InputError(f"prompt file {path} has no {PLACEHOLDER} placeholder for the document")
    return template


def render(template: str, text: str, max_chars: int) -> str:
    return template.replace(PLACEHOLDER, text[:max_chars])


def parse_score(answer: str | None, low: int = 0, high: int = 5) -> int | None:
    """The integer score in an answer, or None if there is none in [low, high]."""
    if not answer:
        return None
    found = _SCORE.findall(answer)
    value = found[-1] if found else (m.group(1) if (m := _BARE.match(answer)) else None)
    if value is None or float(value) != int(float(value)):
        return None
    score = int(float(value))
    return score if low <= score <= high else None


class ChatClient:
    """POST /chat/completions for one judge, with retries and backoff."""

    def __init__(self, endpoint: JudgeEndpoint, config: JudgeConfig, sleep=time.sleep):
        self.endpoint = endpoint
        self.config = config
        self.url = endpoint.base_url.rstrip("/") + "/chat/completions"
        self.headers = {"Content-Type": "application/json"}
        if endpoint.api_key_env:
            key = os.environ.get(endpoint.api_key_env)
            if not key:
                raise InputError(f"judge {endpoint.name!r}: environment variable {endpoint.api_key_env} is not set")
            self.headers["Authorization"] = f"Bearer {key}"
        self._sleep = sleep

    def _post(self, prompt: str) -> str:
        body = json.dumps({
            "model": self.endpoint.model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": self.config.temperature,
            "max_tokens": self.config.max_tokens,
        }).encode()
        request = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.config.timeout_seconds) as response:
            payload = json.loads(response.read().decode("utf-8"))
        return payload["choices"][0]["message"]["content"] or ""

    def ask(self, prompt: str) -> tuple[str | None, str | None, int]:
        """(answer, error, attempts); never raises for server or network trouble."""
        error = None
        for attempt in range(1, self.config.max_retries + 2):
            try:
                return self._post(prompt), None, attempt
            except urllib.error.HTTPError as err:
                detail = err.read()[:200].decode("utf-8", "replace") if err.fp else ""
                error = f"http {err.code}: {detail}".strip()
                if err.code not in RETRYABLE_STATUS:
                    return None, error, attempt
            except (urllib.error.URLError, http.client.HTTPException, OSError) as err:  # network, timeouts, cut-off answers
                error = f"{type(err).__name__}: {getattr(err, 'reason', err)}"
            except (ValueError, KeyError, IndexError, TypeError) as err:  # not a chat-completions answer
                error = f"bad response: {type(err).__name__}: {err}"
            if attempt <= self.config.max_retries:
                delay = self.config.backoff_seconds * 2 ** (attempt - 1)
                self._sleep(delay * (0.5 + random.random()))
        return None, error, self.config.max_retries + 1

    def judge(self, text: str | None, template: str) -> JudgeResult:
        if text is None or not isinstance(text, str) or not text.strip():
            return JudgeResult(None, None, "no_text", 0)
        answer, error, attempts = self.ask(render(template, text, self.config.max_chars))
        if answer is None:
            return JudgeResult(None, None, error, attempts)
        score = parse_score(answer)
        return JudgeResult(score, answer, None if score is not None else "unparsable answer", attempts)


def judge_texts(texts, endpoint: JudgeEndpoint, config: JudgeConfig, template: str | None = None) -> list[JudgeResult]:
    """Results in input order, at most ``config.concurrency`` requests in flight."""
    template = template if template is not None else load_prompt(config.prompt_file)
    client = ChatClient(endpoint, config)
    texts = list(texts)
    if not texts:
        return []
    with ThreadPoolExecutor(max_workers=min(config.concurrency, len(texts)), thread_name_prefix="jql-judge") as pool:
        return list(pool.map(lambda t: client.judge(t, template), texts))
