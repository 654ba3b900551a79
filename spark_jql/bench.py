"""Throughput benchmark: our scorer against a JQL-style baseline, same model, same run.

Needs no downloaded weights. It builds a randomly initialised encoder from a named
architecture (``arctic-embed-m-v2.0``: GTE, 12 layers, hidden 768, 12 heads,
intermediate 3072, vocab 250,048, max positions 8192, rope theta 160,000; or the
small ``gte-small`` for CPU), a Unigram tokenizer trained on the workload's own
text, and three JQL-shaped heads (``Linear(768,1000) -> ReLU -> Linear(1000,1)``).
Random weights cost exactly what trained ones cost, so throughput is real even
though the scores are noise.

Workload (``--workload lognormal``, the default): documents whose token counts are
drawn from a lognormal with sigma ``--sigma`` (1.0) and mu solved so that the mean
*after* capping at ``--max-length`` is ``--mean-tokens`` (690, JQL's average); a
document of n tokens is a window of real text (``--corpus``, default the JSON-lines
files in ``../shared/data``) about n tokens long, so the tokenizer sees real text.
``--workload corpus`` uses the corpus documents as they are.

Phases, all in one process on one device:

1. tokenization alone: ``Scorer.tokenize`` with the tokenizer's Rust thread pool
   off (docs/s per core) and on (all cores);
2. model only (pre-tokenized): ours (length-sorted micro-batches within token
   budget) vs the JQL loop (chunks of ``--baseline-batch`` = 1000 unsorted docs
   padded to the longest);
3. end to end (text in, scores out): ``Scorer.score_batches`` (tokenizes the next
   batch on a thread) vs the JQL loop, which tokenizes each chunk in line;
4. with ``--spark``: the Spark UDF (``spark_jql.spark.api.annotate``) on local
   Spark vs the scorer alone on the same data, model and core count.

MFU = model FLOPs on real tokens / seconds / device bf16 peak, with model FLOPs per
document of n tokens = ``2 * P * n + 4 * L * d * n**2`` (P: encoder parameters
outside the embedding tables; L layers; d hidden size; the ``n**2`` term is QK^T
and attention x V in every layer) plus ``2 * (d*h + h)`` per head. "Computed"
FLOPs apply the same formula to the padded shapes actually run.

Run ``python -m spark_jql.bench --help``; results and commands are in
docs/benchmarks.md. Benchmarks print numbers; the tests never time anything.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import math
import os
import platform
import resource
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger("spark_jql.bench")

ARCH_CHOICES = ("arctic-embed-m-v2.0", "gte-small", "gte-tiny")

# Dense bf16 tensor-core peak, TFLOP/s (vendor data sheets, no sparsity).
BF16_PEAK_TFLOPS = {
    "H200": 989.4,
    "H100 SXM": 989.4,
    "H100 80GB HBM3": 989.4,
    "H100 NVL": 835.0,
    "H100 PCIE": 756.0,
    "H100": 756.0,
    "A100": 312.0,
    "L40S": 362.1,
    "L4": 121.0,
    "A10G": 70.0,
    "A10": 125.0,
}

REFERENCE_DOCS_PER_MIN = 11_000  # JQL paper: one A100, docs of ~690 tokens
TARGET_DOCS_PER_MIN = 120_000


# ---------------------------------------------------------------------------
# Workload
# ---------------------------------------------------------------------------
def default_corpus_files() -> list[Path]:
    here = Path(__file__).resolve()
    for root in (here.parents[2] / "shared" / "data", Path("/work/shared/data")):
        files = sorted(root.glob("*.jsonl"))
        if files:
            return files
    return []


def read_corpus(files: list[Path], text_field: str = "text") -> list[str]:
    texts: list[str] = []
    for f in files:
        with open(f, encoding="utf-8") as handle:
            for line in handle:
                line = line.strip()
                if line:
                    t = json.loads(line).get(text_field)
                    if isinstance(t, str) and t.strip():
                        texts.append(t)
    if not texts:  # no shared data (e.g. a bare GPU machine): the built-in sample corpus
        from .sample_data import generate_documents

        texts = [d["text"] for d in generate_documents(3000, seed=7, mean_sentences=20)]
    return texts


def _norm_cdf(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def capped_lognormal_mean(mu: float, sigma: float, cap: float) -> float:
    """E[min(X, cap)] for X ~ LogNormal(mu, sigma)."""
    z = (math.log(cap) - mu) / sigma
    return math.exp(mu + sigma**2 / 2) * _norm_cdf(z - sigma) + cap * (1 - _norm_cdf(z))


def solve_mu(mean: float, sigma: float, cap: float) -> float:
    """mu such that the lognormal capped at ``cap`` has mean ``mean``."""
    if mean >= cap:
        raise ValueError(f"mean tokens {mean} must be below the cap {cap}")
    lo, hi = math.log(mean) - 10, math.log(mean) + 10
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if capped_lognormal_mean(mid, sigma, cap) < mean else (lo, mid)
    return (lo + hi) / 2


def target_lengths(n: int, mean: float, sigma: float, cap: int, min_tokens: int, seed: int) -> tuple[np.ndarray, float]:
    mu = solve_mu(mean, sigma, cap)
    rng = np.random.default_rng(seed)
    lengths = np.clip(np.rint(rng.lognormal(mu, sigma, n)), min_tokens, cap).astype(np.int64)
    return lengths, mu


def lognormal_texts(pool: str, lengths: np.ndarray, chars_per_token: float, seed: int) -> list[str]:
    """One window of real text per target length, starting at a word boundary."""
    rng = np.random.default_rng(seed + 1)
    texts = []
    for n in lengths:
        width = max(8, int(n * chars_per_token))
        start = int(rng.integers(0, max(1, len(pool) - width - 1)))
        space = pool.find(" ", start, start + 64)
        start = space + 1 if space >= 0 else start
        texts.append(pool[start : start + width])
    return texts


# ---------------------------------------------------------------------------
# Model bundle (random weights, cached on disk)
# ---------------------------------------------------------------------------
def build_bundle(arch: str, cache: Path, corpus: list[str], vocab: int, seed: int, tokenizer_dir: str | None) -> dict:
    """Encoder + tokenizer + three JQL-shaped heads; reused from ``cache`` when present."""
    from .tiny_models import ARCHITECTURES, JQL_HEAD_NAMES, build_encoder, build_heads, build_tokenizer

    spec = ARCHITECTURES[arch]
    tag = f"{arch}-v{vocab}-s{seed}" + ("-exttok" if tokenizer_dir else "")
    root = cache / tag
    enc_dir, head_dir = root / "encoder", root / "heads"
    done = root / "DONE"
    if not done.exists():
        log.info("building %s under %s (once; later runs reuse it)", arch, root)
        enc_dir.mkdir(parents=True, exist_ok=True)
        if tokenizer_dir:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
            tokenizer.save_pretrained(str(enc_dir))
        else:
            step = max(1, len(corpus) // 800)
            tokenizer = build_tokenizer(enc_dir, texts=corpus[::step][:800], vocab_size=vocab,
                                        model_max_length=spec["max_position_embeddings"])
        model_vocab = spec["vocab_size"] or len(tokenizer)
        model_vocab = max(model_vocab, len(tokenizer))
        build_encoder(enc_dir, arch, seed=seed, vocab_size=model_vocab, save_tokenizer=False)
        build_heads(head_dir, spec["hidden_size"], JQL_HEAD_NAMES, hidden_dim=1000, seed=seed)
        done.write_text("ok\n")
    return {
        "embedder": {"model": str(enc_dir)},
        "heads": [{"name": n, "path": str(head_dir / f"{n}.ckpt")} for n in JQL_HEAD_NAMES],
    }


# ---------------------------------------------------------------------------
# Measurement helpers
# ---------------------------------------------------------------------------
def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakMemory:
    """Peak device memory (CUDA allocator) or, on CPU, peak process RSS sampled every 10 ms."""

    def __init__(self, device):
        self.device = device
        self.peak = 0
        self.base = 0
        self._stop = threading.Event()

    def __enter__(self):
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.base = self.peak = _rss_bytes()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, _rss_bytes())

    def __exit__(self, *exc):
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, _rss_bytes())
        return False


@dataclass
class ModelShape:
    layers: int
    hidden: int
    params_non_embedding: int
    params_total: int
    head_flops_per_doc: int

    def flops(self, n: np.ndarray | int) -> np.ndarray | float:
        n = np.asarray(n, dtype=np.float64)
        return 2.0 * self.params_non_embedding * n + 4.0 * self.layers * self.hidden * n**2

    def model_flops(self, lengths: np.ndarray) -> float:
        return float(self.flops(lengths).sum() + self.head_flops_per_doc * len(lengths))


def arch_shape(arch: str, heads: int = 3, head_hidden: int = 1000) -> ModelShape:
    """FLOP shape of a named architecture without building it (GTE: gated MLP, biased projections)."""
    from .tiny_models import ARCHITECTURES

    spec = ARCHITECTURES[arch]
    d, i, layers = spec["hidden_size"], spec["intermediate_size"], spec["num_hidden_layers"]
    per_layer = 4 * d * d + 4 * d + 3 * d * i + d + 4 * d
    embed = (spec["vocab_size"] or 0) * d + 3 * d
    return ModelShape(layers, d, layers * per_layer, layers * per_layer + embed, heads * 2 * (d * head_hidden + head_hidden))


def model_shape(scorer) -> ModelShape:
    model = scorer.embedder.model
    total = sum(p.numel() for p in model.parameters())
    embed = sum(p.numel() for name, p in model.named_parameters() if name.startswith("embeddings."))
    cfg = model.config
    heads = 2 * scorer.heads.w1.numel() + 2 * scorer.heads.w2.numel()
    return ModelShape(int(cfg.num_hidden_layers), int(cfg.hidden_size), total - embed, total, int(heads))


@dataclass
class Result:
    name: str
    docs: int
    seconds: float
    real_tokens: int
    computed_tokens: int | None
    model_flops: float
    computed_flops: float | None
    peak_memory_bytes: int | None
    oom_docs: int = 0
    micro_batches: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def docs_per_s(self) -> float:
        return self.docs / self.seconds if self.seconds else float("nan")

    def row(self, peak_tflops: float | None) -> dict:
        out = {
            "name": self.name,
            "docs": self.docs,
            "seconds": round(self.seconds, 3),
            "docs_per_s": round(self.docs_per_s, 2),
            "docs_per_min": round(self.docs_per_s * 60, 1),
            "tokens_per_s": round(self.real_tokens / self.seconds, 1) if self.seconds else None,
            "padding_efficiency": round(self.real_tokens / self.computed_tokens, 4) if self.computed_tokens else None,
            "peak_memory_gib": round(self.peak_memory_bytes / 2**30, 3) if self.peak_memory_bytes is not None else None,
            "model_tflops_per_s": round(self.model_flops / self.seconds / 1e12, 4) if self.seconds else None,
            "mfu": round(self.model_flops / self.seconds / (peak_tflops * 1e12), 4) if peak_tflops and self.seconds else None,
            "hfu_computed": (
                round(self.computed_flops / self.seconds / (peak_tflops * 1e12), 4)
                if peak_tflops and self.seconds and self.computed_flops
                else None
            ),
            "oom_docs": self.oom_docs,
        }
        if self.micro_batches is not None:
            out["micro_batches"] = self.micro_batches
        out.update(self.extra)
        return out


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------
# The JQL-style baseline
# ---------------------------------------------------------------------------
class JqlBaseline:
    """The reference loop: chunks of 1000 documents in input order, padded to the chunk's longest.

    Mirrors JQL's annotation code: ``tokenizer(chunk, padding=True, truncation=True,
    max_length=8192, return_tensors="pt")``, one forward pass with the attention
    mask, CLS of the last hidden state, L2 normalisation, then each head
    (``Linear -> ReLU -> Linear``) applied separately. Same model object and
    dtype as the scorer. A chunk that runs out of CUDA memory is lost (counted in
    ``oom_docs``) and the loop goes on, so the run finishes.
    """

    def __init__(self, scorer, batch_docs: int = 1000):
        import torch

        self.embedder = scorer.embedder
        self.device = scorer.device
        self.batch_docs = batch_docs
        hs = scorer.heads
        n, width = len(hs.names), hs.width
        self.heads = []
        for i in range(n):
            head = torch.nn.Sequential(torch.nn.Linear(hs.input_dim, width), torch.nn.ReLU(), torch.nn.Linear(width, 1))
            with torch.no_grad():
                head[0].weight.copy_(hs.w1[i * width : (i + 1) * width])
                head[0].bias.copy_(hs.b1[i * width : (i + 1) * width])
                head[2].weight.copy_(hs.w2[i : i + 1])
                head[2].bias.copy_(hs.b2[i : i + 1])
            self.heads.append(head.to(self.device).eval())
        self.oom_docs = 0
        self.computed_tokens = 0

    def _forward(self, input_ids, attention_mask):
        import torch

        with torch.inference_mode():
            out = self.embedder.model(input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device))
            emb = torch.nn.functional.normalize(out.last_hidden_state[:, 0].float(), p=2, dim=1)
            return torch.cat([head(emb) for head in self.heads], dim=1).cpu().numpy()

    def _run_chunk(self, n_docs: int, make_inputs):
        import torch

        try:
            input_ids, mask = make_inputs()
            self.computed_tokens += int(input_ids.numel())
            return self._forward(input_ids, mask)
        except torch.cuda.OutOfMemoryError:
            self.oom_docs += n_docs
            torch.cuda.empty_cache()
            log.warning("baseline: CUDA OOM on a chunk of %d docs; the chunk is lost", n_docs)
            return None

    def score_texts(self, texts: list[str]) -> list:
        tok = self.embedder.tokenizer
        out = []
        for s in range(0, len(texts), self.batch_docs):
            chunk = texts[s : s + self.batch_docs]

            def make(chunk=chunk):
                enc = tok(chunk, padding=True, truncation=True, max_length=self.embedder.max_length, return_tensors="pt")
                return enc["input_ids"], enc["attention_mask"]

            out.append(self._run_chunk(len(chunk), make))
        return out

    def score_ids(self, ids: list[list[int]]) -> list:
        out = []
        for s in range(0, len(ids), self.batch_docs):
            chunk = ids[s : s + self.batch_docs]
            out.append(self._run_chunk(len(chunk), lambda chunk=chunk: self.embedder.pad(chunk)))
        return out


def _mem_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def baseline_cpu_bytes(lengths: np.ndarray, batch: int, shape: ModelShape) -> float:
    """Rough peak of the largest baseline chunk on CPU: the (b, 1, n, n) mask as bool and as float, plus activations.

    Measured once: 1,000 docs padded to 2,048 tokens (gte-small) went past 24 GB and was killed.
    """
    worst = 0.0
    for s in range(0, len(lengths), batch):
        b, n = len(lengths[s : s + batch]), float(lengths[s : s + batch].max())
        worst = max(worst, b * n * n * 5 + b * n * shape.hidden * 4 * 16)
    return worst


# ---------------------------------------------------------------------------
# Phases
# ---------------------------------------------------------------------------
@contextlib.contextmanager
def tokenizers_parallelism(on: bool):
    old = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if on else "false"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = old


def _chunks(seq, size):
    return [seq[i : i + size] for i in range(0, len(seq), size)]


def measure_tokenization(scorer, texts: list[str], batch_docs: int, parallel: bool, repeats: int = 1):
    with tokenizers_parallelism(parallel):
        scorer.tokenize(texts[: min(64, len(texts))])  # warm the thread pool
        best = math.inf
        for _ in range(repeats):
            start = time.perf_counter()
            tokenized = [scorer.tokenize(c) for c in _chunks(texts, batch_docs)]
            best = min(best, time.perf_counter() - start)
    tokens = int(sum(t.lengths.sum() for t in tokenized))
    return best, tokens, tokenized


def _stats_delta(scorer, before: dict) -> dict:
    return {k: scorer.stats[k] - before[k] for k in ("docs", "tokens", "padded_tokens", "micro_batches", "oom_splits")}


def _computed_flops_plan(shape: ModelShape, lengths: np.ndarray, scorer) -> float:
    total = 0.0
    for b in scorer.plan(lengths):
        total += len(b) * float(shape.flops(int(lengths[b[0]])))
    return total + shape.head_flops_per_doc * int((lengths > 0).sum())


def _computed_flops_chunks(shape: ModelShape, lengths: np.ndarray, size: int) -> float:
    total = 0.0
    for s in range(0, len(lengths), size):
        chunk = lengths[s : s + size]
        total += len(chunk) * float(shape.flops(int(chunk.max())))
    return total + shape.head_flops_per_doc * len(lengths)


def run_ours_model_only(scorer, tokenized_batches, shape, lengths) -> Result:
    before = dict(scorer.stats)
    with PeakMemory(scorer.device) as mem:
        start = time.perf_counter()
        for t in tokenized_batches:
            scorer._score_tokenized(t)
        _sync(scorer.device)
        seconds = time.perf_counter() - start
    d = _stats_delta(scorer, before)
    computed = sum(
        _computed_flops_plan(shape, t.lengths, scorer) for t in tokenized_batches
    )
    return Result("ours, model only", d["docs"], seconds, d["tokens"], d["padded_tokens"], shape.model_flops(lengths),
                  computed, mem.peak - mem.base, 0, d["micro_batches"], {"oom_splits": d["oom_splits"]})


def run_ours_end_to_end(scorer, texts, batch_docs, shape, lengths) -> Result:
    before = dict(scorer.stats)
    with PeakMemory(scorer.device) as mem:
        start = time.perf_counter()
        n = 0
        for frame in scorer.score_batches(_chunks(texts, batch_docs)):
            n += len(frame)
        _sync(scorer.device)
        seconds = time.perf_counter() - start
    d = _stats_delta(scorer, before)
    return Result("ours, end to end", n, seconds, d["tokens"], d["padded_tokens"], shape.model_flops(lengths), None,
                  mem.peak - mem.base, 0, d["micro_batches"], {"oom_splits": d["oom_splits"]})


def run_baseline(baseline: JqlBaseline, inputs, shape, lengths, end_to_end: bool) -> Result:
    baseline.oom_docs = 0
    baseline.computed_tokens = 0
    with PeakMemory(baseline.device) as mem:
        start = time.perf_counter()
        outs = baseline.score_texts(inputs) if end_to_end else baseline.score_ids(inputs)
        _sync(baseline.device)
        seconds = time.perf_counter() - start
    scored = sum(len(o) for o in outs if o is not None)
    name = "JQL baseline, " + ("end to end" if end_to_end else "model only")
    return Result(name, scored, seconds, int(lengths.sum()), baseline.computed_tokens, shape.model_flops(lengths),
                  _computed_flops_chunks(shape, lengths, baseline.batch_docs), mem.peak - mem.base, baseline.oom_docs)


# ---------------------------------------------------------------------------
# Spark overhead
# ---------------------------------------------------------------------------
def wait_for_spark_modules(timeout_s: float) -> None:
    import importlib

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            importlib.import_module("spark_jql.spark.api")
            importlib.import_module("spark_jql.spark.session")
            return
        except ImportError as err:
            if time.monotonic() > deadline:
                raise SystemExit(f"--spark: spark_jql.spark.api / session are not importable: {err}") from None
            log.info("waiting for spark_jql.spark modules (%s)", err)
            time.sleep(30)


def measure_spark(scorer_config, texts: list[str], master: str, arrow_batch: int, repeats: int, wait_s: float) -> dict:
    """docs/s through the Spark UDF vs the scorer alone, same data, model, cores and batch size."""
    import torch

    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    wait_for_spark_modules(wait_s)
    from .scorer import Scorer
    from .spark.api import annotate
    from .spark.session import build_session

    cores = _local_cores(master)
    import pandas as pd

    spark = build_session(master=master, app_name="spark_jql-bench",
                          conf={"spark.sql.shuffle.partitions": str(cores), "spark.ui.enabled": "false"})
    threads = torch.get_num_threads()
    torch.set_num_threads(cores)  # the scorer alone gets the cores Spark's tasks get
    try:
        scorer = Scorer(scorer_config, device="cpu")
        list(scorer.score_batches(_chunks(texts[:64], arrow_batch)))  # warm-up
        pdf = pd.DataFrame({"id": np.arange(len(texts)), "text": texts})
        df = spark.createDataFrame(pdf).repartition(cores).cache()
        df.count()

        def spark_run() -> float:
            start = time.perf_counter()
            annotate(df, scorer_config, arrow_batch_size=arrow_batch).write.format("noop").mode("overwrite").save()
            return time.perf_counter() - start

        def alone_run() -> float:
            start = time.perf_counter()
            count = sum(len(f) for f in scorer.score_batches(_chunks(texts, arrow_batch)))
            assert count == len(texts)
            return time.perf_counter() - start

        cold = spark_run()  # also loads the model once in each Python worker
        alones, runs = [], []
        for _ in range(max(1, repeats)):  # interleaved, so a change in machine load hits both
            alones.append(alone_run())
            runs.append(spark_run())
        df.unpersist()
    finally:
        torch.set_num_threads(threads)
        spark.stop()
    n = len(texts)
    alone = min(alones)
    runs = [cold] + runs
    warm = min(runs[1:])
    return {
        "master": master,
        "docs": n,
        "arrow_batch_size": arrow_batch,
        "scorer_alone_s": round(alone, 3),
        "scorer_alone_docs_per_s": round(n / alone, 2),
        "scorer_alone_torch_threads": cores,
        "spark_cold_s": round(runs[0], 3),
        "spark_warm_s": round(warm, 3),
        "spark_warm_docs_per_s": round(n / warm, 2),
        "ratio_spark_over_scorer_warm": round(alone / warm, 4),
        "ratio_spark_over_scorer_cold": round(alone / runs[0], 4),
        "ms_per_doc_scorer_alone": round(1000 * alone / n, 3),
        "scorer_alone_runs_s": [round(x, 2) for x in alones],
        "spark_runs_s": [round(x, 2) for x in runs],
    }


def _local_cores(master: str) -> int:
    if master.startswith("local[") and master.endswith("]"):
        inner = master[6:-1]
        return os.cpu_count() or 1 if inner == "*" else int(inner.split(",")[0])
    return 1


# ---------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------
def device_description(device) -> tuple[str, float | None]:
    import torch

    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        total = torch.cuda.get_device_properties(device).total_memory
        peak = None
        upper = name.upper()
        for key, value in BF16_PEAK_TFLOPS.items():
            if key.upper() in upper:
                peak = value
                break
        return f"{name} ({total / 2**30:.0f} GiB), CUDA {torch.version.cuda}", peak
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"CPU: {cpu}, {len(os.sched_getaffinity(0))} cores, torch threads {torch.get_num_threads()}", None


def format_table(rows: list[dict], keys: list[str]) -> str:
    widths = {k: max(len(k), *(len(_fmt(r.get(k))) for r in rows)) for k in keys}
    line = " | ".join(k.ljust(widths[k]) for k in keys)
    sep = "-|-".join("-" * widths[k] for k in keys)
    body = "\n".join(" | ".join(_fmt(r.get(k)).ljust(widths[k]) for k in keys) for r in rows)
    return f"{line}\n{sep}\n{body}"


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def gpu_sharing_advice(tok_docs_per_s_core: float, gpu_docs_per_s: float, measured: bool) -> dict:
    """How many CPU cores of tokenization one GPU needs, and what that means for task sharing."""
    cores = gpu_docs_per_s / tok_docs_per_s_core if tok_docs_per_s_core else float("inf")
    return {
        "gpu_docs_per_s": round(gpu_docs_per_s, 1),
        "gpu_docs_per_s_source": "measured (ours, model only)" if measured else "estimated from FLOPs at the assumed MFU",
        "tokenization_docs_per_s_per_core": round(tok_docs_per_s_core, 1),
        "tokenizer_cores_to_keep_gpu_busy": round(cores, 1),
        "one_task_per_gpu_busy_fraction_at_1_core": round(min(1.0, 1 / cores), 3) if cores else 1.0,
    }


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="spark-jql bench",
        description="Throughput of the JQL scorer vs a JQL-style baseline, with random weights (no downloads).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--arch", choices=ARCH_CHOICES, default="gte-small", help="encoder architecture (random weights)")
    p.add_argument("--docs", type=int, default=2000, help="documents in the workload")
    p.add_argument("--workload", choices=("lognormal", "corpus"), default="lognormal")
    p.add_argument("--mean-tokens", type=float, default=690.0, help="lognormal: mean token count after capping")
    p.add_argument("--sigma", type=float, default=1.0, help="lognormal: sigma of log(tokens)")
    p.add_argument("--min-tokens", type=int, default=16, help="lognormal: floor on target token counts")
    p.add_argument("--max-length", type=int, default=8192, help="truncation length (JQL: 8192) and lognormal cap")
    p.add_argument("--corpus", nargs="*", type=Path, default=None, help="JSON-lines files with a 'text' field")
    p.add_argument("--tokenizer", default=None, help="a local tokenizer directory to use instead of training one")
    p.add_argument("--tokenizer-vocab", type=int, default=16000, help="vocab of the tokenizer trained on the corpus")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"))
    p.add_argument("--batch-docs", type=int, default=2048, help="documents per batch handed to the scorer (Arrow batch)")
    p.add_argument("--token-budget", default="auto", help="scorer token budget: 'auto' or an integer")
    p.add_argument("--max-batch-docs", type=int, default=4096, help="scorer: max documents per micro-batch")
    p.add_argument("--baseline-batch", type=int, default=1000, help="JQL baseline: documents per unsorted chunk")
    p.add_argument("--no-baseline", action="store_true", help="skip the JQL baseline")
    p.add_argument("--no-end-to-end", action="store_true", help="skip the end-to-end (text in) phase")
    p.add_argument("--repeats", type=int, default=1, help="timed repetitions of every phase (fastest kept)")
    p.add_argument("--peak-tflops", type=float, default=None, help="device bf16 peak for MFU (auto for known GPUs)")
    p.add_argument("--assume-mfu", type=float, default=0.4, help="MFU assumed when estimating a GPU's docs/s")
    p.add_argument("--assume-gpu", default="H200", help="GPU whose docs/s is estimated when running on CPU")
    p.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "spark_jql" / "bench")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--spark", action="store_true", help="also measure Spark UDF docs/s vs the scorer alone")
    p.add_argument("--spark-master", default="local[1]")
    p.add_argument("--spark-repeats", type=int, default=3, help="interleaved scorer-alone / Spark runs (fastest kept)")
    p.add_argument("--spark-docs", type=int, default=None, help="documents for the Spark phase (default: --docs)")
    p.add_argument("--spark-wait", type=float, default=0.0, help="seconds to wait for spark_jql.spark to appear")
    p.add_argument("--json", type=Path, default=None, help="also write all results as JSON here")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import torch

    from .config import ScorerConfig
    from .scorer import Scorer

    if args.threads:
        torch.set_num_threads(args.threads)
    report: dict = {"command": "python -m spark_jql.bench " + " ".join(sys.argv[1:] if argv is None else argv)}
    t0 = time.perf_counter()

    files = args.corpus if args.corpus is not None else default_corpus_files()
    corpus = read_corpus(files)
    bundle = build_bundle(args.arch, args.cache_dir, corpus, args.tokenizer_vocab, args.seed, args.tokenizer)
    budget = args.token_budget if args.token_budget == "auto" else int(args.token_budget)
    scorer_fields = dict(
        embedder={**bundle["embedder"], "max_length": args.max_length, "dtype": args.dtype, "device": args.device},
        heads=bundle["heads"], token_budget=budget, max_batch_docs=args.max_batch_docs,
    )
    scorer_config = ScorerConfig.model_validate(scorer_fields)
    scorer = Scorer(scorer_config)
    shape = model_shape(scorer)
    device_name, peak = device_description(scorer.device)
    peak = args.peak_tflops or peak

    # -- workload ------------------------------------------------------------
    if args.workload == "lognormal":
        sample = corpus[: min(300, len(corpus))]
        sample_ids = scorer.embedder.tokenizer(sample, truncation=False)["input_ids"]
        cpt = sum(map(len, sample)) / sum(map(len, sample_ids))
        targets, mu = target_lengths(args.docs, args.mean_tokens, args.sigma, args.max_length, args.min_tokens, args.seed)
        pool = " ".join(corpus)
        texts = lognormal_texts(pool, targets - 2, cpt, args.seed)  # -2: <s> and </s>
        workload = {"kind": "lognormal", "mu": round(mu, 4), "sigma": args.sigma, "target_mean": args.mean_tokens,
                    "cap": args.max_length, "min_tokens": args.min_tokens, "chars_per_token": round(cpt, 3),
                    "target_mean_sampled": round(float(targets.mean()), 1)}
    else:
        texts = [corpus[i % len(corpus)] for i in range(args.docs)]
        workload = {"kind": "corpus"}
    workload["files"] = [str(f) for f in files] or ["built-in sample corpus"]

    # -- 1. tokenization -----------------------------------------------------
    serial_s, tokens, tokenized = measure_tokenization(scorer, texts, args.batch_docs, parallel=False, repeats=args.repeats)
    parallel_s, _, _ = measure_tokenization(scorer, texts, args.batch_docs, parallel=True, repeats=args.repeats)
    lengths = np.concatenate([t.lengths for t in tokenized])
    workload.update(
        docs=len(texts), mean_tokens=round(float(lengths.mean()), 1), median_tokens=float(np.median(lengths)),
        p99_tokens=float(np.percentile(lengths, 99)), max_tokens=int(lengths.max()),
        truncated_docs=int(sum(t.truncated.sum() for t in tokenized)), real_tokens=int(lengths.sum()),
    )
    cores = len(os.sched_getaffinity(0))
    tok = {
        "serial_docs_per_s": round(len(texts) / serial_s, 1),
        "serial_tokens_per_s": round(tokens / serial_s, 0),
        "parallel_docs_per_s": round(len(texts) / parallel_s, 1),
        "parallel_tokens_per_s": round(tokens / parallel_s, 0),
        "parallel_cores": cores,
    }

    # -- warm-up (CUDA context, kernels, allocator) ---------------------------
    warm = texts[: min(len(texts), 256)]
    scorer.score(warm)
    baseline = None if args.no_baseline else JqlBaseline(scorer, args.baseline_batch)
    baseline_note = None
    if baseline is not None and scorer.device.type == "cpu":
        need = baseline_cpu_bytes(lengths, args.baseline_batch, shape)
        avail = _mem_available()
        if avail and need > 0.6 * avail:
            baseline_note = (f"baseline skipped: its largest chunk needs ~{need / 2**30:.1f} GiB on CPU (attention mask "
                             f"batch x n^2), {avail / 2**30:.1f} GiB available; use a smaller --baseline-batch or --max-length")
            print(baseline_note, file=sys.stderr)
            baseline = None
    if baseline is not None:
        baseline.score_texts(warm[: min(len(warm), 64)])
    _sync(scorer.device)

    # -- 2. model only ---------------------------------------------------------
    def best(run):
        runs = []
        for _ in range(max(1, args.repeats)):
            gc.collect()
            runs.append(run())
        return min(runs, key=lambda r: r.seconds)

    results = [best(lambda: run_ours_model_only(scorer, tokenized, shape, lengths))]
    ids = [row for t in tokenized for row in t.ids]
    if baseline is not None:
        results.append(best(lambda: run_baseline(baseline, ids, shape, lengths, end_to_end=False)))
    # -- 3. end to end ---------------------------------------------------------
    if not args.no_end_to_end:
        results.append(best(lambda: run_ours_end_to_end(scorer, texts, args.batch_docs, shape, lengths)))
        if baseline is not None:
            results.append(best(lambda: run_baseline(baseline, texts, shape, lengths, end_to_end=True)))

    rows = [r.row(peak) for r in results]
    ratios = {}
    by = {r["name"]: r for r in rows}
    for phase in ("model only", "end to end"):
        a, b = by.get(f"ours, {phase}"), by.get(f"JQL baseline, {phase}")
        if a and b and b["docs_per_s"]:
            ratios[phase] = round(a["docs_per_s"] / b["docs_per_s"], 2)

    # -- GPU sharing advice ----------------------------------------------------
    flops_per_doc = shape.model_flops(lengths) / len(lengths)
    if scorer.device.type == "cuda":
        gpu_docs_s, measured = by["ours, model only"]["docs_per_s"], True
    else:  # what the production model (arctic-embed-m-v2.0) would need on the assumed GPU, on these lengths
        gpu_peak = BF16_PEAK_TFLOPS.get(args.assume_gpu, 989.4)
        arctic_flops = arch_shape("arctic-embed-m-v2.0").model_flops(lengths) / len(lengths)
        gpu_docs_s, measured = gpu_peak * 1e12 * args.assume_mfu / arctic_flops, False
    advice = gpu_sharing_advice(len(texts) / serial_s, gpu_docs_s, measured)
    if not measured:
        advice["assumed"] = f"arctic-embed-m-v2.0 on {args.assume_gpu} bf16 peak {BF16_PEAK_TFLOPS.get(args.assume_gpu, 989.4)} TFLOP/s x MFU {args.assume_mfu}"

    report.update(
        device=device_name, dtype=str(scorer.embedder.dtype).replace("torch.", ""), peak_tflops=peak,
        torch=torch.__version__, python=platform.python_version(), architecture=args.arch,
        model={"params_total": shape.params_total, "params_non_embedding": shape.params_non_embedding,
               "layers": shape.layers, "hidden": shape.hidden, "gflops_per_doc_mean": round(flops_per_doc / 1e9, 3)},
        scorer={"token_budget": scorer.token_budget, "max_batch_docs": scorer.config.max_batch_docs,
                "batch_docs": args.batch_docs},
        baseline_batch=args.baseline_batch, baseline_note=baseline_note, workload=workload, tokenization=tok, results=rows, ratio_ours_over_baseline=ratios,
        gpu_sharing=advice,
    )

    # -- 4. Spark --------------------------------------------------------------
    if args.spark:
        del scorer, baseline
        gc.collect()
        spark_texts = texts[: args.spark_docs] if args.spark_docs else texts
        cpu_cfg = scorer_config.model_copy(update={"embedder": scorer_config.embedder.model_copy(update={"device": "cpu"})})
        report["spark"] = measure_spark(cpu_cfg, spark_texts, args.spark_master, args.batch_docs, args.spark_repeats,
                                        args.spark_wait)
    report["wall_seconds"] = round(time.perf_counter() - t0, 1)
    print_report(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    return 0


def print_report(r: dict) -> None:
    w = r["workload"]
    print(f"command: {r['command']}")
    print(f"device: {r['device']}; dtype {r['dtype']}; bf16 peak {r['peak_tflops'] or 'n/a'} TFLOP/s; torch {r['torch']}")
    m = r["model"]
    print(f"model: {r['architecture']} (random weights), {m['params_total'] / 1e6:.1f}M params, "
          f"{m['params_non_embedding'] / 1e6:.1f}M outside embeddings, {m['layers']} layers x {m['hidden']}; "
          f"{m['gflops_per_doc_mean']} GFLOP/doc on this workload")
    desc = (f"lognormal mu={w['mu']} sigma={w['sigma']} capped at {w['cap']} (target mean {w['target_mean']})"
            if w["kind"] == "lognormal" else "corpus documents as they are")
    print(f"workload: {w['docs']} docs, {desc}; measured tokens: mean {w['mean_tokens']}, median {w['median_tokens']}, "
          f"p99 {w['p99_tokens']}, max {w['max_tokens']}, truncated {w['truncated_docs']}")
    s = r["scorer"]
    print(f"scorer: token budget {s['token_budget']}, max {s['max_batch_docs']} docs/micro-batch, {s['batch_docs']} docs/batch; "
          f"baseline: {r['baseline_batch']} unsorted docs/chunk padded to the longest")
    t = r["tokenization"]
    print(f"tokenization: 1 core {t['serial_docs_per_s']:,.0f} docs/s ({t['serial_tokens_per_s']:,.0f} tok/s); "
          f"{t['parallel_cores']} cores {t['parallel_docs_per_s']:,.0f} docs/s ({t['parallel_tokens_per_s']:,.0f} tok/s)")
    keys = ["name", "docs", "seconds", "docs_per_s", "docs_per_min", "tokens_per_s", "padding_efficiency",
            "peak_memory_gib", "model_tflops_per_s", "mfu", "oom_docs"]
    print(format_table(r["results"], keys))
    for phase, ratio in r["ratio_ours_over_baseline"].items():
        print(f"ours / baseline, {phase}: {ratio}x")
    g = r["gpu_sharing"]
    print(f"GPU feeding: GPU needs {g['gpu_docs_per_s']:,.0f} docs/s ({g['gpu_docs_per_s_source']}"
          + (f", {g['assumed']}" if "assumed" in g else "") + f"); one tokenizer core gives "
          f"{g['tokenization_docs_per_s_per_core']:,.0f} docs/s -> {g['tokenizer_cores_to_keep_gpu_busy']} cores per GPU")
    if "spark" in r:
        sp = r["spark"]
        print(f"spark ({sp['master']}, {sp['docs']} docs, arrow batch {sp['arrow_batch_size']}): scorer alone "
              f"{sp['scorer_alone_docs_per_s']:,.1f} docs/s; Spark UDF warm {sp['spark_warm_docs_per_s']:,.1f} docs/s "
              f"-> ratio {sp['ratio_spark_over_scorer_warm']} (cold, incl. worker model load: {sp['ratio_spark_over_scorer_cold']})")
    print(f"wall: {r['wall_seconds']} s")


if __name__ == "__main__":
    sys.exit(main())
