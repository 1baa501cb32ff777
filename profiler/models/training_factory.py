"""A training factory's result, `(module, (inputs, target), loss)` or `(module, Dataset, loss)`, as the loader
keeps it: the module, its example inputs, and (loss, target, dataset) for profiler.measure.train."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from profiler.schema import ModelLoadError


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


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
            raise ModelLoadError(f"{what}: its dataset's first item raised {type(exc).__name__}: {_short(exc)}") \
                from None
        inputs = item[0] if isinstance(item, (tuple, list)) else {k: v for k, v in item.items() if k != "target"}
        inputs = inputs.unsqueeze(0) if isinstance(inputs, torch.Tensor) else inputs
        return module, inputs, (loss, None, batch)
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise ModelLoadError(f"{what} returned (module, {type(batch).__name__}, loss): the batch must be (inputs, "
                             "target), or a torch Dataset of such pairs")
    return module, batch[0], (loss, batch[1], None)
