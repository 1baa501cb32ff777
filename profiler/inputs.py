"""Synthetic example inputs, made in one place for the sample models and for loaded models that come without inputs:
token ids, text-model kwargs, images, feature vectors and tokenized sentences, all from one fixed seed."""
from __future__ import annotations

from typing import Any

import torch

SEED = 0

# Real sentences for models with a tokenizer: the example inputs every profile of such a model uses.
SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
]


def generator() -> torch.Generator:
    """A CPU generator at the fixed seed: the same inputs on every run, whatever else drew random numbers."""
    return torch.Generator().manual_seed(SEED)


def token_ids(vocab_size: int, batch: int, seq_len: int, low: int = 0) -> torch.Tensor:
    """[batch, seq_len] int64 ids drawn from [low, vocab_size)."""
    return torch.randint(low, vocab_size, (batch, seq_len), generator=generator())


def text_inputs(vocab_size: int, batch: int, seq_len: int, token_types: bool = True) -> dict[str, torch.Tensor]:
    """input_ids (past the first 5 ids, which tokenizers keep for special tokens), a full attention mask and,
    for BERT-style models, token_type_ids."""
    ids = token_ids(vocab_size, batch, seq_len, low=5)
    out = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if token_types:
        out["token_type_ids"] = torch.zeros_like(ids)
    return out


def image_inputs(batch: int, size: int, channels: int = 3) -> torch.Tensor:
    """[batch, channels, size, size] standard-normal pixels."""
    return torch.randn(batch, channels, size, size, generator=generator())


def features(batch: int, *shape: int) -> torch.Tensor:
    """[batch, *shape] standard-normal values: feature vectors, or [C, L] sequences for a Conv1d."""
    return torch.randn(batch, *shape, generator=generator())


def tokenized(tokenizer: Any, batch: int, seq_len: int, sentences: list[str] | None = None) -> dict[str, torch.Tensor]:
    """Real sentences (SENTENCES unless given, repeated to fill the batch) through a Hugging Face tokenizer, padded
    or truncated to seq_len."""
    pool = sentences or SENTENCES
    texts = [pool[i % len(pool)] for i in range(batch)]
    return dict(tokenizer(texts, padding="max_length", truncation=True, max_length=seq_len, return_tensors="pt"))
