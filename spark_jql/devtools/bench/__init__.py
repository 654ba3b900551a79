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

Run ``python -m spark_jql.devtools.bench --help``; results and commands are in
docs/benchmarks.md. Benchmarks print numbers; the tests never time anything.
"""

from spark_jql.devtools.bench.cli import main

__all__ = ["main"]
