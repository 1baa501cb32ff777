"""Synthetic example inputs, made in one place for the sample models and for loaded models that come without inputs:
token ids, text-model kwargs, images, feature vectors and tokenized sentences, all from one fixed seed."""
from __future__ import annotations

import re
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


# A prompt for decoders with a tokenizer: plain prose, so a trained model's greedy continuation is the kind a user
# sees (random ids make even a real model's next-token choices near-ties). Rows of a batch start at different
# sentences; the text repeats when a prompt is longer than it.
PASSAGE = (
    "The river rises in the hills north of the town and runs south through farmland for about forty miles before it "
    "reaches the sea. For most of the year it is slow and shallow, and children wade across it at the old ford below "
    "the mill. In early spring, when the snow on the hills melts, it can rise by several feet in a single night. "
    "The town was built where the river could first be bridged, and for centuries its market drew farmers from the "
    "whole valley. The first bridge was made of timber and was swept away more than once. The stone bridge that "
    "stands today was finished in 1742, paid for by a tax on every cart that crossed it. When the railway arrived "
    "in the 1850s, the station was built on the far bank, and a new street of shops and houses grew up between the "
    "bridge and the platform. The mill closed after the Second World War and stood empty for thirty years. It is "
    "now a museum, where visitors can watch the wheel turn and learn how grain was ground into flour. Every summer "
    "the town holds a regatta on the stretch of water above the bridge, and rowing crews come from all over the "
    "region to race. The river also supports otters, kingfishers and brown trout, and volunteers test the water "
    "each month to make sure it stays clean enough for them."
)


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


def prose_ids(tokenizer: Any, batch: int, seq_len: int, text: str = PASSAGE) -> torch.Tensor:
    """[batch, seq_len] token ids of continuous prose (no padding), row i starting at the text's i-th sentence."""
    sentences = re.split(r"(?<=\.) ", text)
    rows = []
    for i in range(batch):
        start = i % len(sentences)
        row = " ".join(sentences[start:] + sentences[:start])
        ids = tokenizer(row)["input_ids"]
        if not ids:
            raise ValueError("the tokenizer made no tokens of the prompt text")
        # tokenized again as longer text, not repeated ids: a BOS token stays at the start only
        ids = tokenizer(" ".join([row] * (seq_len // len(ids) + 1)))["input_ids"] if len(ids) < seq_len else ids
        rows.append(ids[:seq_len])
    return torch.tensor(rows, dtype=torch.long)


def tokenized(tokenizer: Any, batch: int, seq_len: int, sentences: list[str] | None = None) -> dict[str, torch.Tensor]:
    """Real sentences (SENTENCES unless given, repeated to fill the batch) through a Hugging Face tokenizer, padded
    or truncated to seq_len."""
    pool = sentences or SENTENCES
    texts = [pool[i % len(pool)] for i in range(batch)]
    return dict(tokenizer(texts, padding="max_length", truncation=True, max_length=seq_len, return_tensors="pt"))
