"""Frozen encoder: text -> token ids -> pooled (CLS or mean), L2-normalised embedding.

Loads any Hugging Face encoder with AutoTokenizer/AutoModel; the three JQL
embedders load as native transformers classes (see :mod:`spark_jql.scoring.models`);
remote code runs only when ``trust_remote_code`` is set. Reduced precision is obtained with
``from_pretrained(dtype=...)`` so that buffers such as the rotary frequencies stay
float32 (casting a loaded model with ``.to(bfloat16)`` corrupts positions).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from spark_jql.config import EmbedderConfig
from spark_jql.scoring import packed, simulated
from spark_jql.scoring.hub import is_local, model_load_error, require_local
from spark_jql.scoring.models import load_encoder, provenance, resolve
from spark_jql.scoring.tokenization import load_tokenizer

log = logging.getLogger(__name__)

CHARS_PER_TOKEN_CAP = 16  # no tokenizer we know averages more characters per token on real text

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return _DTYPES[dtype]


@dataclass
class Tokenized:
    """Token ids of a batch of texts; documents without text have no ids (length 0)."""

    ids: list[list[int]]
    lengths: np.ndarray  # int64, 0 for missing text
    truncated: np.ndarray  # bool


class Embedder:
    """Tokenizer + encoder, loaded once; embeds micro-batches padded or packed (:mod:`spark_jql.scoring.packed`)."""

    def __init__(self, config: EmbedderConfig, device: torch.device | str | None = None, layout: str = "auto"):
        config = resolve(config)
        self.config = config
        self.device = resolve_device(str(device) if device is not None else config.device)
        self.dtype = resolve_dtype(config.dtype, self.device)
        require_local(config.model, "embedder")
        local = is_local(config.model)
        try:
            self.tokenizer = load_tokenizer(config.model, config.revision, local, config.trust_remote_code)
            self.model = load_encoder(config, self.dtype, local)
        except Exception as err:
            raise model_load_error(config.model, err) from err
        self.model.eval().requires_grad_(False).to(self.device)
        self.dim = int(self.model.config.hidden_size)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.max_length = self._effective_max_length(config.max_length)
        self.provenance = provenance(config, str(self.dtype).removeprefix("torch."))
        self.set_layout(layout)
        self.simulated = simulated.from_env()  # devtools-only cluster-sim hook; None unless its env var is set

    def _effective_max_length(self, wanted: int) -> int:
        limits = [wanted]
        tok_max = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(tok_max, int) and tok_max < 1_000_000:
            limits.append(tok_max)
        if getattr(self.model.config, "model_type", "") in ("xlm-roberta", "roberta", "camembert"):
            limits.append(self.model.config.max_position_embeddings - self.model.config.pad_token_id - 1)
        effective = min(limits)
        if effective < wanted:
            log.warning("max_length %d exceeds what %s supports; truncating at %d", wanted, self.config.model, effective)
        return effective

    def set_layout(self, setting: str) -> str:
        """Resolve ``auto | padded | packed`` for this model and device; recorded in ``provenance``."""
        self.layout = packed.resolve_layout(setting, self.model, self.device, self.dtype)
        self.provenance["batch_layout"] = self.layout  # padded or packed ("layout" is the checkpoint's)
        return self.layout

    # -- tokenisation (CPU) -------------------------------------------------
    def tokenize(self, texts: list[str | None]) -> Tokenized:
        """Tokenize once, truncating at max_length; ``None`` means no text (length 0).

        Very long texts are first cut at a whitespace well past where max_length
        tokens can end (``CHARS_PER_TOKEN_CAP`` characters per token), so a 5 MB
        document costs what a 100 kB one does. Words before a whitespace cut
        tokenize the same, so the result is unchanged; if the cut text turns out
        to hold too few tokens it is tokenized whole.
        """
        if self.config.prefix:
            texts = [None if t is None else self.config.prefix + t for t in texts]
        present = [i for i, t in enumerate(texts) if t is not None]
        ids: list[list[int]] = [[] for _ in texts]
        lengths = np.zeros(len(texts), dtype=np.int64)
        truncated = np.zeros(len(texts), dtype=bool)
        cap = self.max_length * CHARS_PER_TOKEN_CAP
        source = {i: _cut_at_whitespace(texts[i], cap) for i in present}
        self._fill(present, source, ids, lengths, truncated)
        too_short = [i for i in present if source[i] is not texts[i] and not truncated[i]]
        if too_short:  # the cut came before max_length tokens: use the whole text
            self._fill(too_short, {i: texts[i] for i in too_short}, ids, lengths, truncated)
        return Tokenized(ids, lengths, truncated)

    def _fill(self, rows: list[int], source: dict[int, str], ids, lengths, truncated) -> None:
        if not rows:
            return
        for i, (row, cut) in zip(rows, self._encode([source[i] for i in rows])):
            ids[i] = row
            lengths[i] = len(row)
            truncated[i] = cut

    def _encode(self, texts: list[str]) -> list[tuple[list[int], bool]]:
        """(ids truncated at max_length, whether anything was cut) per text, from one tokenizer pass.

        The tokenizer's overflow information says whether a text was cut: a text with tokens past
        ``max_length`` comes back with overflow rows (``overflow_to_sample_mapping`` names it more than once).
        """
        kwargs = dict(truncation=True, max_length=self.max_length, padding=False, return_attention_mask=False,
                      return_overflowing_tokens=True, stride=0)
        try:
            enc = self.tokenizer(texts, **kwargs)
        except (UnicodeEncodeError, TypeError, ValueError):
            # Lone surrogates cannot reach the Rust tokenizer; replace them, as invalid UTF-8 would be on read.
            enc = self.tokenizer([t.encode("utf-8", "replace").decode("utf-8") for t in texts], **kwargs)
        rows = enc["input_ids"]
        sample = enc.get("overflow_to_sample_mapping")
        if sample is None:  # a tokenizer without overflow rows: ask full rows for one more token to know
            full = [i for i, row in enumerate(rows) if len(row) >= self.max_length]
            longer = self.tokenizer([texts[i] for i in full], **{**kwargs, "max_length": self.max_length + 1,
                                                                    "return_overflowing_tokens": False})["input_ids"]
            cut = dict(zip(full, (len(row) > self.max_length for row in longer)))
            return [(row, cut.get(i, False)) for i, row in enumerate(rows)]
        out: list[tuple[list[int], bool]] = []
        for row, s in zip(rows, sample):
            if s == len(out):
                out.append((row, False))
            else:  # an overflow row of the text before
                out[s] = (out[s][0], True)
        return out

    # -- encoding (device) --------------------------------------------------
    def pad(self, ids: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-pad to the longest row; pinned CPU tensors ready for a non-blocking copy."""
        longest = max(len(r) for r in ids)
        input_ids = np.full((len(ids), longest), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(ids), longest), dtype=np.int64)
        for r, row in enumerate(ids):
            input_ids[r, : len(row)] = row
            mask[r, : len(row)] = 1
        input_ids, mask = torch.from_numpy(input_ids), torch.from_numpy(mask)
        if self.device.type == "cuda":
            input_ids, mask = input_ids.pin_memory(), mask.pin_memory()
        return input_ids, mask

    @torch.inference_mode()
    def embed_padded(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Pooled last hidden state (CLS token, or mean over real tokens), L2-normalised, float32 on the device."""
        no_padding = bool(mask.all())  # checked on the host: no device sync
        input_ids = input_ids.to(self.device, non_blocking=True)
        mask = None if no_padding else mask.to(self.device, non_blocking=True)  # None lets SDPA use flash
        hidden = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        pooled = pool(hidden, mask, self.config.pooling)
        return torch.nn.functional.normalize(pooled, p=2, dim=-1) if self.config.normalize else pooled

    @torch.inference_mode()
    def embed_packed(self, batch: packed.Packed) -> torch.Tensor:
        """Same as :meth:`embed_padded`, from the packed layout (real tokens only; exact CLS-only last layer)."""
        use_varlen = packed.varlen_available(self.device, self.dtype)
        pooled = packed.forward(self.model, batch, self.config.pooling, self.device, use_varlen)
        return torch.nn.functional.normalize(pooled, p=2, dim=-1) if self.config.normalize else pooled

    def embed(self, ids: list[list[int]]) -> torch.Tensor:
        if self.simulated is not None:  # bench cluster-sim: sleep per real token instead of the forward pass
            return self.simulated.embed(ids, self.dim, self.device)
        if self.layout == "packed":
            return self.embed_packed(packed.pack(ids, pin=self.device.type == "cuda"))
        return self.embed_padded(*self.pad(ids))


def pool(hidden: torch.Tensor, mask: torch.Tensor | None, pooling: str) -> torch.Tensor:
    """(batch, seq, d) -> (batch, d) float32: first token, or the mean over tokens where ``mask`` is 1."""
    if pooling == "cls":
        return hidden[:, 0].float()
    if mask is None:
        return hidden.float().mean(dim=1)
    weights = mask.to(torch.float32).unsqueeze(-1)
    return (hidden.float() * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def _cut_at_whitespace(text: str, cap: int) -> str:
    """``text`` itself if short, else its prefix up to a whitespace near ``cap`` (or the whole text)."""
    if len(text) <= cap:
        return text
    window = text[cap - 4096 : cap] if cap > 4096 else text[:cap]
    offset = max(window.rfind(" "), window.rfind("\n"), window.rfind("\t"))
    if offset < 0:
        return text  # no whitespace to cut at safely (e.g. unspaced CJK): tokenize it whole
    return text[: cap - len(window) + offset]
