"""LLM judges (JQL step 2): ask chat-completions servers to rate documents 0-5.

The judge is the user's own OpenAI-compatible server (vLLM, TGI, llama.cpp,
a hosted API). The client uses only the standard library (urllib + threads):
nothing to install on executors, and nothing here knows about Spark.

Every document gets a result, never an exception: ``score`` (0-5, or None),
``raw`` (the model's answer, kept for audits and re-parsing), ``error`` (None, or
why there is no score: ``no_text``, ``http 400: ...``, ``unparsable answer: ...``),
``attempts`` and ``prompt`` (which prompt asked: name and sha256). Timeouts,
connection errors, 429 and 5xx are retried with exponential backoff and jitter, or
after the server's ``Retry-After``; other 4xx answers are not retried.

What stops a run instead of producing rows: bad configuration (found on the driver
by ``check_judges``: missing API key variables, missing prompt files, prompts without
``{text}``), a failed pre-flight request (``preflight``), and a judge whose share of
failed requests passes ``max_failure_rate`` (``FailureBreaker``): then requests stop
at once and ``JudgeFailureError`` names the judge, its endpoint and the last error.

Parsing follows the FineWeb-Edu prompt: the FIRST "Educational score: N" in the
answer (``score_pattern``); N must be an integer 0-5. A decimal such as 3.5 is
rejected (``decimal_scores: reject``, the default: the prompt asks for whole points)
or rounded half up (``round``); either way the raw answer is kept.
"""

from __future__ import annotations

import email.utils
import hashlib
import http.client
import json
import math
import os
import random
import re
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from spark_jql.config import JudgeConfig, JudgeEndpoint
from spark_jql.errors import InputError, SparkJQLError

PLACEHOLDER = "{text}"
DEFAULT_PROMPT_NAME = "fineweb-edu-additive"
RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
NO_TEXT = "no_text"
RESULT_SUFFIXES = ("_raw", "_error", "_attempts", "_prompt", "_model")
UNPARSABLE = "unparsable answer"
# A short educational paragraph for the pre-flight request: any working judge answers it.
PREFLIGHT_TEXT = (
    "Photosynthesis is the process by which green plants use sunlight, water and carbon dioxide "
    "to make glucose and release oxygen. It takes place in the chloroplasts of leaf cells."
)


class JudgeFailureError(SparkJQLError):
    """A judge failed too often (or its pre-flight request failed): the run stops instead of writing empty labels."""


@dataclass(frozen=True)
class JudgeResult:
    score: int | None
    raw: str | None
    error: str | None
    attempts: int
    prompt: str | None = None


def judge_columns(name: str) -> dict[str, str]:
    """Result field -> output column for one judge (``model`` and ``prompt`` are provenance)."""
    base = f"judge_{name}"
    return {"score": base, **{f: f"{base}_{f}" for f in ("raw", "error", "attempts", "prompt", "model")}}


def is_judge_score_column(column: str) -> bool:
    """``judge_<name>`` columns (the scores), not their ``_raw``/``_error``/... companions."""
    return column.startswith("judge_") and not column.endswith(RESULT_SUFFIXES)


# -- prompts --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Prompt:
    name: str
    template: str

    @property
    def label(self) -> str:
        """Provenance written with every answer: the prompt's name and the first 12 hex of its sha256."""
        return f"{self.name} sha256:{hashlib.sha256(self.template.encode()).hexdigest()[:12]}"


def default_prompt() -> str:
    """FineWeb-Edu's additive 0-5 educational-value prompt (the one JQL's judges used)."""
    return resources.files("spark_jql").joinpath("resources/edu_prompt.txt").read_text(encoding="utf-8")


def load_prompt(path: str | None, setting: str = "prompt_file") -> str:
    """The template (``{text}`` is replaced by the document; other braces are left alone)."""
    if path is None:
        return default_prompt()
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{setting}: prompt file not found: {path}")
    template = p.read_text(encoding="utf-8")
    if PLACEHOLDER not in template:
        raise InputError(f"{setting}: prompt file {path} has no {PLACEHOLDER} placeholder for the document")
    return template


def _prompt(path: str | None, setting: str) -> Prompt:
    return Prompt(DEFAULT_PROMPT_NAME if path is None else Path(path).name, load_prompt(path, setting))


@dataclass(frozen=True)
class PromptSet:
    """One judge's prompts: a default and optional per-language overrides."""

    default: Prompt
    by_language: dict[str, Prompt]

    def for_language(self, language) -> Prompt:
        return self.by_language.get(language, self.default) if language is not None else self.default


def prompt_set(config: JudgeConfig, judge: JudgeEndpoint) -> PromptSet:
    """Judge's own prompts over the shared ones: judge.prompt_files[lang] > judge.prompt_file > prompt_files[lang] > prompt_file."""
    i = config.judges.index(judge) if judge in config.judges else 0
    default = _prompt(judge.prompt_file, f"judges.{i}.prompt_file") if judge.prompt_file else _prompt(config.prompt_file, "prompt_file")
    by_language = {lang: _prompt(path, f"prompt_files.{lang}") for lang, path in config.prompt_files.items()}
    if judge.prompt_file:  # a judge's own default wins over shared per-language prompts
        by_language = {}
    by_language.update({lang: _prompt(path, f"judges.{i}.prompt_files.{lang}") for lang, path in judge.prompt_files.items()})
    return PromptSet(default, by_language)


def render(template: str, text: str, max_chars: int) -> str:
    return template.replace(PLACEHOLDER, text[:max_chars])


# -- parsing --------------------------------------------------------------------------------------
def parse_score(answer: str | None, pattern: str | None = None, decimals: str = "reject",
                low: int = 0, high: int = 5) -> tuple[int | None, str | None]:
    """(score, None) or (None, why): the first ``pattern`` match, an integer in [low, high]."""
    if not answer:
        return None, f"{UNPARSABLE}: empty answer"
    regex = re.compile(pattern or JudgeConfig.model_fields["score_pattern"].default, re.IGNORECASE)
    match = regex.search(answer)
    if match is None:
        return None, f"{UNPARSABLE}: no match for score_pattern"
    text = match.group(1).replace(",", ".")
    try:
        value = float(text)
    except ValueError:
        return None, f"{UNPARSABLE}: {text!r} is not a number"
    if value != int(value):
        if decimals != "round":
            return None, f"{UNPARSABLE}: decimal score {text} (decimal_scores=reject)"
        value = math.floor(value + 0.5)
    score = int(value)
    if not low <= score <= high:
        return None, f"{UNPARSABLE}: score {score} outside {low}-{high}"
    return score, None


# -- configuration checks (driver) ----------------------------------------------------------------
def api_key(judge: JudgeEndpoint, index: int | None = None) -> str | None:
    """The judge's API key from its environment variable; a named error when the variable is unset."""
    if not judge.api_key_env:
        return None
    key = os.environ.get(judge.api_key_env)
    if not key:
        where = f"judges.{index}.api_key_env" if index is not None else "api_key_env"
        raise InputError(f"judge {judge.name!r}: {where} names environment variable {judge.api_key_env}, which is not set")
    return key


def check_judges(config: JudgeConfig) -> tuple[dict[str, PromptSet], dict[str, str | None]]:
    """Everything a run needs that can be checked without the data: prompts (name -> PromptSet) and API keys."""
    prompts = {j.name: prompt_set(config, j) for j in config.judges}
    keys = {j.name: api_key(j, i) for i, j in enumerate(config.judges)}
    return prompts, keys


# -- HTTP -----------------------------------------------------------------------------------------
def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header (delta seconds or an HTTP date) in seconds, or None."""
    if not value:
        return None
    value = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class FailureBreaker:
    """Counts one judge's requests on one worker; trips when failures pass ``max_failure_rate``."""

    def __init__(self, judge: JudgeEndpoint, config: JudgeConfig):
        self.judge, self.config = judge, config
        self.lock = threading.Lock()
        self.requests = self.failures = 0
        self.last_error: str | None = None
        self.tripped = False

    def record(self, result: JudgeResult) -> None:
        if result.error == NO_TEXT or result.attempts == 0:
            return
        with self.lock:
            self.requests += 1
            if result.error is not None:
                self.failures += 1
                self.last_error = result.error
            if self.requests >= self.config.min_requests and self.failures > self.config.max_failure_rate * self.requests:
                self.tripped = True

    def message(self) -> str:
        return (f"judge {self.judge.name!r} ({self.judge.model} at {self.judge.base_url}): {self.failures} of "
                f"{self.requests} requests failed, more than max_failure_rate={self.config.max_failure_rate}; "
                f"last error: {self.last_error}")

    def check(self) -> None:
        if self.tripped:
            raise JudgeFailureError(self.message())


class ChatClient:
    """POST /chat/completions for one judge, with retries, backoff and Retry-After."""

    def __init__(self, endpoint: JudgeEndpoint, config: JudgeConfig, sleep=time.sleep, key: str | None = None,
                 breaker: FailureBreaker | None = None):
        self.endpoint = endpoint
        self.config = config
        self.url = endpoint.base_url.rstrip("/") + "/chat/completions"
        self.headers = {"Content-Type": "application/json"}
        key = key or api_key(endpoint)
        if key:
            self.headers["Authorization"] = f"Bearer {key}"
        self.breaker = breaker
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
        attempt = 0
        for attempt in range(1, self.config.max_retries + 2):
            wait = None
            try:
                return self._post(prompt), None, attempt
            except urllib.error.HTTPError as err:
                detail = err.read()[:200].decode("utf-8", "replace") if err.fp else ""
                error = f"http {err.code}: {detail}".strip()
                if err.code not in RETRYABLE_STATUS:
                    return None, error, attempt
                wait = retry_after_seconds(err.headers.get("Retry-After") if err.headers else None)
            except (urllib.error.URLError, http.client.HTTPException, OSError) as err:  # network, timeouts, cut-off answers
                error = f"{type(err).__name__}: {getattr(err, 'reason', err)}"
            except (ValueError, KeyError, IndexError, TypeError) as err:  # not a chat-completions answer
                error = f"bad response: {type(err).__name__}: {err}"
            if attempt > self.config.max_retries or (self.breaker is not None and self.breaker.tripped):
                break
            if wait is not None:
                self._sleep(min(wait, self.config.max_retry_after_seconds))
            else:
                delay = self.config.backoff_seconds * 2 ** (attempt - 1)
                self._sleep(delay * (0.5 + random.random()))
        return None, error, attempt

    def judge(self, text: str | None, prompt: Prompt | str) -> JudgeResult:
        prompt = prompt if isinstance(prompt, Prompt) else Prompt("custom", prompt)
        if text is None or not isinstance(text, str) or not text.strip():
            return JudgeResult(None, None, NO_TEXT, 0)
        if self.breaker is not None and self.breaker.tripped:  # stop sending: the run is about to fail
            return JudgeResult(None, None, f"not asked: {self.breaker.message()}", 0, prompt.label)
        answer, error, attempts = self.ask(render(prompt.template, text, self.config.max_chars))
        if answer is None:
            result = JudgeResult(None, None, error, attempts, prompt.label)
        else:
            score, why = parse_score(answer, self.config.score_pattern, self.config.decimal_scores)
            result = JudgeResult(score, answer, why, attempts, prompt.label)
        if self.breaker is not None:
            self.breaker.record(result)
        return result


# -- all judges at once ---------------------------------------------------------------------------
class JudgePanel:
    """Every judge of a config with its own thread pool (its own concurrency bound), all in flight together."""

    def __init__(self, config: JudgeConfig, prompts: dict[str, PromptSet] | None = None,
                 keys: dict[str, str | None] | None = None, sleep=time.sleep):
        if prompts is None or keys is None:
            prompts, keys = check_judges(config)
        self.config = config
        self.prompts = prompts
        self.breakers = {j.name: FailureBreaker(j, config) for j in config.judges}
        self.clients = {j.name: ChatClient(j, config, sleep, keys.get(j.name), self.breakers[j.name]) for j in config.judges}
        self.pools = {j.name: ThreadPoolExecutor(config.concurrency_of(j), thread_name_prefix=f"jql-judge-{j.name}")
                      for j in config.judges}

    def judge(self, texts: dict[str, list], languages: list | None = None) -> dict[str, list[JudgeResult]]:
        """judge name -> texts (None: not asked) in, judge name -> results in the same order out.

        All judges' requests are submitted before any is awaited; raises ``JudgeFailureError``
        after the batch if a judge's failure rate tripped its breaker.
        """
        futures = {}
        for name, batch in texts.items():
            prompts, client = self.prompts[name], self.clients[name]
            langs = languages if languages is not None else [None] * len(batch)
            futures[name] = [self.pools[name].submit(client.judge, t, prompts.for_language(lang)) for t, lang in zip(batch, langs)]
        results = {name: [f.result() for f in fs] for name, fs in futures.items()}
        for breaker in self.breakers.values():
            breaker.check()
        return results

    def close(self) -> None:
        for pool in self.pools.values():
            pool.shutdown(wait=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def preflight(config: JudgeConfig, prompts: dict[str, PromptSet] | None = None,
              keys: dict[str, str | None] | None = None) -> dict[str, dict]:
    """One request per judge, all at once, from the driver: a named error for the first judge that does not answer.

    Not retried beyond one attempt after a retryable status, so an unreachable endpoint fails in seconds.
    Returns name -> {"seconds", "score", "error"}; an unparsable answer is reported, not fatal.
    """
    quick = config.model_copy(update={"max_retries": min(config.max_retries, 1), "max_retry_after_seconds": min(config.max_retry_after_seconds, 5.0)})
    if prompts is None or keys is None:
        prompts, keys = check_judges(config)

    def one(judge: JudgeEndpoint) -> tuple[JudgeResult, float]:
        start = time.perf_counter()
        result = ChatClient(judge, quick, key=keys.get(judge.name)).judge(PREFLIGHT_TEXT, prompts[judge.name].default)
        return result, time.perf_counter() - start

    with ThreadPoolExecutor(len(config.judges)) as pool:
        outcomes = dict(zip([j.name for j in config.judges], pool.map(one, config.judges)))
    for i, judge in enumerate(config.judges):
        result, _ = outcomes[judge.name]
        if result.raw is None:
            raise JudgeFailureError(
                f"judge {judge.name!r}: pre-flight request to judges.{i}.base_url={judge.base_url} (model "
                f"{judge.model!r}) failed: {result.error} (set preflight=false to skip this check)"
            )
    return {name: {"seconds": round(s, 3), "score": r.score, "error": r.error} for name, (r, s) in outcomes.items()}


def judge_texts(texts, endpoint: JudgeEndpoint, config: JudgeConfig, template: str | None = None) -> list[JudgeResult]:
    """One judge's results in input order, at most its concurrency in flight (no failure-rate stop)."""
    prompt = Prompt("custom", template) if template is not None else prompt_set(config, endpoint).default
    client = ChatClient(endpoint, config)
    texts = list(texts)
    if not texts:
        return []
    with ThreadPoolExecutor(max_workers=min(config.concurrency_of(endpoint), len(texts)), thread_name_prefix="jql-judge") as pool:
        return list(pool.map(lambda t: client.judge(t, prompt), texts))
