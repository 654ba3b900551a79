"""jina-embeddings-v3 as JQL runs it: the original (remote-code) layout loaded natively, task LoRA merged,
the task's instruction as prefix, truncation at 8194; the -hf layout of the same weights gives the same vectors.

The expected embeddings are computed here by hand from the tiny checkpoint's saved tensors (LoRA merged in
plain torch, names mapped by hand, tokens from ``tokenizers`` directly, mean pooling and L2 written out).
"""

from __future__ import annotations

import copy
import json

import pytest
import torch

from spark_jql.config import EmbedderConfig
from spark_jql.errors import ModelNotAvailableError
from spark_jql.scoring.embedder import Embedder
from spark_jql.scoring.models import provenance, resolve

TEXTS = ["Hola mundo, esto es una prueba.", "Das ist ein etwas längerer deutscher Satz über Wetter und Züge. " * 3, "x"]


@pytest.fixture(scope="module")
def original(tmp_path_factory):
    from spark_jql.devtools.tiny_models import build_jina_original

    return build_jina_original(tmp_path_factory.mktemp("jina_original"), seed=5)


@pytest.fixture(scope="module")
def hf_copy(original, tmp_path_factory):
    from spark_jql.devtools.tiny_models import jina_original_to_hf

    return jina_original_to_hf(original[0], tmp_path_factory.mktemp("jina_hf"))


def expected(original, task: str | None, texts: list[str], prefix: str) -> torch.Tensor:
    """The remote code's computation by hand: W + (alpha/rank) * (B[t] @ A[t]) for linear layers, A[t] @ B[t] for
    embedding tables, on the source model; prefix + text through tokenizer.json; mean over tokens; L2."""
    from tokenizers import Tokenizer

    directory, native, tensors = original
    raw = json.loads((directory / "config.json").read_text())
    model = copy.deepcopy(native)
    params = dict(model.named_parameters())
    if task is not None:
        t = raw["lora_adaptations"].index(task)
        scale = raw["lora_alpha"] / raw["lora_rank"]
        with torch.no_grad():
            for key in [k for k in tensors if k.endswith(".0.lora_A")]:
                module = key.removesuffix(".parametrizations.weight.0.lora_A").removeprefix("roberta.")
                a, b = tensors[key][t].double(), tensors[key.replace("lora_A", "lora_B")][t].double()
                if module.startswith("embeddings."):
                    params[module + ".weight"] += (scale * (a @ b)).float()
                    continue
                delta = scale * (b @ a)
                i = module.split(".")[2]
                if module.endswith("mixer.Wqkv"):
                    for p, part in zip("qkv", delta.chunk(3)):
                        params[f"layers.{i}.self_attn.{p}_proj.weight"] += part.float()
                else:
                    name = {"mixer.out_proj": "self_attn.o_proj", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
                    params[f"layers.{i}.{name[module.split('.', 3)[3]]}.weight"] += delta.float()
    tok = Tokenizer.from_file(str(directory / "tokenizer.json"))
    out = []
    for text in texts:
        ids = torch.tensor([tok.encode(prefix + text).ids])
        with torch.no_grad():
            hidden = model(input_ids=ids).last_hidden_state[0]
        out.append(torch.nn.functional.normalize(hidden.mean(0), dim=-1))
    return torch.stack(out)


def embed(config: EmbedderConfig, texts=TEXTS) -> torch.Tensor:
    embedder = Embedder(config)
    return embedder.embed(embedder.tokenize(texts).ids)


def test_original_layout_loads_natively_as_jql_calls_it(original):
    """JQL: encode(texts, task="text-matching"): that task's LoRA, no instruction (""), mean pooling, 8194 tokens."""
    directory = original[0]
    raw = json.loads((directory / "config.json").read_text())
    assert raw["model_type"] == "xlm-roberta" and "lora_adaptations" in raw and "auto_map" in raw  # as published
    embedder = Embedder(EmbedderConfig(model=str(directory), device="cpu"))
    assert type(embedder.model).__name__ == "JinaEmbeddingsV3Model"
    c = embedder.config
    assert (c.pooling, c.task_adapter, c.prefix, c.max_length) == ("mean", "text_matching", "", 8194)
    assert embedder.max_length == 8194
    assert embedder.provenance["layout"] == "jina-original"
    ours = embedder.embed(embedder.tokenize(TEXTS).ids)  # a padded batch of unequal lengths
    torch.testing.assert_close(ours, expected(original, "text-matching", TEXTS, ""), atol=1e-5, rtol=0)
    plain = expected(original, None, TEXTS, "")
    assert float((ours * plain).sum(-1).min()) < 0.999  # the adapters are not zero: merging them matters


@pytest.mark.parametrize("task", ["retrieval.query", "retrieval.passage"])
def test_retrieval_tasks_prepend_the_checkpoint_instruction(original, task):
    directory = original[0]
    instruction = json.loads((directory / "config.json").read_text())["task_instructions"][task]
    assert instruction
    config = EmbedderConfig(model=str(directory), device="cpu", task_adapter=task.replace(".", "_"))
    assert resolve(config).prefix == instruction
    torch.testing.assert_close(embed(config), expected(original, task, TEXTS, instruction), atol=1e-5, rtol=0)
    explicit = config.model_copy(update={"prefix": ""})  # the user's explicit prefix wins, even an empty one
    assert resolve(explicit).prefix == ""
    torch.testing.assert_close(embed(explicit), expected(original, task, TEXTS, ""), atol=1e-5, rtol=0)


def test_hf_layout_of_the_same_weights_gives_the_same_embeddings(original, hf_copy):
    """The converted -hf layout (base model + peft-layout adapter folders) of the same checkpoint: same vectors."""
    for task, folder in (("text-matching", "text_matching"), ("retrieval.query", "retrieval_query")):
        config = EmbedderConfig(model=str(hf_copy), device="cpu", task_adapter=folder)
        r = resolve(config)
        assert (r.max_length, r.pooling) == (8194, "mean")  # instruction from the published table: no
        prefix = json.loads((original[0] / "config.json").read_text())["task_instructions"][task]  # task_instructions
        assert r.prefix == prefix
        torch.testing.assert_close(embed(config), expected(original, task, TEXTS, prefix), atol=1e-5, rtol=0)
    assert provenance(EmbedderConfig(model=str(hf_copy)))["layout"] == "native"


def test_original_layout_in_bfloat16_keeps_float32_rotary(original):
    embedder = Embedder(EmbedderConfig(model=str(original[0]), device="cpu", dtype="bfloat16"))
    assert embedder.model.layers[0].self_attn.q_proj.weight.dtype == torch.bfloat16
    assert embedder.model.rotary_emb.inv_freq.dtype == torch.float32
    ours = embedder.embed(embedder.tokenize(TEXTS).ids)
    assert float((ours * expected(original, "text-matching", TEXTS, "")).sum(-1).min()) > 0.99


def test_unknown_task_and_unsupported_rotary_are_refused(original, tmp_path):
    import shutil

    with pytest.raises(ModelNotAvailableError, match="no task 'summarization'.*lora_adaptations"):
        Embedder(EmbedderConfig(model=str(original[0]), device="cpu", task_adapter="summarization", prefix=""))
    folder = tmp_path / "interleaved"
    shutil.copytree(original[0], folder)
    raw = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**raw, "rotary_emb_interleaved": True}))
    with pytest.raises(ModelNotAvailableError, match="rotary_emb_interleaved"):
        Embedder(EmbedderConfig(model=str(folder), device="cpu"))


def test_max_length_defaults():
    """'auto': the model's own, as JQL's calls give; an explicit value wins."""
    assert resolve(EmbedderConfig()).max_length == 8192
    assert resolve(EmbedderConfig(model="Alibaba-NLP/gte-multilingual-base")).max_length == 8192
    assert resolve(EmbedderConfig(model="jinaai/jina-embeddings-v3-hf", prefix="")).max_length == 8194
    assert resolve(EmbedderConfig(model="jinaai/jina-embeddings-v3", prefix="", max_length=512)).max_length == 512
    with pytest.raises(ValueError, match="at least 2"):
        EmbedderConfig(max_length=1)
