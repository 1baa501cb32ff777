"""Turn a model spec (sample name, file, HF directory, hub id, TorchScript, .pt2, state dict) into a LoadedModel.

Each kind of spec is a model source (profiler.models.sources); the built-in ones are defined and registered here, the
sample models register themselves. Loading user code or pickles executes code, so each source is explicit: a `.py` file
runs only when named, and state dicts and input files are read with `torch.load(weights_only=True)`.
"""
from __future__ import annotations

import inspect
import os
import zipfile
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from profiler import devices, policy
from profiler.models import inputs as synthetic
from profiler.models import sources
from profiler.models.user_files import import_user_file, training_factory
from profiler.models.user_files import short as _short
from profiler.models.loaded import LoadedModel, ModelTraits, count_parameters
from profiler.models.sources import LoadRequest, ModelSource
from profiler.schema import ModelInfo, ModelLoadError

DEFAULT_FACTORIES = ("build_model", "get_model", "make_model", "model")


def quiet_transformers() -> None:
    """Keep transformers' progress bars and info logs out of OpLens's output."""
    try:
        import transformers

        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
    except ImportError:
        pass


def input_sizes(args: tuple, kwargs: dict) -> tuple[int, int] | None:
    """(batch, sequence length or image size) read back from the inputs themselves, or None when no tensor says.

    The batch is the leading dimension of the main input (input_ids/pixel_values/input_values, else the first
    tensor); the length is dimension 1 of a token or sequence input ([B, T] integers, [B, T, F] features) and the
    last dimension of an image ([B, C, H, W]); plain feature vectors ([B, F]) have none (0).
    """
    tensors = [t for t in list(args) + list(kwargs.values()) if isinstance(t, torch.Tensor)]
    main = next((kwargs[k] for k in ("input_ids", "pixel_values", "input_values", "inputs_embeds")
                 if isinstance(kwargs.get(k), torch.Tensor)), tensors[0] if tensors else None)
    if main is None or main.dim() == 0:
        return None
    shape = tuple(main.shape)
    if main.dim() == 4:
        length = shape[-1]
    elif main.dim() == 3 or (main.dim() == 2 and not main.is_floating_point()):
        length = shape[1]
    else:
        length = 0
    return shape[0], length


def finish(module: nn.Module, args, kwargs, name: str, source: str, spec: str, task: str, batch: int | None,
           seq_len: int | None, check_signature: bool = True) -> LoadedModel:
    """The LoadedModel of a module and its example inputs: eval mode, inputs checked against forward(), size and
    dtype recorded, and the batch and length the inputs really have."""
    if not isinstance(module, nn.Module):
        raise ModelLoadError(f"{spec}: expected a torch.nn.Module, got {type(module).__name__}")
    try:
        module.eval()
    except NotImplementedError:  # ExportedProgram.module() has no train/eval mode: it is already inference-only
        pass
    args = tuple(args or ())
    kwargs = dict(kwargs or {})
    if check_signature:
        check_inputs_match(module, args, kwargs, spec)
    n, size = count_parameters(module)
    dtype = next((str(p.dtype).replace("torch.", "") for p in module.parameters()), "float32")
    info = ModelInfo(name=name, source=source, parameters=n, spec=spec, task=task, dtype=dtype, size_bytes=size)
    # the sizes the model really runs at, whatever was asked: a factory may keep its own defaults
    batch, seq_len = input_sizes(args, kwargs) or (batch or 1, seq_len or 0)
    return LoadedModel(module=module, args=args, kwargs=kwargs, info=info, batch_size=batch, seq_len=seq_len)


def check_inputs_match(module: nn.Module, args: tuple, kwargs: dict, spec: str) -> None:
    """Raise ModelLoadError when the example inputs cannot bind to forward()'s signature."""
    if isinstance(module, torch.jit.ScriptModule) or isinstance(module, torch.fx.GraphModule):
        return  # their forward signatures are generic or compiled; a mismatch surfaces when run
    try:
        sig = inspect.signature(module.forward)
    except (TypeError, ValueError):
        return
    try:
        sig.bind(*args, **kwargs)
    except TypeError as exc:
        given = [f"arg{i}" for i in range(len(args))] + list(kwargs)
        raise ModelLoadError(f"{spec}: the example inputs ({', '.join(given) or 'none'}) do not match "
                             f"forward{sig}: {exc}") from None


# ---------------------------------------------------------------- inputs for models that come without them

def infer_inputs(module: nn.Module, batch: int | None, seq_len: int | None) -> tuple[tuple, dict] | None:
    """Guess example inputs from a HF config or from the first layer; None when there is no safe guess."""
    batch = batch or 1
    config = getattr(module, "config", None)
    if config is not None and hasattr(config, "model_type"):
        if hasattr(config, "image_size") and hasattr(config, "num_channels"):
            size = seq_len or config.image_size
            return (), {"pixel_values": synthetic.image_inputs(batch, size, config.num_channels)}
        if getattr(config, "vocab_size", None):
            seq = seq_len or 128
            token_types = "token_type_ids" in inspect.signature(module.forward).parameters
            return (), synthetic.text_inputs(config.vocab_size, batch, seq, token_types=token_types)
    first, kind = next(((m, _layer_kind(m)) for m in module.modules() if _layer_kind(m)), (None, None))
    try:
        if kind == "Linear":
            return (synthetic.features(batch, first.in_features),), {}
        if kind == "Conv2d":
            return (synthetic.image_inputs(batch, seq_len or 224, first.in_channels),), {}
        if kind == "Conv1d":
            return (synthetic.features(batch, first.in_channels, seq_len or 128),), {}
        if kind == "Embedding":
            return (synthetic.token_ids(first.num_embeddings, batch, seq_len or 128),), {}
    except AttributeError:  # a scripted layer that did not keep its size attributes
        return None
    return None


def _layer_kind(m: nn.Module) -> str | None:
    """'Linear', 'Conv2d', ... for eager and TorchScript layers alike (scripted ones keep only original_name)."""
    name = getattr(m, "original_name", None) if isinstance(m, torch.jit.ScriptModule) else type(m).__name__
    return name if name in ("Linear", "Conv2d", "Conv1d", "Embedding") else None


def split_inputs(obj: Any) -> tuple[tuple, dict]:
    """(args, kwargs) from example inputs given as a tensor, a tuple/list, a dict or an (args, kwargs) pair."""
    if isinstance(obj, torch.Tensor):
        return (obj,), {}
    if isinstance(obj, dict) or hasattr(obj, "keys"):
        return (), dict(obj)
    if isinstance(obj, (list, tuple)):
        if len(obj) == 2 and isinstance(obj[0], (list, tuple)) and isinstance(obj[1], dict):
            return tuple(obj[0]), dict(obj[1])
        return tuple(obj), {}
    raise ModelLoadError(
        f"example inputs must be a tensor, a tuple of tensors or a dict of tensors, got {type(obj).__name__}"
    )


def load_inputs_file(path: str) -> tuple[tuple, dict]:
    """Example inputs saved with torch.save (tensor, tuple or dict); read with weights_only=True."""
    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(f"inputs file not found: {path}")
    try:
        obj = torch.load(p, weights_only=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is the user's file
        raise ModelLoadError(f"{path}: not a torch-saved tensor, tuple or dict of tensors ({_short(exc)})") from None
    return split_inputs(obj)


def _oom(exc: BaseException, what: str, batch: int | None) -> str:
    return devices.oom_message(exc, f"building {what}" + (f" with batch size {batch}" if batch else ""),
                               "--batch-size or --seq-len")


# ---------------------------------------------------------------- each source

def call_factory(factory: Callable[[], Any], what: str, batch: int | None) -> Any:
    """Run a model factory; a missing package, an allocation too large or any exception is one ModelLoadError line."""
    quiet_transformers()
    try:
        return factory()
    except ImportError as exc:
        raise ModelLoadError(f"{what}: {_short(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - model code can raise anything
        if devices.is_oom(exc):
            raise ModelLoadError(_oom(exc, what, batch)) from None
        raise ModelLoadError(f"{what} raised {type(exc).__name__}: {_short(exc)}") from None


SIZE_WORDS = {"batch_size": "batch size (--batch-size)", "seq_len": "sequence length / image size (--seq-len)"}


def _from_python_file(spec: str, batch: int | None, seq_len: int | None) -> LoadedModel:
    path, _, factory_name = spec.partition(".py:")
    path = path + ".py" if not path.endswith(".py") else path
    if spec.endswith(".py"):
        path, factory_name = spec, ""
    if not os.path.isfile(path):
        raise ModelLoadError(f"model file not found: {path}")
    user = import_user_file(path)
    mod_name = user.__name__
    candidates = [factory_name] if factory_name else [n for n in DEFAULT_FACTORIES if callable(getattr(user, n, None))]
    if not candidates or not hasattr(user, candidates[0]):
        public = sorted(
            n
            for n, v in vars(user).items()
            if callable(v) and not n.startswith("_") and getattr(v, "__module__", "") == mod_name
        )
        wanted = factory_name or "one of " + ", ".join(DEFAULT_FACTORIES)
        raise ModelLoadError(f"factory '{wanted}' not found in {path}; callables there: {', '.join(public) or 'none'}. "
                             f"Use {path}:FACTORY")
    factory: Callable = getattr(user, candidates[0])
    if not callable(factory):
        raise ModelLoadError(f"{path}:{candidates[0]} is not callable")
    params = inspect.signature(factory).parameters
    # only the sizes the user gave: otherwise the factory's own defaults stand
    asked = {k: v for k, v in (("batch_size", batch), ("seq_len", seq_len)) if v is not None}
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())  # def f(**options)
    call_kwargs = {k: v for k, v in asked.items() if takes_all or k in params}
    ignored = [k for k in asked if k not in call_kwargs]
    result = call_factory(lambda: factory(**call_kwargs), f"{path}:{candidates[0]}()", batch)
    inputs, training = None, None
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], nn.Module):
        result, inputs = result
    elif isinstance(result, tuple) and len(result) == 3 and isinstance(result[0], nn.Module):
        result, inputs, training = training_factory(result, f"{path}:{candidates[0]}()")
    if not isinstance(result, nn.Module):
        raise ModelLoadError(f"{path}:{candidates[0]}() returned {type(result).__name__}, not a torch.nn.Module "
                             "(or a (module, example_inputs) pair)")
    # file and factory: three factories of one file are three models in every run picker
    loaded = _with_inputs(result, inputs, f"{Path(path).stem}:{candidates[0]}", "file", spec, batch, seq_len)
    if training is not None:
        loaded.loss, loaded.target, loaded.dataset = training
        default = params["batch_size"].default if "batch_size" in params else None
        if loaded.dataset is not None:  # a dataset has no batch: the factory's own batch_size says it
            loaded.batch_size = batch or (default if isinstance(default, int) else 0)
    if ignored and inputs is not None:  # inputs inferred by OpLens take the sizes; the factory's own do not
        takes = ", ".join(n for n in params if not n.startswith("_")) or "no arguments"
        loaded.info.notes.append(
            f"{Path(path).name}:{candidates[0]}() takes {takes}, so "
            + " and ".join(f"{SIZE_WORDS[k]} {asked[k]}" for k in ignored)
            + f" could not be applied: measured at its own inputs (batch {loaded.batch_size}"
            + (f", sequence/image {loaded.seq_len}" if loaded.seq_len else "") + ")")
    return loaded


def _with_inputs(module: nn.Module, inputs, name: str, source: str, spec: str, batch: int | None,
                 seq_len: int | None, task: str = "") -> LoadedModel:
    if inputs is not None:
        args, kwargs = split_inputs(inputs)
    else:
        guessed = infer_inputs(module, batch, seq_len)
        if guessed is None:
            raise ModelLoadError(f"{spec}: no example inputs given and none can be inferred; return (module, inputs) "
                                 "from the factory or pass --inputs FILE (a torch-saved tensor, tuple or dict)")
        args, kwargs = guessed
    return finish(module, args, kwargs, name, source, spec, task, batch, seq_len)


def _hf_task(model: nn.Module) -> str:
    name = type(model).__name__
    for key, task in (
        ("SequenceClassification", "text-classification"),
        ("ImageClassification", "image-classification"),
        ("CausalLM", "text-generation"),
        ("LMHead", "text-generation"),
        ("MaskedLM", "fill-mask"),
    ):
        if key in name:
            return task
    return "feature-extraction"


def _hf_model(source: str, location: str, spec: str, batch: int | None, seq_len: int | None) -> LoadedModel:
    quiet_transformers()
    try:
        import transformers
    except ImportError:
        raise ModelLoadError("loading Hugging Face models needs the 'transformers' package") from None
    try:
        config = transformers.AutoConfig.from_pretrained(location)
    except OSError as exc:
        if source == "hub":
            raise ModelLoadError(f"could not fetch '{location}' from the Hugging Face Hub: no network or unknown id "
                                 f"({_short(exc)}). Offline, use a local model directory instead") from None
        raise ModelLoadError(f"{location}: not a Hugging Face model directory ({_short(exc)})") from None
    except ValueError as exc:
        raise ModelLoadError(f"{location}: unreadable config.json ({_short(exc)})") from None
    arch = (getattr(config, "architectures", None) or [None])[0]
    cls = getattr(transformers, arch, None) if arch else None
    cls = cls or transformers.AutoModel
    try:
        model = cls.from_pretrained(location)
    except Exception as exc:  # noqa: BLE001 - missing weights, bad safetensors, no network
        raise ModelLoadError(f"{location}: weights could not be loaded ({type(exc).__name__}: {_short(exc)})") from None
    inputs = None
    try:
        tok = transformers.AutoTokenizer.from_pretrained(location)
        enc = synthetic.tokenized(tok, batch or 1, seq_len or 128)
        accepted = inspect.signature(model.forward).parameters
        inputs = {k: v for k, v in enc.items() if k in accepted}
    except Exception:  # noqa: BLE001 - no tokenizer: fall back to synthetic inputs from the config
        inputs = None
    name = Path(location).name if source == "hf-dir" else location
    return _with_inputs(model, inputs, name, source, spec, batch, seq_len, task=_hf_task(model))


def _zip_names(path: str) -> list[str] | None:
    try:
        with zipfile.ZipFile(path) as z:
            return z.namelist()
    except (zipfile.BadZipFile, OSError):
        return None


def _from_torchscript(path: str, spec: str, batch: int | None, seq_len: int | None, inputs) -> LoadedModel:
    try:
        module = torch.jit.load(path, map_location="cpu")
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"{path}: not a loadable TorchScript file ({_short(exc)})") from None
    if inputs is None:
        sidecar = Path(path).with_suffix(".inputs.pt")
        if sidecar.is_file():
            inputs = load_inputs_file(str(sidecar))
    return _with_inputs(module, inputs, Path(path).stem, "torchscript", spec, batch, seq_len)


def _from_export(path: str, spec: str, batch: int | None, seq_len: int | None, inputs) -> LoadedModel:
    try:
        with policy.no_pickled_code():
            ep = torch.export.load(path)
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"{path}: not a torch.export .pt2 archive ({_short(exc)})") from None
    if inputs is None and getattr(ep, "example_inputs", None) is not None:
        inputs = ep.example_inputs  # (args, kwargs), saved by torch.export.save
    module = ep.module()
    if inputs is None:
        raise ModelLoadError(f"{path}: the archive holds no example inputs; pass --inputs FILE")
    args, kwargs = split_inputs(inputs)
    loaded = finish(module, args, kwargs, Path(path).stem, "export", spec, "", batch, seq_len, check_signature=False)
    loaded.traits = ModelTraits(exported=ep)  # profiler.measure.graph uses this graph instead of re-exporting
    return loaded


def _from_state_dict(path: str, spec: str, arch: str | None, batch: int | None, seq_len: int | None) -> LoadedModel:
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"{path}: not a model file: neither TorchScript, .pt2 nor a weights-only state dict "
                             f"({_short(exc)})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelLoadError(f"{path}: holds {type(state).__name__}, not a state dict of tensors")
    if not arch:
        raise ModelLoadError(f"{path} is a state dict (weights only): name its architecture with --arch NAME "
                             f"(one of `python -m profiler models`)")
    source = sources.source_for(arch)
    if source is None or source.entries is None:
        raise ModelLoadError(f"unknown architecture '{arch}' for {path}; see `python -m profiler models`")
    loaded = source.load(LoadRequest(arch, batch, seq_len))
    result = loaded.module.load_state_dict(state, strict=False)
    if result.missing_keys:
        raise ModelLoadError(
            f"{path} does not fit architecture '{arch}': {len(result.missing_keys)} missing keys, e.g. "
            f"{result.missing_keys[0]}"
        )
    loaded.info.source, loaded.info.spec, loaded.info.name = "state-dict", spec, f"{arch}:{Path(path).stem}"
    return loaded


# ---------------------------------------------------------------- the built-in sources, in the order they are asked

def _path(spec: str) -> str:
    return os.path.expanduser(spec)


def _archive(spec: str) -> str | None:
    """'torchscript' or 'export' for a zip archive of either kind, whatever its suffix; None otherwise."""
    names = _zip_names(_path(spec))
    if names is None:
        return None
    if any(n.endswith("constants.pkl") or "/code/" in n for n in names):
        return "torchscript"
    if any(n.endswith("models/model.json") or "/models/" in n for n in names):
        return "export"
    return None


def _sizes(r: LoadRequest) -> tuple[int | None, int | None]:
    return r.batch_size or None, r.seq_len or None  # None (or 0): the model's own default


def _from_hf_dir(r: LoadRequest) -> LoadedModel:
    path = _path(r.spec)
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise ModelLoadError(f"{r.spec}: directory has no config.json, so it is not a Hugging Face model directory")
    return _hf_model("hf-dir", path, r.spec, *_sizes(r))


def _hf_tokenizer(location: str):
    """A Hugging Face model's own tokenizer (None when the directory has none; raises when offline for a hub id)."""
    quiet_transformers()
    import transformers

    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(location)
    except (OSError, ValueError):
        if os.path.isdir(location):
            return None
        raise
    # a directory with a config but no vocabulary files still gets a tokenizer class, one that makes no tokens
    return tokenizer if tokenizer("The river")["input_ids"] else None


BUILTIN_SOURCES = (
    ModelSource("hub", lambda spec: spec.startswith("hf:"), lambda r: _hf_model("hub", r.spec[3:], r.spec, *_sizes(r)),
                tokenizer=lambda spec: _hf_tokenizer(spec[3:])),
    ModelSource("file", lambda spec: ".py:" in spec or spec.endswith(".py"),
                lambda r: _from_python_file(r.spec, *_sizes(r))),
    ModelSource("hf-dir", lambda spec: os.path.isdir(_path(spec)), _from_hf_dir,
                tokenizer=lambda spec: _hf_tokenizer(_path(spec))),
    ModelSource("export", lambda spec: os.path.exists(_path(spec)) and (spec.endswith(".pt2") or
                                                                        _archive(spec) == "export"),
                lambda r: _from_export(_path(r.spec), r.spec, *_sizes(r), r.inputs)),
    ModelSource("torchscript", lambda spec: os.path.exists(_path(spec)) and _archive(spec) == "torchscript",
                lambda r: _from_torchscript(_path(r.spec), r.spec, *_sizes(r), r.inputs)),
    # any other existing file: read as weights only, the architecture named by --arch
    ModelSource("state-dict", lambda spec: os.path.exists(_path(spec)),
                lambda r: _from_state_dict(_path(r.spec), r.spec, r.arch, r.batch_size, r.seq_len)),
)
for _source in BUILTIN_SOURCES:
    sources.register(_source)


def load_model(spec: str, batch_size: int | None = None, seq_len: int | None = None, arch: str | None = None,
               inputs: str | Any | None = None) -> LoadedModel:
    """Load any supported model spec; raises ModelLoadError with a message a person can act on."""
    spec = (spec or "").strip()
    if not spec:
        raise ModelLoadError("no model given: name a sample model (see `python -m profiler models`) or a file")
    if isinstance(inputs, str):
        inputs = load_inputs_file(inputs)
    source = sources.source_for(spec)
    if source is None:
        if os.sep in spec or "." in spec:
            raise ModelLoadError(f"model file not found: {spec}")
        raise ModelLoadError(f"unknown model '{spec}': not a sample model (see `python -m profiler models`), "
                             "a file, a directory or an hf:<hub id>")
    if source.entries is not None and inputs is not None:
        raise ModelLoadError("--inputs applies to model files, not to sample models (they build their own)")
    return source.load(LoadRequest(spec, batch_size, seq_len, arch, inputs))


def reload_spec(info: ModelInfo, run_id: str = "") -> tuple[str, str | None]:
    """(spec, arch) that load the model of a saved run again; ModelLoadError, in one line, when that cannot work."""
    what = f"run {run_id}" if run_id else info.name
    if info.source == "registry":
        names = sources.catalogue_names()
        if info.spec in names or info.name in names:
            return info.spec or info.name, None
        raise ModelLoadError(f"{what} used sample model '{info.name}', which this OpLens no longer has")
    if not info.spec:
        raise ModelLoadError(f"{what} has no model to load again (its source is '{info.source}'): "
                             "profile the model itself first")
    if info.source == "hub":
        return info.spec, None
    path = info.spec.rsplit(":", 1)[0] if ".py:" in info.spec else info.spec
    if info.source not in {s.kind for s in BUILTIN_SOURCES} - {"hub"}:
        raise ModelLoadError(f"{what} has no model to load again (its source is '{info.source}'): "
                             "profile the model itself first")
    if not os.path.exists(os.path.expanduser(path)):
        raise ModelLoadError(f"{what}'s model file {path} is gone (uploaded files last only as long as the server's "
                             "temporary folder): upload or point to the model again")
    arch = info.name.split(":", 1)[0] if info.source == "state-dict" else None
    return info.spec, arch


def file_spec(path: str | os.PathLike, factory: str = "build_model") -> str:
    """The spec load_model takes for a model file: `file.py:factory` for Python source, the path itself otherwise
    (TorchScript, .pt2, a state dict, a Hugging Face directory)."""
    path = str(path)
    return f"{path}:{factory.strip() or 'build_model'}" if path.endswith(".py") else path


def hub_spec(hub_id: str) -> str:
    """The spec for a Hugging Face Hub id (`hf:<id>`); empty for an empty id, so nothing is loaded."""
    hub_id = hub_id.strip()
    return f"hf:{hub_id}" if hub_id else ""
