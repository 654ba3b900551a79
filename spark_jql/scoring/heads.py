"""JQL regression heads: load them safely and evaluate all of them in one pass.

A head is ``Linear(d, h) -> ReLU -> Linear(h, 1)`` (JQL: d=768, h=1000). The
published heads are PyTorch Lightning ``.ckpt`` pickles; they are opened with
``torch.load(weights_only=True)`` so no code in them ever runs, and without
Lightning. Heads we train are stored as safetensors plus a small JSON file.
"""

from __future__ import annotations

import json
import logging
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from spark_jql.errors import CheckpointError

log = logging.getLogger(__name__)

HEAD_KEYS = ("layer1.weight", "layer1.bias", "layer2.weight", "layer2.bias")
LIGHTNING_VERSION = "2.4.0"  # written into checkpoints we save; no Lightning migration applies to it
_PLAIN = (str, int, float, bool, type(None), torch.Size, torch.dtype)


@dataclass(frozen=True)
class HeadWeights:
    """The four tensors of one head, with shapes checked."""

    name: str
    w1: torch.Tensor  # (hidden, input)
    b1: torch.Tensor  # (hidden,)
    w2: torch.Tensor  # (1, hidden)
    b2: torch.Tensor  # (1,)
    meta: dict = field(default_factory=dict, compare=False)  # what the file says about its training (embedder, pooling)

    @property
    def input_dim(self) -> int:
        return self.w1.shape[1]

    @property
    def hidden_dim(self) -> int:
        return self.w1.shape[0]

    @classmethod
    def from_state_dict(cls, name: str, state: dict, source: str) -> "HeadWeights":
        missing = [k for k in HEAD_KEYS if k not in state]
        if missing:
            raise CheckpointError(f"{source}: head {name!r} lacks {missing}; found keys {sorted(state)[:10]}")
        w1, b1, w2, b2 = (state[k].detach().to(torch.float32).cpu() for k in HEAD_KEYS)
        hidden, _ = w1.shape if w1.dim() == 2 else (None, None)
        ok = (
            w1.dim() == 2
            and b1.shape == (hidden,)
            and w2.shape == (1, hidden)
            and b2.shape == (1,)
        )
        if not ok:
            shapes = {k: tuple(state[k].shape) for k in HEAD_KEYS}
            raise CheckpointError(f"{source}: head {name!r} is not Linear(d,h)->ReLU->Linear(h,1): {shapes}")
        return cls(name, w1, b1, w2, b2)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(zip(HEAD_KEYS, (self.w1, self.b1, self.w2, self.b2)))


def _check_plain(obj, source: str, where: str = "checkpoint") -> None:
    """Refuse anything but tensors, containers and plain values, even if torch allowed it."""
    if isinstance(obj, torch.Tensor) or isinstance(obj, _PLAIN):
        return
    if isinstance(obj, dict):
        for key, value in obj.items():
            _check_plain(key, source, where)
            _check_plain(value, source, f"{where}[{key!r}]")
        return
    if isinstance(obj, (list, tuple, set)):
        for i, value in enumerate(obj):
            _check_plain(value, source, f"{where}[{i}]")
        return
    raise CheckpointError(f"{source}: refusing checkpoint, {where} holds a {type(obj).__name__} (only tensors and plain values are allowed)")


def load_lightning_checkpoint(path: str | Path, name: str) -> HeadWeights:
    """Read a JQL Lightning ``.ckpt`` without Lightning and without unpickling code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"head {name!r}: checkpoint file not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: refusing checkpoint for head {name!r}: it holds objects other than tensors and plain values "
            f"(torch.load weights_only refused: {str(err).splitlines()[0]})"
        ) from None
    except Exception as err:  # truncated zip, not a torch file, ...
        raise CheckpointError(f"{path}: cannot read checkpoint for head {name!r}: {type(err).__name__}: {err}") from None
    _check_plain(payload, str(path))
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a dict with 'state_dict', got {type(payload).__name__}")
    head = HeadWeights.from_state_dict(name, state, str(path))
    hp = payload.get("hyper_parameters")
    return _with_meta(head, hp if isinstance(hp, dict) else {}, str(path))


def load_safetensors_head(path: str | Path, name: str) -> HeadWeights:
    """Read a head in spark_jql's own format (``X.safetensors`` + optional ``X.json``)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"head {name!r}: file not found: {path}")
    try:
        state = load_file(str(path))
    except Exception as err:
        raise CheckpointError(f"{path}: cannot read safetensors head {name!r}: {err}") from None
    sidecar = path.with_suffix(".json")
    try:
        meta = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
    except ValueError as err:
        raise CheckpointError(f"{sidecar}: head {name!r} metadata is not valid JSON ({err})") from None
    return _with_meta(HeadWeights.from_state_dict(name, state, str(path)), meta if isinstance(meta, dict) else {}, str(path))


PROVENANCE_KEYS = ("embedder", "embedder_digest", "pooling")


def _with_meta(head: HeadWeights, meta: dict, source: str) -> HeadWeights:
    kept = {k: meta[k] for k in PROVENANCE_KEYS if meta.get(k)}
    kept["source"] = source
    return HeadWeights(head.name, head.w1, head.b1, head.w2, head.b2, kept)


def embedder_name(model: str) -> str:
    """The comparable part of an embedder id or local path: its last component, lower case."""
    return str(model).rstrip("/").rsplit("/", 1)[-1].lower()


def check_provenance(heads: list[HeadWeights], embedder: str, pooling: str, revision: str | None = None) -> None:
    """A head trained on another encoder or pooling is an error; a head that does not say is a warning.

    The encoder is compared by content (spark_jql/scoring/identity.py): with the digest a head records, or, for a
    head that names its encoder only, with that encoder's files where they are on this machine. A byte-identical
    copy in another folder is the same encoder; names decide only when the files cannot be compared.
    """
    from spark_jql.scoring.identity import encoder_content

    here: list[str | None] = []

    def mine() -> str | None:
        if not here:
            here.append(encoder_content(embedder, revision))
        return here[0]

    for head in heads:
        named, pooled, digest = head.meta.get("embedder"), head.meta.get("pooling"), head.meta.get("embedder_digest")
        source = head.meta.get("source")
        same_name = bool(named) and embedder_name(named) == embedder_name(embedder)
        if digest and mine() is not None:
            if digest != mine():
                raise CheckpointError(
                    f"head {head.name!r} ({source}) was trained on embeddings of {named or 'an encoder'!r} "
                    f"(files digest {digest[:12]}), but the files of the scorer's embedder {embedder!r} differ "
                    f"(digest {mine()[:12]}); set scorer.embedder.model to that encoder or use other heads"
                )
        elif named:
            theirs = encoder_content(named)
            comparable = theirs is not None and mine() is not None
            if (comparable and theirs != mine()) or (not comparable and not same_name):
                raise CheckpointError(
                    f"head {head.name!r} ({source}) was trained on embeddings of {named!r}, "
                    f"but the scorer's embedder is {embedder!r}" + (" (their files differ)" if comparable else "")
                    + "; set scorer.embedder.model to match or use other heads"
                )
        if pooled and pooled != pooling:
            raise CheckpointError(
                f"head {head.name!r} ({source}) was trained on {pooled!r}-pooled embeddings, "
                f"but scorer.embedder.pooling is {pooling!r}"
            )
        if not named and not digest:
            log.warning("head %r (%s) does not record its embedder; assuming %s with %s pooling",
                        head.name, source, embedder, pooling)


def load_head_file(path: str | Path, name: str) -> HeadWeights:
    suffix = Path(path).suffix
    if suffix == ".safetensors":
        return load_safetensors_head(path, name)
    if suffix in (".ckpt", ".pt", ".pth"):
        return load_lightning_checkpoint(path, name)
    raise CheckpointError(f"head {name!r}: unknown head file type {suffix!r} ({path}); use .ckpt or .safetensors")


def save_safetensors_head(head: HeadWeights, path: str | Path, **metadata) -> Path:
    """Write ``path`` (safetensors) and ``path.with_suffix('.json')`` describing it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(path))
    info = {"name": head.name, "input_dim": head.input_dim, "hidden_dim": head.hidden_dim, "format": "spark_jql-head-v1"}
    path.with_suffix(".json").write_text(json.dumps({**info, **metadata}, indent=2))
    return path


def save_lightning_checkpoint(head: HeadWeights, path: str | Path, hyper_parameters: dict | None = None) -> Path:
    """Write a head in the JQL Lightning layout, loadable by the reference code and by us."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    hp = {"input_dim": head.input_dim, "hidden_dim": head.hidden_dim, **(hyper_parameters or {})}
    # Lightning's load_from_checkpoint (the JQL reference loader) requires the version key.
    payload = {"state_dict": head.state_dict(), "hyper_parameters": hp, "pytorch-lightning_version": LIGHTNING_VERSION}
    torch.save(payload, path)
    return path


class HeadSet(torch.nn.Module):
    """All heads fused: one matmul for every first layer, one reduction for the second.

    Heads with different hidden sizes are zero-padded to the widest; a padded unit
    is ReLU(0)=0 times weight 0, so results are exactly the per-head ones.
    """

    def __init__(self, heads: list[HeadWeights]):
        super().__init__()
        if not heads:
            raise ValueError("at least one head is required")
        dims = {h.input_dim for h in heads}
        if len(dims) != 1:
            raise CheckpointError(f"heads disagree on input size: {[(h.name, h.input_dim) for h in heads]}")
        self.names = [h.name for h in heads]
        self.input_dim = dims.pop()
        width = max(h.hidden_dim for h in heads)
        n = len(heads)
        w1 = torch.zeros(n, width, self.input_dim)
        b1 = torch.zeros(n, width)
        w2 = torch.zeros(n, width)
        b2 = torch.zeros(n)
        for i, h in enumerate(heads):
            w1[i, : h.hidden_dim] = h.w1
            b1[i, : h.hidden_dim] = h.b1
            w2[i, : h.hidden_dim] = h.w2[0]
            b2[i] = h.b2[0]
        self.register_buffer("w1", w1.reshape(n * width, self.input_dim))
        self.register_buffer("b1", b1.reshape(n * width))
        self.register_buffer("w2", w2)
        self.register_buffer("b2", b2)
        self.width = width

    def check_input_dim(self, embedder_dim: int, embedder_name: str) -> None:
        if embedder_dim != self.input_dim:
            raise CheckpointError(
                f"heads {self.names} take {self.input_dim}-dimensional input but embedder "
                f"{embedder_name!r} produces {embedder_dim}-dimensional embeddings"
            )

    @torch.inference_mode()
    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(batch, d) float32 -> (batch, n_heads) float32."""
        hidden = torch.relu(torch.nn.functional.linear(embeddings, self.w1, self.b1))
        hidden = hidden.view(embeddings.shape[0], len(self.names), self.width)
        return (hidden * self.w2).sum(-1) + self.b2
