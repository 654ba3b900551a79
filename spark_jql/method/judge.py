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

Prompt, parsing and truncation follow a named preset (spark_jql/judge_presets.py):
``fineweb-edu`` (default: FineWeb-Edu's published prompt, the FIRST "Educational score: N",
N an integer 0-5, a decimal such as 3.5 rejected) or ``ml-filter`` (the JQL co-authors'
pipeline: per-language prompts, the LAST match, decimals kept, token truncation). Any
setting given explicitly replaces the preset's; the raw answer is always kept.

Endpoints: a judge may list several replicas (``base_urls``); each request goes to the one
with the fewest requests in flight, a retry to another one, and an endpoint failing several
times in a row is passed over while others answer. Failures are counted per endpoint. A
request that times out has its connection closed at once, so a server that aborts on
disconnect (vLLM does) stops generating instead of piling up work behind the client.
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
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from spark_jql.config import JudgeConfig, JudgeEndpoint
from spark_jql.errors import InputError, SparkJQLError
from spark_jql.judge_presets import PLACEHOLDER, PRESETS, Parser, clean_text, preset_template

BENCH_AFTER_FAILURES = 3  # an endpoint failing this many times in a row is passed over while others answer
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
    score: int | float | None
    raw: str | None
    error: str | None
    attempts: int
    prompt: str | None = None
    endpoint: str | None = None  # the base URL that gave the answer (or the last one tried)


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


def default_prompt(preset: str = "fineweb-edu") -> str:
    """The preset's language-free prompt template (``fineweb-edu``: FineWeb-Edu's published annotation prompt)."""
    return preset_template(preset)[1]


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


def _prompt(path: str | None, setting: str, preset: str = "fineweb-edu") -> Prompt:
    return Prompt(*preset_template(preset)) if path is None else Prompt(Path(path).name, load_prompt(path, setting))


@dataclass(frozen=True)
class PromptSet:
    """One judge's prompts: a default, optional per-language overrides, and the preset's own language variants."""

    default: Prompt
    by_language: dict[str, Prompt]
    preset: str | None = None  # set when the default is the preset's: its per-language variants apply
    _variants: dict = field(default_factory=dict, compare=False, repr=False)

    def for_language(self, language) -> Prompt:
        if language is None:
            return self.default
        found = self.by_language.get(language)
        if found is not None:
            return found
        if self.preset is None:
            return self.default
        if language not in self._variants:
            self._variants[language] = Prompt(*preset_template(self.preset, language))
        return self._variants[language]


def prompt_set(config: JudgeConfig, judge: JudgeEndpoint) -> PromptSet:
    """Judge's own prompts over the shared ones: judge.prompt_files[lang] > judge.prompt_file > prompt_files[lang] > prompt_file
    > the preset's prompt for the language."""
    i = config.judges.index(judge) if judge in config.judges else 0
    default = (_prompt(judge.prompt_file, f"judges.{i}.prompt_file") if judge.prompt_file
               else _prompt(config.prompt_file, "prompt_file", config.preset))
    by_language = {lang: _prompt(path, f"prompt_files.{lang}") for lang, path in config.prompt_files.items()}
    if judge.prompt_file:  # a judge's own default wins over shared per-language prompts
        by_language = {}
    by_language.update({lang: _prompt(path, f"judges.{i}.prompt_files.{lang}") for lang, path in judge.prompt_files.items()})
    uses_preset = not judge.prompt_file and config.prompt_file is None
    return PromptSet(default, by_language, config.preset if uses_preset else None)


def render(template: str, text: str, max_chars: int) -> str:
    return template.replace(PLACEHOLDER, text[:max_chars])


_TOKENIZERS: dict[str, object] = {}
_TOKENIZER_LOCK = threading.Lock()


def _tokenizer(name: str):
    """The judge model's tokenizer, loaded once per Python worker (transformers, imported only for token truncation)."""
    with _TOKENIZER_LOCK:
        if name not in _TOKENIZERS:
            from transformers import AutoTokenizer

            _TOKENIZERS[name] = AutoTokenizer.from_pretrained(name)
        return _TOKENIZERS[name]


class Truncator:
    """Cuts a document before prompting: to ``max_chars`` characters, or (ml_filter's rule) so that the
    chat-formatted prompt with the document has at most ``max_prompt_tokens`` tokens of the judge's tokenizer."""

    def __init__(self, config: JudgeConfig):
        self.rule, self.config = config.truncation_rule, config
        self._overhead: dict[str, int] = {}

    def _prompt_tokens(self, tok, template: str, system: str | None) -> int:
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": template.replace(PLACEHOLDER, "")}]
        if getattr(tok, "chat_template", None):
            return len(tok.apply_chat_template(messages, tokenize=True, add_generation_prompt=True))
        return len(tok.encode("".join(m["content"] for m in messages)))

    def __call__(self, text: str, template: str, system: str | None = None) -> str:
        if self.rule == "chars":
            return text[: self.config.max_chars]
        tok = _tokenizer(self.config.tokenizer)
        key = f"{hashlib.sha256(template.encode()).hexdigest()}:{system}"
        if key not in self._overhead:
            self._overhead[key] = self._prompt_tokens(tok, template, system)
        budget = max(0, self.config.max_prompt_tokens - self._overhead[key])
        ids = tok.encode(text)
        return text if len(ids) <= budget else tok.decode(ids[:budget], skip_special_tokens=True)


# -- parsing --------------------------------------------------------------------------------------
def parse_score(answer: str | None, pattern: str | None = None, decimals: str = "reject",
                low: int = 0, high: int = 5, parser: Parser | None = None) -> tuple[int | float | None, str | None]:
    """(score, None) or (None, why): the first (or, per ``parser``, last) ``pattern`` match, a number in [low, high].

    Integers unless ``decimals`` is ``keep`` (3.5 stays 3.5) or ``round`` (half up); ``reject`` refuses 3.5.
    """
    parser = parser or Parser(pattern or PRESETS["fineweb-edu"].parser.pattern, decimals=decimals, low=low, high=high)
    if not answer:
        return None, f"{UNPARSABLE}: empty answer"
    matches = list(re.finditer(parser.pattern, answer, re.IGNORECASE if parser.ignore_case else 0))
    if not matches:
        return None, f"{UNPARSABLE}: no match for score_pattern"
    match = matches[-1] if parser.match == "last" else matches[0]
    decimals, low, high = parser.decimals, parser.low, parser.high
    text = match.group(1).replace(",", ".")
    try:
        value = float(text)
    except ValueError:
        return None, f"{UNPARSABLE}: {text!r} is not a number"
    if decimals == "keep":
        if not low <= value <= high:
            return None, f"{UNPARSABLE}: score {text} outside {low}-{high}"
        return value, None
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
        return (f"judge {self.judge.name!r} ({self.judge.model} at {self.judge.where}): {self.failures} of "
                f"{self.requests} requests failed, more than max_failure_rate={self.config.max_failure_rate}; "
                f"last error: {self.last_error}")

    def check(self) -> None:
        if self.tripped:
            raise JudgeFailureError(self.message())


@dataclass
class EndpointStats:
    """One replica's accounting on one worker: requests in flight, attempts, failures, failures in a row."""

    url: str
    in_flight: int = 0
    attempts: int = 0
    failures: int = 0
    in_a_row: int = 0


class Endpoints:
    """Client-side balancing over a judge's replicas: fewest in flight first, healthy ones before failing ones."""

    def __init__(self, urls: list[str]):
        self.stats = [EndpointStats(u) for u in urls]
        self.lock = threading.Lock()
        self._next = 0

    def acquire(self, avoid: str | None = None) -> EndpointStats:
        with self.lock:
            self._next += 1
            n = len(self.stats)
            order = [self.stats[(self._next + i) % n] for i in range(n)]  # rotate: ties go round the replicas
            healthy = [e for e in order if e.in_a_row < BENCH_AFTER_FAILURES] or order
            fresh = [e for e in healthy if e.url != avoid] or healthy  # a retry goes elsewhere when it can
            chosen = min(fresh, key=lambda e: e.in_flight)
            chosen.in_flight += 1
            chosen.attempts += 1
            return chosen

    def release(self, endpoint: EndpointStats, failed: bool) -> None:
        with self.lock:
            endpoint.in_flight -= 1
            if failed:
                endpoint.failures += 1
                endpoint.in_a_row += 1
            else:
                endpoint.in_a_row = 0

    def summary(self) -> dict[str, dict]:
        with self.lock:
            return {e.url: {"attempts": e.attempts, "failures": e.failures} for e in self.stats}


class HTTPStatusError(Exception):
    def __init__(self, code: int, detail: str, retry_after: str | None):
        super().__init__(f"http {code}: {detail}".strip())
        self.code, self.retry_after = code, retry_after


class ChatClient:
    """POST /chat/completions for one judge (over its replicas), with retries, backoff and Retry-After."""

    def __init__(self, endpoint: JudgeEndpoint, config: JudgeConfig, sleep=time.sleep, key: str | None = None,
                 breaker: FailureBreaker | None = None):
        self.endpoint = endpoint
        self.config = config
        self.endpoints = Endpoints(endpoint.endpoints)
        self.headers = {"Content-Type": "application/json"}
        key = key or api_key(endpoint)
        if key:
            self.headers["Authorization"] = f"Bearer {key}"
        self.breaker = breaker
        self.parser = config.parser()
        self.preset = PRESETS[config.preset]
        self.truncate = Truncator(config)
        self._sleep = sleep

    def _messages(self, prompt: str) -> list[dict]:
        system = [{"role": "system", "content": self.endpoint.system_prompt}] if self.endpoint.system_prompt else []
        return system + [{"role": "user", "content": prompt}]

    def _post(self, base_url: str, prompt: str) -> str:
        """One request on its own connection, closed whatever happens: a timed-out request's server sees the client go."""
        body = json.dumps({
            "model": self.endpoint.model,
            "messages": self._messages(prompt),
            "temperature": self.config.temperature_of(self.endpoint),
            "max_tokens": self.config.max_tokens_of(self.endpoint),
        }).encode()
        url = urllib.parse.urlsplit(base_url.rstrip("/") + "/chat/completions")
        kind = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        conn = kind(url.hostname, url.port, timeout=self.config.timeout_seconds)
        try:
            conn.request("POST", url.path + (f"?{url.query}" if url.query else ""), body, self.headers)
            response = conn.getresponse()
            data = response.read()
            if response.status >= 400:
                raise HTTPStatusError(response.status, data[:200].decode("utf-8", "replace"), response.getheader("Retry-After"))
            payload = json.loads(data.decode("utf-8"))
        finally:
            conn.close()
        return payload["choices"][0]["message"]["content"] or ""

    def ask(self, prompt: str) -> tuple[str | None, str | None, int, str | None]:
        """(answer, error, attempts, endpoint); never raises for server or network trouble."""
        error = None
        attempt = 0
        used = None
        for attempt in range(1, self.config.max_retries + 2):
            wait = None
            target = self.endpoints.acquire(avoid=used)
            used = target.url
            failed = True
            try:
                answer = self._post(target.url, prompt)
                failed = False
                return answer, None, attempt, used
            except HTTPStatusError as err:
                error = str(err)
                if err.code not in RETRYABLE_STATUS:
                    return None, error, attempt, used
                wait = retry_after_seconds(err.retry_after)
            except (http.client.HTTPException, OSError) as err:  # network, timeouts, cut-off answers
                error = f"{type(err).__name__}: {getattr(err, 'reason', None) or err}"
            except (ValueError, KeyError, IndexError, TypeError) as err:  # not a chat-completions answer
                error = f"bad response: {type(err).__name__}: {err}"
            finally:
                self.endpoints.release(target, failed)
            if attempt > self.config.max_retries or (self.breaker is not None and self.breaker.tripped):
                break
            if wait is not None:
                self._sleep(min(wait, self.config.max_retry_after_seconds))
            else:
                delay = self.config.backoff_seconds * 2 ** (attempt - 1)
                self._sleep(delay * (0.5 + random.random()))
        return None, error, attempt, used

    def prompt_for(self, text: str, prompt: Prompt) -> str:
        """The user message: the preset's clean-up, the truncation rule, the document in the template."""
        if self.preset.clean_text:
            text = clean_text(text)
        return prompt.template.replace(PLACEHOLDER, self.truncate(text, prompt.template, self.endpoint.system_prompt))

    def judge(self, text: str | None, prompt: Prompt | str) -> JudgeResult:
        prompt = prompt if isinstance(prompt, Prompt) else Prompt("custom", prompt)
        if text is None or not isinstance(text, str) or not text.strip():
            return JudgeResult(None, None, NO_TEXT, 0)
        if self.breaker is not None and self.breaker.tripped:  # stop sending: the run is about to fail
            return JudgeResult(None, None, f"not asked: {self.breaker.message()}", 0, prompt.label)
        answer, error, attempts, used = self.ask(self.prompt_for(text, prompt))
        if answer is None:
            result = JudgeResult(None, None, error, attempts, prompt.label, used)
        else:
            score, why = parse_score(answer, parser=self.parser)
            result = JudgeResult(score, answer, why, attempts, prompt.label, used)
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
    """One request per endpoint of every judge, all at once, from the driver: a named error for the first that does not answer.

    Not retried beyond one attempt after a retryable status, so an unreachable endpoint fails in seconds.
    Returns name -> {"seconds", "score", "error"} (the slowest endpoint); an unparsable answer is reported, not fatal.
    """
    quick = config.model_copy(update={"max_retries": min(config.max_retries, 1), "max_retry_after_seconds": min(config.max_retry_after_seconds, 5.0)})
    if prompts is None or keys is None:
        prompts, keys = check_judges(config)
    asks = [(i, judge, url) for i, judge in enumerate(config.judges) for url in judge.endpoints]

    def one(ask) -> tuple[JudgeResult, float]:
        _, judge, url = ask
        start = time.perf_counter()
        single = judge.model_copy(update={"base_url": url, "base_urls": []})
        result = ChatClient(single, quick, key=keys.get(judge.name)).judge(PREFLIGHT_TEXT, prompts[judge.name].default)
        return result, time.perf_counter() - start

    with ThreadPoolExecutor(min(32, len(asks))) as pool:
        outcomes = list(pool.map(one, asks))
    found: dict[str, dict] = {}
    for (i, judge, url), (result, seconds) in zip(asks, outcomes):
        if result.raw is None:
            where = f"judges.{i}.base_url={url}" if judge.base_url else f"judges.{i}.base_urls[{judge.endpoints.index(url)}]={url}"
            raise JudgeFailureError(
                f"judge {judge.name!r}: pre-flight request to {where} (model {judge.model!r}) failed: {result.error} "
                "(set preflight=false to skip this check)"
            )
        if seconds >= found.get(judge.name, {}).get("seconds", -1):
            found[judge.name] = {"seconds": round(seconds, 3), "score": result.score, "error": result.error}
    return found


def judge_texts(texts, endpoint: JudgeEndpoint, config: JudgeConfig, template: str | None = None) -> list[JudgeResult]:
    """One judge's results in input order, at most its concurrency in flight (no failure-rate stop)."""
    prompt = Prompt("custom", template) if template is not None else prompt_set(config, endpoint).default
    client = ChatClient(endpoint, config)
    texts = list(texts)
    if not texts:
        return []
    with ThreadPoolExecutor(max_workers=min(config.concurrency_of(endpoint), len(texts)), thread_name_prefix="jql-judge") as pool:
        return list(pool.map(lambda t: client.judge(t, prompt), texts))
