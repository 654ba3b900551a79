"""The JQL-style baseline: 1,000-document unsorted chunks padded to the longest, tokenized in line."""

from __future__ import annotations

import logging

import numpy as np

from spark_jql.devtools.bench.measure import ModelShape

log = logging.getLogger("spark_jql.devtools.bench")

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
