"""Regression heads: safe loading of JQL Lightning checkpoints, fused evaluation, Hub resolution offline."""

from __future__ import annotations

import json
import os
import shlex
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from spark_jql.config import HeadConfig, ScorerConfig
from spark_jql.devtools.tiny_models import random_head
from spark_jql.errors import CheckpointError, ModelNotAvailableError
from spark_jql.scoring.heads import (
    HEAD_KEYS,
    HeadSet,
    HeadWeights,
    load_head_file,
    load_lightning_checkpoint,
    load_safetensors_head,
    save_lightning_checkpoint,
    save_safetensors_head,
)
from spark_jql.scoring.hub import resolve_head_file


def reference_head(path: Path) -> torch.nn.Sequential:
    """The JQL head as an explicit Linear -> ReLU -> Linear, read with plain torch.load."""
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    hidden, dim = state["layer1.weight"].shape
    mlp = torch.nn.Sequential(torch.nn.Linear(dim, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))
    mlp.load_state_dict(
        {
            "0.weight": state["layer1.weight"], "0.bias": state["layer1.bias"],
            "2.weight": state["layer2.weight"], "2.bias": state["layer2.bias"],
        }
    )
    return mlp.float().eval()


def lightning_payload(head: HeadWeights, dtype: torch.dtype = torch.float32) -> dict:
    """What ``Trainer.save_checkpoint`` writes for a LightningModule with layer1/layer2 (Adam, ModelCheckpoint)."""
    state = OrderedDict((k, v.to(dtype)) for k, v in head.state_dict().items())
    return {
        "epoch": 4,
        "global_step": 1250,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": state,
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 5, "completed": 4}}}},
        "callbacks": {
            "ModelCheckpoint{'monitor': 'val_loss', 'mode': 'min'}": {
                "monitor": "val_loss", "best_model_score": torch.tensor(0.31), "best_model_path": "/ckpt/best.ckpt",
                "kth_best_model_path": "", "best_k_models": {"/ckpt/best.ckpt": torch.tensor(0.31)},
            }
        },
        "optimizer_states": [
            {
                "state": {i: {"step": torch.tensor(1250.0), "exp_avg": torch.zeros_like(v), "exp_avg_sq": torch.zeros_like(v)}
                          for i, v in enumerate(state.values())},
                "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "amsgrad": False,
                                  "foreach": None, "params": [0, 1, 2, 3]}],
            }
        ],
        "lr_schedulers": [],
        "hparams_name": "kwargs",
        "hyper_parameters": {"input_dim": head.input_dim, "hidden_dim": head.hidden_dim, "lr": 1e-3},
    }


def assert_same_head(a: HeadWeights, b: HeadWeights) -> None:
    assert a.name == b.name
    for x, y in zip(a.state_dict().values(), b.state_dict().values()):
        assert x.dtype == torch.float32
        torch.testing.assert_close(x, y, rtol=0, atol=0)


# -- loading ------------------------------------------------------------------
def test_lightning_checkpoint_loads_and_matches_reference(tmp_path):
    head = random_head("Edu-JQL-Gemma-SF", input_dim=32, hidden_dim=1000, seed=3)
    path = tmp_path / "edu-gemma-snowflake-balanced.ckpt"
    torch.save(lightning_payload(head), path)

    loaded = load_head_file(path, "Edu-JQL-Gemma-SF")
    assert (loaded.input_dim, loaded.hidden_dim) == (32, 1000)
    assert_same_head(loaded, head)

    x = torch.nn.functional.normalize(torch.randn(17, 32, generator=torch.Generator().manual_seed(0)), dim=-1)
    with torch.no_grad():
        expected = reference_head(path)(x)[:, 0]
    torch.testing.assert_close(HeadSet([loaded])(x)[:, 0], expected, rtol=0, atol=1e-5)


def test_bfloat16_checkpoint_is_read_as_float32(tmp_path):
    head = random_head("h", input_dim=16, hidden_dim=8, seed=1)
    path = tmp_path / "h.ckpt"
    torch.save(lightning_payload(head, torch.bfloat16), path)
    loaded = load_lightning_checkpoint(path, "h")
    for got, original in zip(loaded.state_dict().values(), head.state_dict().values()):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, original.to(torch.bfloat16).float(), rtol=0, atol=0)


def test_bare_state_dict_loads(tmp_path):
    head = random_head("h", input_dim=16, hidden_dim=8, seed=1)
    path = tmp_path / "h.pt"
    torch.save(head.state_dict(), path)
    assert_same_head(load_head_file(path, "h"), head)


def test_headset_mixes_hidden_sizes(tmp_path):
    """Heads of different widths share one fused pass; each column equals that head alone."""
    widths = [1000, 64, 7]
    paths = []
    for k, width in enumerate(widths):
        paths.append(save_lightning_checkpoint(random_head(f"h{k}", 32, width, seed=10 + k), tmp_path / f"h{k}.ckpt"))
    heads = [load_lightning_checkpoint(p, f"h{k}") for k, p in enumerate(paths)]
    assert [h.hidden_dim for h in heads] == widths  # inferred from the tensors, not from hyper-parameters

    fused = HeadSet(heads)
    assert fused.names == ["h0", "h1", "h2"] and fused.input_dim == 32
    x = torch.nn.functional.normalize(torch.randn(40, 32, generator=torch.Generator().manual_seed(1)), dim=-1)
    out = fused(x)
    assert out.shape == (40, 3) and out.dtype == torch.float32
    with torch.no_grad():
        for k, path in enumerate(paths):
            expected = reference_head(path)(x)[:, 0]
            torch.testing.assert_close(out[:, k], expected, rtol=0, atol=1e-5)
            # The fused pass is also the same as a HeadSet of that head alone (zero padding is exact).
            torch.testing.assert_close(out[:, k], HeadSet([heads[k]])(x)[:, 0], rtol=0, atol=1e-6)
    # Distinct heads give distinct scores: the comparison above could tell them apart.
    assert (out[:, 0] - out[:, 1]).abs().max() > 1e-2


def test_headset_rejects_mixed_input_sizes():
    with pytest.raises(CheckpointError, match="disagree on input size"):
        HeadSet([random_head("a", 32, 8), random_head("b", 48, 8)])
    with pytest.raises(ValueError):
        HeadSet([])


# -- refusing what is not a head ---------------------------------------------------
class _RunsShell:
    """Unpickling this object runs a shell command (as a malicious checkpoint would)."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_pickled_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    payload = lightning_payload(random_head("evil", 16, 8))
    payload["hyper_parameters"]["loss"] = _RunsShell(f"touch {shlex.quote(str(marker))}")
    torch.save(payload, path)

    with pytest.raises(CheckpointError) as info:
        load_head_file(path, "evil")
    assert str(path) in str(info.value) and "refusing" in str(info.value)
    assert not marker.exists()

    # The payload is live: an unsafe load really would have run it.
    torch.load(path, map_location="cpu", weights_only=False)
    assert marker.exists()


class _Harmless:
    def __init__(self, value=0):
        self.value = value


def test_objects_allowed_by_torch_are_still_refused(tmp_path):
    """Even a class somebody registered as a torch safe global is not a tensor or plain value."""
    path = tmp_path / "odd.ckpt"
    payload = lightning_payload(random_head("odd", 16, 8))
    payload["hyper_parameters"]["extra"] = _Harmless(3)
    torch.save(payload, path)
    with torch.serialization.safe_globals([_Harmless]):
        with pytest.raises(CheckpointError) as info:
            load_lightning_checkpoint(path, "odd")
    assert str(path) in str(info.value) and "_Harmless" in str(info.value)


def test_missing_file_names_path(tmp_path):
    for suffix in (".ckpt", ".safetensors"):
        path = tmp_path / f"absent{suffix}"
        with pytest.raises(CheckpointError) as info:
            load_head_file(path, "absent")
        assert str(path) in str(info.value) and "not found" in str(info.value)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_corrupt_checkpoint_names_path(tmp_path, damage):
    good = save_lightning_checkpoint(random_head("h", 16, 8), tmp_path / "good.ckpt")
    data = good.read_bytes()
    path = tmp_path / f"{damage}.ckpt"
    path.write_bytes({"truncated": data[: len(data) // 2], "garbage": bytes(range(256)) * 8, "empty": b""}[damage])
    with pytest.raises(CheckpointError) as info:
        load_head_file(path, "h")
    assert str(path) in str(info.value)


def test_corrupt_safetensors_names_path(tmp_path):
    good = save_safetensors_head(random_head("h", 16, 8), tmp_path / "good.safetensors")
    path = tmp_path / "bad.safetensors"
    path.write_bytes(good.read_bytes()[:-40])
    with pytest.raises(CheckpointError) as info:
        load_head_file(path, "h")
    assert str(path) in str(info.value)


@pytest.mark.parametrize("drop", HEAD_KEYS)
def test_missing_keys_named(tmp_path, drop):
    payload = lightning_payload(random_head("h", 16, 8))
    del payload["state_dict"][drop]
    path = tmp_path / "partial.ckpt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError) as info:
        load_head_file(path, "h")
    assert drop in str(info.value) and str(path) in str(info.value)


def test_prefixed_keys_are_missing_keys(tmp_path):
    payload = lightning_payload(random_head("h", 16, 8))
    payload["state_dict"] = OrderedDict((f"model.{k}", v) for k, v in payload["state_dict"].items())
    path = tmp_path / "prefixed.ckpt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="model.layer1.weight"):
        load_head_file(path, "h")


@pytest.mark.parametrize(
    "key, shape",
    [("layer2.weight", (2, 8)), ("layer1.bias", (9,)), ("layer2.bias", (2,)), ("layer1.weight", (8,))],
)
def test_wrong_shapes_rejected(tmp_path, key, shape):
    payload = lightning_payload(random_head("h", 16, 8))
    payload["state_dict"][key] = torch.zeros(shape)
    path = tmp_path / "shape.ckpt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="is not Linear"):
        load_head_file(path, "h")


def test_non_dict_payload_rejected(tmp_path):
    path = tmp_path / "tensor.ckpt"
    torch.save(torch.zeros(3), path)
    with pytest.raises(CheckpointError) as info:
        load_head_file(path, "h")
    assert str(path) in str(info.value)


def test_unknown_file_type_rejected(tmp_path):
    path = tmp_path / "head.bin"
    path.write_bytes(b"x")
    with pytest.raises(CheckpointError, match=r"unknown head file type '\.bin'"):
        load_head_file(path, "h")


# -- writing --------------------------------------------------------------------
def test_safetensors_round_trip(tmp_path):
    head = random_head("mine", input_dim=24, hidden_dim=12, seed=5)
    path = save_safetensors_head(head, tmp_path / "sub" / "mine.safetensors", trained_on="fineweb-edu", spearman=0.5)
    assert path.is_file()
    info = json.loads(path.with_suffix(".json").read_text())
    assert info == {
        "name": "mine", "input_dim": 24, "hidden_dim": 12, "format": "spark_jql-head-v1",
        "trained_on": "fineweb-edu", "spearman": 0.5,
    }
    assert_same_head(load_safetensors_head(path, "mine"), head)
    assert_same_head(load_head_file(path, "mine"), head)


def test_lightning_round_trip(tmp_path):
    head = random_head("mine", input_dim=24, hidden_dim=12, seed=6)
    path = save_lightning_checkpoint(head, tmp_path / "mine.ckpt", {"embedder": "tiny", "lr": 3e-4})
    assert_same_head(load_lightning_checkpoint(path, "mine"), head)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert set(raw["state_dict"]) == set(HEAD_KEYS)
    assert raw["hyper_parameters"] == {"input_dim": 24, "hidden_dim": 12, "embedder": "tiny", "lr": 3e-4}


# -- heads against the embedder ------------------------------------------------------
def test_input_dim_mismatch_with_embedder(gte_bundle, tmp_path):
    path = save_lightning_checkpoint(random_head("wide", input_dim=48, hidden_dim=16), tmp_path / "wide.ckpt")
    config = ScorerConfig.model_validate({**gte_bundle, "heads": [{"name": "wide", "path": str(path)}]})
    from spark_jql.scoring.scorer import Scorer

    with pytest.raises(CheckpointError) as info:
        Scorer(config, device="cpu")
    msg = str(info.value)
    embedder_dim = json.loads((Path(gte_bundle["embedder"]["model"]) / "config.json").read_text())["hidden_size"]
    assert embedder_dim != 48
    assert "48-dimensional" in msg and f"{embedder_dim}-dimensional" in msg and "wide" in msg


def test_missing_local_head_through_scorer(gte_bundle, tmp_path):
    from spark_jql.scoring.scorer import Scorer

    path = tmp_path / "nowhere" / "head.ckpt"
    config = ScorerConfig.model_validate({**gte_bundle, "heads": [{"name": "gone", "path": str(path)}]})
    with pytest.raises(CheckpointError) as info:
        Scorer(config, device="cpu")
    assert str(path) in str(info.value)


# -- Hub, offline -----------------------------------------------------------------------
def test_uncached_hub_head_offline_says_how_to_fix(empty_hf_cache):
    head = HeadConfig(name="Edu-JQL-Gemma-SF", repo_id="Jackal-AI/JQL-Edu-Heads",
                      filename="checkpoints/edu-gemma-snowflake-balanced.ckpt")
    with pytest.raises(ModelNotAvailableError) as info:
        resolve_head_file(head)
    msg = str(info.value)
    assert "Jackal-AI/JQL-Edu-Heads/checkpoints/edu-gemma-snowflake-balanced.ckpt" in msg
    assert "HF_HUB_OFFLINE" in msg
    assert "Pre-download" in msg and "hf download Jackal-AI/JQL-Edu-Heads" in msg
    assert "local path" in msg


def test_uncached_hub_head_fails_scorer_before_embedder(empty_hf_cache, gte_bundle):
    from spark_jql.scoring.scorer import Scorer

    heads = [{"name": "hub", "repo_id": "nonexistent-org/nonexistent-heads", "filename": "h.ckpt"}]
    with pytest.raises(ModelNotAvailableError, match="nonexistent-org/nonexistent-heads"):
        Scorer(ScorerConfig.model_validate({**gte_bundle, "heads": heads}), device="cpu")


def test_cached_hub_head_resolves_offline(empty_hf_cache, tmp_path):
    """A head already in the HF cache is used offline, from the cache."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = empty_hf_cache / "models--some-org--jql-heads"
    target = repo / "snapshots" / commit / "checkpoints" / "h.ckpt"
    target.parent.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    head = random_head("cached", 16, 8)
    save_lightning_checkpoint(head, target)

    config = HeadConfig(name="cached", repo_id="some-org/jql-heads", filename="checkpoints/h.ckpt")
    resolved = resolve_head_file(config)
    assert resolved.resolve() == target.resolve()
    assert_same_head(load_head_file(resolved, "cached"), head)


def test_local_head_path_never_touches_hub(tmp_path, monkeypatch):
    import huggingface_hub

    def boom(*args, **kwargs):
        raise AssertionError("hf_hub_download called for a local head")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", boom)
    path = save_lightning_checkpoint(random_head("local", 16, 8), tmp_path / "local.ckpt")
    assert resolve_head_file(HeadConfig(name="local", path=str(path))) == path
