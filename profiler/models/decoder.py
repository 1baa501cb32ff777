"""A causal LM seen as a decoder: whether it can generate, its KV cache (layout, formula, live bytes), the weight bytes
one step reads, greedy decoding one explicit step at a time, and its prompts and text through its own tokenizer.
Pure model facts: nothing here times anything (measure/generate.py does).
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from profiler.models import inputs as synthetic
from profiler.models import sources
from profiler.models.loaded import LoadedModel
from profiler.schema import ModelRunError

Around = Callable[[str], Any]  # phase name -> context manager wrapped around one step of that phase


def check_causal_lm(module: torch.nn.Module, name: str) -> None:
    """Raise ModelRunError unless `module` is a Hugging Face model that can generate (a causal LM)."""
    can = getattr(module, "can_generate", None)
    if getattr(module, "config", None) is None or not callable(can) or not can():
        raise ModelRunError(
            f"{name} ({type(module).__name__}) is not a causal language model, so it cannot generate; "
            "use a decoder such as gpt2, llama, qwen2 (or their -tiny variants), an HF directory or hf:<id>"
        )


def kv_layout(config: Any, element_bytes: int) -> dict[str, int]:
    """Layers, heads, KV heads and head size from a transformers config (GPT-2 names map through attribute_map)."""
    c = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = int(c.num_attention_heads)
    kv_heads = int(getattr(c, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(c, "head_dim", None) or c.hidden_size // heads)
    return {"layers": int(c.num_hidden_layers), "heads": heads, "kv_heads": kv_heads, "head_dim": head_dim,
            "element_bytes": int(element_bytes)}


def kv_formula_bytes(layout: dict[str, int], tokens: int, batch: int) -> int:
    """2 (keys and values) x layers x kv_heads x head_dim x tokens x batch x element size."""
    return 2 * layout["layers"] * layout["kv_heads"] * layout["head_dim"] * tokens * batch * layout["element_bytes"]


def cache_tensors(cache: Any) -> list[torch.Tensor]:
    """The key and value tensors a transformers cache holds (Cache.layers; older key_cache/value_cache lists)."""
    layers = getattr(cache, "layers", None)
    if layers is not None:
        pairs = [(getattr(layer, "keys", None), getattr(layer, "values", None)) for layer in layers]
    else:
        pairs = list(zip(getattr(cache, "key_cache", []), getattr(cache, "value_cache", [])))
    return [t for pair in pairs for t in pair if isinstance(t, torch.Tensor)]


def cache_bytes(cache: Any) -> int:
    return sum(t.numel() * t.element_size() for t in cache_tensors(cache))


def new_cache(module: torch.nn.Module, kind: str, max_len: int):
    from transformers import DynamicCache, StaticCache

    makers = {"dynamic": lambda: DynamicCache(config=module.config),
              "static": lambda: StaticCache(config=module.config, max_cache_len=max_len)}
    return makers[kind]()


def step_weight_bytes(module: torch.nn.Module) -> int:
    """Parameter bytes one forward step reads: all weights, except input embedding tables (a step reads only the rows
    of its tokens) unless the table is also the output projection (tied), which reads all of it."""
    out = module.get_output_embeddings() if hasattr(module, "get_output_embeddings") else None
    tied = out.weight if out is not None and hasattr(out, "weight") else None
    skip = {id(m.weight) for m in module.modules() if isinstance(m, torch.nn.Embedding) and m.weight is not tied}
    seen: dict[int, torch.Tensor] = {}
    for p in module.parameters():
        if id(p) not in skip:
            seen[id(p)] = p
    return sum(p.numel() * p.element_size() for p in seen.values())


def greedy(module: torch.nn.Module, prompt: torch.Tensor, new_tokens: int, cache: Any, around: Around,
           keep_last_logits: bool = False) -> torch.Tensor:
    """Greedy decoding, one explicit step at a time: [batch, new_tokens] token ids. `around(phase)` wraps each step."""
    extra = {"logits_to_keep": 1} if keep_last_logits else {}  # as generate() does: logits of the last position only
    with around("prefill"):
        out = module(input_ids=prompt, past_key_values=cache, use_cache=True, **extra)
        token = out.logits[:, -1].argmax(-1)
    tokens = [token]
    for _ in range(new_tokens - 1):
        with around("decode"):
            out = module(input_ids=token[:, None], past_key_values=cache, use_cache=True)
            token = out.logits[:, -1].argmax(-1)
        tokens.append(token)
    return torch.stack(tokens, 1)


def prompt_ids(loaded: LoadedModel, batch: int, prompt_len: int, vocab_size: int, tokenizer: Any) -> torch.Tensor:
    """The prompt: the loaded example's input_ids when they are an unpadded [batch, prompt_len] prompt; else prose
    through the model's own `tokenizer` (model_tokenizer) when it has one (a trained model's choices on random ids are
    near-ties, so its greedy agreement would say little); else seeded random ids."""
    ids, mask = loaded.kwargs.get("input_ids"), loaded.kwargs.get("attention_mask")
    if isinstance(ids, torch.Tensor) and tuple(ids.shape) == (batch, prompt_len) and (mask is None or bool(mask.all())):
        return ids
    if tokenizer is not None:
        prose = synthetic.prose_ids(tokenizer, batch, prompt_len)
        if int(prose.max()) < vocab_size:
            return prose
    return synthetic.text_inputs(vocab_size, batch, prompt_len, token_types=False)["input_ids"]


def more_prompts(tokenizer: Any, prompt: torch.Tensor, n: int, vocab_size: int) -> list[torch.Tensor]:
    """`n` further prompts shaped like `prompt`, for accuracy checks beyond the timed one: later starts of the same
    prose for a model with a tokenizer, other seeded random ids otherwise."""
    batch, length = prompt.shape
    if tokenizer is not None:
        rows = synthetic.prose_ids(tokenizer, batch * (n + 1), length)[batch:]
        if int(rows.max()) < vocab_size:
            return [rows[i * batch:(i + 1) * batch].to(prompt.device) for i in range(n)]
    gen = torch.Generator().manual_seed(synthetic.SEED + 1)
    return [torch.randint(5, vocab_size, (batch, length), generator=gen).to(prompt.device) for _ in range(n)]


def decode_text(tokenizer: Any, ids: torch.Tensor) -> str:
    """The first sequence of `ids` as text, for a model with a tokenizer; "" otherwise."""
    try:
        return tokenizer.decode(ids[0].tolist()) if tokenizer is not None else ""
    except Exception:  # noqa: BLE001 - a tokenizer that cannot decode these ids shows no text, not an error
        return ""


def model_tokenizer(loaded: LoadedModel):
    """The loaded model's tokenizer from its source, or None (none, or it cannot be loaded here). Loading one reads
    files: resolve it once per measurement and hand it on."""
    try:
        return sources.tokenizer_for(loaded.info.spec) if loaded.info is not None and loaded.info.spec else None
    except Exception:  # noqa: BLE001 - missing files, offline: the prompt falls back to random ids
        return None


def check_length(module: torch.nn.Module, name: str, tokens: int) -> None:
    """Refuse a prompt plus new tokens longer than the model's position table (an index error deep inside otherwise)."""
    c = module.config.get_text_config()
    limit = getattr(c, "max_position_embeddings", None) or getattr(c, "n_positions", None)
    if limit and tokens > limit:
        raise ModelRunError(f"{name} handles at most {limit} positions, but prompt-len + new-tokens = {tokens}; "
                            "lower --prompt-len or --new-tokens")
