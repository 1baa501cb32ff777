"""Where models come from: a small registry of model sources (sample names, a .py factory, a Hugging Face directory
or hub id, TorchScript, .pt2, a state dict). profiler.load_model asks each source in turn whether a spec is its own.

The built-in sources are defined and registered in profiler.models.loading (they need torch); a package of ready models
(sample_models) registers itself as one more source and is found by name, on first use, from PLUGINS, so the profiler
does not depend on the demo models. This module imports neither torch nor a plugin at import time: listing models
stays cheap.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # only for the type hints
    from profiler.models.loaded import LoadedModel

# packages that register model sources when imported; a missing one is skipped (OpLens runs without the demo models)
PLUGINS = ("sample_models",)


@dataclass
class LoadRequest:
    """One load: the spec and the options given with it (None: the model's own default)."""

    spec: str
    batch_size: int | None = None
    seq_len: int | None = None
    arch: str | None = None
    inputs: Any = None  # (args, kwargs) read from --inputs, or None


@dataclass(frozen=True)
class ModelEntry:
    """A ready model a catalogue source offers by name (what `python -m profiler models` lists)."""

    name: str
    description: str
    input_kind: str  # "text" (seq_len = tokens), "image" (seq_len = image size), "features", "sequence"
    batch_size: int
    seq_len: int


@dataclass(frozen=True)
class ModelSource:
    """One kind of model spec: `claims(spec)` says whether a spec is this source's, `load` makes the LoadedModel.

    `kind` is the ModelInfo.source the loaded model records. A catalogue source (sample models) also lists its
    names with `entries`.
    """

    kind: str
    claims: Callable[[str], bool]
    load: Callable[[LoadRequest], LoadedModel]
    entries: Callable[[], list[ModelEntry]] | None = None
    # spec -> the model's Hugging Face tokenizer (None when it has none); raises when it has one that cannot load
    tokenizer: Callable[[str], Any] | None = None


_SOURCES: list[ModelSource] = []
_plugins_loaded = False


def register(source: ModelSource, first: bool = False) -> None:
    """Add a source (replacing one of the same kind); `first` puts it before the others (catalogue names before
    files)."""
    _SOURCES[:] = [s for s in _SOURCES if s.kind != source.kind]
    if first:
        _SOURCES.insert(0, source)
    else:
        _SOURCES.append(source)


def unregister(kind: str) -> None:
    """Remove the source of that kind, if registered."""
    _SOURCES[:] = [s for s in _SOURCES if s.kind != kind]


def sources() -> list[ModelSource]:
    """Every registered source, in the order they are asked; plugins are imported on the first call."""
    global _plugins_loaded
    if not _plugins_loaded:
        _plugins_loaded = True
        for name in PLUGINS:
            try:
                importlib.import_module(name)
            except ImportError:
                pass
    return list(_SOURCES)


def source_for(spec: str) -> ModelSource | None:
    """The first source that claims `spec`, or None."""
    return next((s for s in sources() if s.claims(spec)), None)


def tokenizer_for(spec: str) -> Any:
    """The tokenizer of the model `spec` names, from its source; None when the source has no tokenizers or the model
    no tokenizer. Loading one that exists may raise (missing files, offline)."""
    source = source_for(spec)
    return source.tokenizer(spec) if source is not None and source.tokenizer is not None else None


def catalogue() -> list[ModelEntry]:
    """The ready models every catalogue source offers by name."""
    return [e for s in sources() if s.entries is not None for e in s.entries()]


def catalogue_names() -> list[str]:
    return [e.name for e in catalogue()]
