"""The bench's packed rows and FLOP count, and the GPU check's CPU smoke mode (no timing is asserted)."""

from __future__ import annotations

import json

import numpy as np

from spark_jql.devtools.bench.measure import arch_shape


def test_cls_exact_last_layer_flops():
    """arctic-embed-m-v2.0 (12 layers): the CLS-only last layer saves about 1/12 of the linear FLOPs, less its K/V."""
    shape = arch_shape("arctic-embed-m-v2.0")
    n = np.array([690.0, 8192.0])
    full, exact = shape.flops(n), shape.flops(n, cls_exact=True)
    per_layer = shape.params_non_embedding / shape.layers
    linear_saved = 2 * (per_layer - shape.kv_params_per_layer) * (n - 1)
    attention_saved = 4 * shape.hidden * (n**2 - n)
    np.testing.assert_allclose(full - exact, linear_saved + attention_saved)
    share = linear_saved / (2 * shape.params_non_embedding * n)
    assert np.all((share > 0.07) & (share < 1 / 12))  # 1/12 of the layers, K and V projections still over all tokens
    assert shape.flops(1, cls_exact=True) == shape.flops(1)  # one token: nothing to skip


def test_gpu_check_smoke_writes_the_numbers(gte_bundle, tmp_path):
    from spark_jql.devtools.bench import gpu_check

    out = tmp_path / "gpu_check.json"
    tokenizer = gte_bundle["embedder"]["model"]  # a trained tokenizer: the check skips training one
    assert gpu_check.main(["--smoke", "--docs", "24", "--json", str(out), "--cache-dir", str(tmp_path / "cache"),
                           "--tokenizer", tokenizer]) == 0
    report = json.loads(out.read_text())
    check = report["gpu_check"]
    rows = check["rows"]
    assert {"ours padded, model only", "ours packed, model only", "JQL baseline, model only",
            "ours padded, end to end", "ours packed, end to end", "JQL baseline, end to end"} <= set(rows)
    assert rows["ours packed, model only"]["padding_efficiency"] == 1.0
    assert rows["ours padded, model only"]["padding_efficiency"] < 1.0
    for row in rows.values():
        assert row["docs_per_min"] > 0 and row["oom_docs"] == 0
    assert "packed over padded, model only" in check["ratios"]
    assert check["tokenization_docs_per_s_per_core"] > 0 and check["tokenizer_cores_per_gpu"] > 0
    model = report["model"]
    assert model["gflops_per_doc_mean_cls_exact_last_layer"] < model["gflops_per_doc_mean"]
