"""A user's .py file: imported as a module of its own, its errors said in one line, and a training factory's result
(`(module, (inputs, target), loss)` or `(module, Dataset, loss)`) kept as the loader needs it."""
from __future__ import annotations

import hashlib
import importlib.util
import os
import re
from typing import Any

import torch
from torch import nn

from profiler.schema import ModelLoadError


def short(exc: BaseException) -> str:
    """One line of an exception for an error message (what torch's weights-only loader refused, said plainly)."""
    if "Weights only load failed" in str(exc):  # say what was refused, not torch's advice to turn the check off
        wanted = re.search(r"GLOBAL ([\w.]+)", str(exc))
        return (f"it holds pickled Python objects{f' ({wanted.group(1)})' if wanted else ''}, and OpLens never "
                "unpickles code: save a state dict, TorchScript or torch.export .pt2 instead")
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]


def import_user_file(path: str):
    """Execute a user's .py file as a module of its own (named by its path's hash); ModelLoadError in one line when
    it raises."""
    mod_name = "oplens_user_" + hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:12]
    try:
        module_spec = importlib.util.spec_from_file_location(mod_name, path)
        user = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(user)
    except Exception as exc:  # noqa: BLE001 - user code can raise anything
        raise ModelLoadError(f"importing {path} failed: {type(exc).__name__}: {short(exc)}") from None
    return user


def training_factory(result: tuple, what: str) -> tuple[nn.Module, Any, tuple]:
    """(module, batch, loss) with batch = (inputs, target), or (module, dataset, loss) with (inputs, target) items:
    the module, example inputs, and (loss, target, dataset)."""
    module, batch, loss = result
    if isinstance(batch, torch.utils.data.Dataset):
        if len(batch) == 0:  # type: ignore[arg-type]
            raise ModelLoadError(f"{what} returned an empty dataset")
        try:
            item = batch[0]
        except Exception as exc:  # noqa: BLE001 - user code can raise anything
            raise ModelLoadError(f"{what}: its dataset's first item raised {type(exc).__name__}: {short(exc)}") \
                from None
        inputs = item[0] if isinstance(item, (tuple, list)) else {k: v for k, v in item.items() if k != "target"}
        inputs = inputs.unsqueeze(0) if isinstance(inputs, torch.Tensor) else inputs
        return module, inputs, (loss, None, batch)
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise ModelLoadError(f"{what} returned (module, {type(batch).__name__}, loss): the batch must be (inputs, "
                             "target), or a torch Dataset of such pairs")
    return module, batch[0], (loss, batch[1], None)
