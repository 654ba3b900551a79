"""``python -m spark_jql.devtools.bench``: options and the run that ties the phases together."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from spark_jql.devtools.bench.baseline import (
    JqlBaseline,
    _mem_available,
    baseline_cpu_bytes,
)
from spark_jql.devtools.bench.measure import (
    ARCH_CHOICES,
    BF16_PEAK_TFLOPS,
    _sync,
    arch_shape,
    model_shape,
)
from spark_jql.devtools.bench.phases import (
    measure_spark,
    measure_tokenization,
    run_baseline,
    run_ours_end_to_end,
    run_ours_model_only,
)
from spark_jql.devtools.bench.report import (
    device_description,
    format_table,
    gpu_sharing_advice,
    write_json,
)
from spark_jql.devtools.bench.workload import (
    build_bundle,
    default_corpus_files,
    lognormal_texts,
    read_corpus,
    target_lengths,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="spark-jql bench",
        description="Throughput of the JQL scorer vs a JQL-style baseline, with random weights (no downloads).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="Other benchmarks: 'cluster-sim' (how busy annotate keeps N simulated accelerator slots; "
               "'cluster-sim --help').",
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
    p.add_argument("--layouts", default="padded,packed",
                   help="scorer layouts to measure, comma-separated (padded, packed); packed only where the model has it")
    p.add_argument("--baseline-batch", type=int, default=1000, help="JQL baseline: documents per unsorted chunk")
    p.add_argument("--baseline-docs", type=int, default=None, help="JQL baseline: score only the first N documents")
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


SUBCOMMANDS = {  # name -> module with main(argv)
    "cluster-sim": "spark_jql.devtools.bench.cluster_sim",
    "gpu-check": "spark_jql.devtools.bench.gpu_check",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in SUBCOMMANDS:
        import importlib

        return importlib.import_module(SUBCOMMANDS[argv[0]]).main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import torch

    from spark_jql.config import ScorerConfig
    from spark_jql.scoring.scorer import Scorer

    if args.threads:
        torch.set_num_threads(args.threads)
    report: dict = {"command": "python -m spark_jql.devtools.bench " + " ".join(argv)}
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
    from spark_jql.scoring.packed import supports_packed

    layouts = [lay.strip() for lay in args.layouts.split(",") if lay.strip()]
    if "packed" in layouts and not supports_packed(scorer.embedder.model):
        print(f"layout packed skipped: not available for {args.arch}", file=sys.stderr)
        layouts.remove("packed")
    warm = texts[: min(len(texts), 256)]
    for layout in layouts:
        scorer.embedder.set_layout(layout)
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

    results = []
    for layout in layouts:
        scorer.embedder.set_layout(layout)
        results.append(best(lambda: run_ours_model_only(scorer, tokenized, shape, lengths)))
    ids = [row for t in tokenized for row in t.ids]
    n_base = min(len(ids), args.baseline_docs or len(ids))
    if baseline is not None:
        results.append(best(lambda: run_baseline(baseline, ids[:n_base], shape, lengths[:n_base], end_to_end=False)))
    # -- 3. end to end ---------------------------------------------------------
    if not args.no_end_to_end:
        for layout in layouts:
            scorer.embedder.set_layout(layout)
            results.append(best(lambda: run_ours_end_to_end(scorer, texts, args.batch_docs, shape, lengths)))
        if baseline is not None:
            results.append(best(lambda: run_baseline(baseline, texts[:n_base], shape, lengths[:n_base], end_to_end=True)))

    rows = [r.row(peak) for r in results]
    ratios = {}
    by = {r["name"]: r for r in rows}
    for phase in ("model only", "end to end"):
        base = by.get(f"JQL baseline, {phase}")
        for layout in layouts:
            a = by.get(f"ours {layout}, {phase}")
            if a and base and base["docs_per_s"]:
                ratios[f"{layout}, {phase}"] = round(a["docs_per_s"] / base["docs_per_s"], 2)
        a, b = by.get(f"ours packed, {phase}"), by.get(f"ours padded, {phase}")
        if a and b and b["docs_per_s"]:
            ratios[f"packed over padded, {phase}"] = round(a["docs_per_s"] / b["docs_per_s"], 2)

    # -- GPU sharing advice ----------------------------------------------------
    flops_per_doc = shape.model_flops(lengths) / len(lengths)
    if scorer.device.type == "cuda":
        gpu_docs_s, measured = max(by[f"ours {lay}, model only"]["docs_per_s"] for lay in layouts), True
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
               "layers": shape.layers, "hidden": shape.hidden, "gflops_per_doc_mean": round(flops_per_doc / 1e9, 3),
               "gflops_per_doc_mean_cls_exact_last_layer":
                   round(shape.model_flops(lengths, cls_exact=True) / len(lengths) / 1e9, 3)},
        scorer={"token_budget": scorer.token_budget, "max_batch_docs": scorer.config.max_batch_docs,
                "batch_docs": args.batch_docs, "layouts": layouts, "pooling": scorer.embedder.config.pooling},
        baseline_docs=n_base,
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
        write_json(args.json, report)
    return 0


def print_report(r: dict) -> None:
    w = r["workload"]
    print(f"command: {r['command']}")
    print(f"device: {r['device']}; dtype {r['dtype']}; bf16 peak {r['peak_tflops'] or 'n/a'} TFLOP/s; torch {r['torch']}")
    m = r["model"]
    print(f"model: {r['architecture']} (random weights), {m['params_total'] / 1e6:.1f}M params, "
          f"{m['params_non_embedding'] / 1e6:.1f}M outside embeddings, {m['layers']} layers x {m['hidden']}; "
          f"{m['gflops_per_doc_mean']} GFLOP/doc on this workload "
          f"({m['gflops_per_doc_mean_cls_exact_last_layer']} with the last layer for the CLS row only)")
    desc = (f"lognormal mu={w['mu']} sigma={w['sigma']} capped at {w['cap']} (target mean {w['target_mean']})"
            if w["kind"] == "lognormal" else "corpus documents as they are")
    print(f"workload: {w['docs']} docs, {desc}; measured tokens: mean {w['mean_tokens']}, median {w['median_tokens']}, "
          f"p99 {w['p99_tokens']}, max {w['max_tokens']}, truncated {w['truncated_docs']}")
    s = r["scorer"]
    print(f"scorer: token budget {s['token_budget']}, max {s['max_batch_docs']} docs/micro-batch, {s['batch_docs']} docs/batch; "
          f"layouts {', '.join(s['layouts'])}; baseline: {r['baseline_batch']} unsorted docs/chunk padded to the longest, "
          f"first {r['baseline_docs']} docs")
    t = r["tokenization"]
    print(f"tokenization: 1 core {t['serial_docs_per_s']:,.0f} docs/s ({t['serial_tokens_per_s']:,.0f} tok/s); "
          f"{t['parallel_cores']} cores {t['parallel_docs_per_s']:,.0f} docs/s ({t['parallel_tokens_per_s']:,.0f} tok/s)")
    keys = ["name", "docs", "seconds", "docs_per_s", "docs_per_min", "tokens_per_s", "padding_efficiency",
            "peak_memory_gib", "model_tflops_per_s", "mfu", "oom_docs", "oom_splits"]
    print(format_table(r["results"], keys))
    for phase, ratio in r["ratio_ours_over_baseline"].items():
        print(f"ratio {phase}: {ratio}x" if phase.startswith("packed over") else f"ours {phase} / baseline: {ratio}x")
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
