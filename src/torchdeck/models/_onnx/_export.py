"""torch -> ONNX with ``torch.onnx.export``, checked against onnxruntime.

Two torch exporters: ``"dynamo"`` (torch.export based, torch's default and maintained one; what
the importer is tested on first) and ``"torchscript"`` (the legacy tracer: several times faster
here, deprecated by torch). Either way the file is then run by onnxruntime on the example and,
with a dynamic batch, on two other batch sizes, and compared with torch.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import os
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

__all__ = ["export_onnx", "ExportReport", "ExportCheckError", "EXPORTERS", "DEFAULT_ATOL"]

EXPORTERS = ("dynamo", "torchscript")
# Largest |onnxruntime - torch| accepted per output type: float32 kernels differ in summation
# order between the two runtimes (1e-6 typical for our zoo); 1e-4 still catches a wrong op.
DEFAULT_ATOL: dict[torch.dtype, float] = {torch.float64: 1e-8, torch.float32: 1e-4, torch.float16: 1e-2,
                                          torch.bfloat16: 5e-2}
_EXAMPLE_ROWS = 16  # rows taken from a learner's batch: enough to catch a batch mix-up, cheap to run
_EXTERNAL_DATA_BYTES = 1 << 30  # protobuf files stop at 2 GiB; bigger models keep weights in <path>.data


class ExportCheckError(ValueError):
    """onnxruntime's outputs differ from torch's by more than the tolerance, or the export failed."""


@dataclasses.dataclass(frozen=True)
class ExportReport:
    """What :func:`export_onnx` wrote and how closely onnxruntime reproduced torch."""

    path: str
    exporter: str
    opset: int
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    dynamic_batch: bool
    batch_sizes: tuple[int, ...]  # the batch sizes onnxruntime ran; () when check=False
    max_abs_diff: float | None  # over all outputs and batch sizes; None when check=False
    atol: float | None

    def __str__(self) -> str:
        head = (f"{self.path}: {self.exporter} exporter, opset {self.opset}, "
                f"{'dynamic' if self.dynamic_batch else 'fixed'} batch")
        if self.max_abs_diff is None:
            return head + "; not checked"
        sizes = ", ".join(map(str, self.batch_sizes))
        return (f"{head}; onnxruntime vs torch: max abs diff {self.max_abs_diff:.3g} "
                f"(tolerance {self.atol:.0e}) at batch sizes {sizes}")


def export_onnx(model_or_learner: Any, path: str | os.PathLike, example_input: Any = None, *,
                dynamic_batch: bool = True, opset: int | None = None, check: bool = True,
                atol: float | None = None, exporter: str = "dynamo") -> ExportReport:
    """Write a model (or a learner's model) as ONNX and check it with onnxruntime.

    Args:
        model_or_learner: an ``nn.Module``, or a :class:`~torchdeck.train.Learner` (its model;
            the example comes from its validation loader when not given).
        path: the ``.onnx`` file to write (its folder is created).
        example_input: a tensor, or a tuple of tensors for a model with several inputs; the
            first axis is the batch.
        dynamic_batch: let the batch size vary in the exported graph.
        opset: the ONNX opset; None for the exporter's default.
        check: run the file with onnxruntime (CPU) and compare with torch.
        atol: the largest accepted absolute difference; default by output type
            (:data:`DEFAULT_ATOL`, 1e-4 for float32).
        exporter: ``"dynamo"`` or ``"torchscript"``.

    The model is exported in eval mode; each submodule's mode is restored afterwards (so don't
    export while the same model is being fitted on another thread). A model on a GPU is exported
    from a CPU copy, so the check compares runtimes, not devices.
    Raises :class:`ExportCheckError` (a ValueError) when the difference exceeds ``atol``.
    """
    model, example = _model_and_example(model_or_learner, example_input)
    inputs = _as_inputs(example)
    _validate(exporter=exporter, opset=opset, atol=atol, dynamic_batch=dynamic_batch, inputs=inputs)
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if any(t.device.type != "cpu" for t in itertools.chain(model.parameters(), model.buffers())):
        model = copy.deepcopy(model).cpu()
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.no_grad():
            reference = _flatten(model(*inputs))
        input_names = _names("input", len(inputs))
        output_names = _names("output", len(reference))
        _write(model, inputs, path, exporter=exporter, opset=opset, dynamic_batch=dynamic_batch,
               input_names=input_names, output_names=output_names)
        written = _written_opset(path)
        if not check:
            return ExportReport(path, exporter, written, input_names, output_names, dynamic_batch, (), None, None)
        tolerance = atol if atol is not None else max(DEFAULT_ATOL.get(r.dtype, 0.0) for r in reference)
        sizes, diff = _check(model, inputs, path, output_names, dynamic_batch, tolerance)
        return ExportReport(path, exporter, written, input_names, output_names, dynamic_batch, sizes, diff, tolerance)
    finally:
        for m, training in modes.items():
            m.training = training


# -- inputs ----------------------------------------------------------------------------------
def _model_and_example(obj: Any, example: Any) -> tuple[nn.Module, Any]:
    if isinstance(obj, nn.Module):
        if example is None:
            raise ValueError("export_onnx: example_input is required with a module (a batch as the model takes "
                             "it); pass a Learner to take one from its validation loader")
        return obj, example
    model, loaders = getattr(obj, "model", None), getattr(obj, "loaders", None)
    if not isinstance(model, nn.Module) or not isinstance(loaders, dict):
        raise ValueError(f"export_onnx: expected a torch.nn.Module or a Learner, got {type(obj).__name__}")
    return model, example if example is not None else _example_from(loaders)


def _example_from(loaders: dict[str, Any]) -> Any:
    for phase in dict.fromkeys(["valid", *loaders]):
        if phase in loaders:
            batch = next(iter(loaders[phase]), None)
            if batch is not None:
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                return tuple(t[:_EXAMPLE_ROWS] for t in x) if isinstance(x, (tuple, list)) else x[:_EXAMPLE_ROWS]
    raise ValueError(f"export_onnx: the learner's loaders ({', '.join(loaders) or 'none'}) give no batch; "
                     "pass example_input")


def _as_inputs(example: Any) -> tuple[torch.Tensor, ...]:
    items = tuple(example) if isinstance(example, (tuple, list)) else (example,)
    bad = [type(t).__name__ for t in items if not isinstance(t, torch.Tensor)]
    if not items or bad:
        raise ValueError(f"export_onnx: example_input must be a tensor or a tuple of tensors, got "
                         f"{type(example).__name__}{' of ' + ', '.join(bad) if bad and items else ''}")
    return tuple(t.detach().cpu() for t in items)


def _validate(*, exporter: str, opset: int | None, atol: float | None, dynamic_batch: bool,
              inputs: tuple[torch.Tensor, ...]) -> None:
    if exporter not in EXPORTERS:
        raise ValueError(f"export_onnx: exporter {exporter!r} is unknown; allowed: {', '.join(EXPORTERS)}")
    if opset is not None and (isinstance(opset, bool) or not isinstance(opset, int) or opset < 7):
        raise ValueError(f"export_onnx: opset must be an integer >= 7 or None, got {opset!r}")
    if atol is not None and (isinstance(atol, bool) or not isinstance(atol, (int, float)) or not atol >= 0):
        raise ValueError(f"export_onnx: atol must be a number >= 0 or None, got {atol!r}")
    if dynamic_batch and any(t.dim() == 0 for t in inputs):
        raise ValueError("export_onnx: dynamic_batch=True needs a batch axis on every input, got a 0-d tensor; "
                         "pass dynamic_batch=False")
    sizes = {t.shape[0] for t in inputs if t.dim()}
    if dynamic_batch and len(sizes) > 1:
        raise ValueError(f"export_onnx: the inputs' first axes differ ({sorted(sizes)}); with dynamic_batch=True "
                         "every input starts with the batch")


def _names(stem: str, n: int) -> tuple[str, ...]:
    return (stem,) if n == 1 else tuple(f"{stem}_{i}" for i in range(n))


def _flatten(out: Any) -> list[torch.Tensor]:
    """Outputs in the order exporters write them (tuples/lists in order, dicts by insertion)."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (tuple, list)):
        return [t for item in out for t in _flatten(item)]
    raise ValueError(f"export_onnx: the model returned a {type(out).__name__}; allowed: tensors, or "
                     "tuples, lists and dicts of them")


# -- writing ---------------------------------------------------------------------------------
def _write(model: nn.Module, inputs: tuple[torch.Tensor, ...], path: str, *, exporter: str, opset: int | None,
           dynamic_batch: bool, input_names: Sequence[str], output_names: Sequence[str]) -> None:
    if dynamic_batch and inputs[0].shape[0] == 1:
        # torch.export takes a size-1 axis for a constant, so trace a batch of two.
        inputs = tuple(torch.cat([t, t]) for t in inputs)
    kwargs: dict[str, Any] = dict(input_names=list(input_names), output_names=list(output_names),
                                  opset_version=opset, verbose=False)
    if exporter == "dynamo":
        batch = torch.export.Dim("batch")
        large = sum(p.numel() * p.element_size() for p in model.parameters()) > _EXTERNAL_DATA_BYTES
        kwargs.update(dynamo=True, external_data=large,
                      dynamic_shapes=tuple({0: batch} for _ in inputs) if dynamic_batch else None)
    else:
        axes = {name: {0: "batch"} for name in (*input_names, *output_names)}
        kwargs.update(dynamo=False, dynamic_axes=axes if dynamic_batch else None, do_constant_folding=True)
    try:
        torch.onnx.export(model, inputs, path, **kwargs)
    except Exception as e:  # the exporters raise many types; the user needs which model and what to try
        hint = " or exporter='torchscript'" if exporter == "dynamo" else ""
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportCheckError(f"export_onnx: the {exporter} exporter failed on {type(model).__name__}: {first}; "
                               f"try dynamic_batch=False{hint}") from e


def _written_opset(path: str) -> int:
    import onnx

    model = onnx.load(path, load_external_data=False)
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


# -- checking --------------------------------------------------------------------------------
def _batches(inputs: tuple[torch.Tensor, ...], dynamic_batch: bool) -> list[tuple[torch.Tensor, ...]]:
    """The example, then (dynamic batch) one row and one row more than the example, in another
    order: real rows, so category codes and the like stay valid."""
    batches = [inputs]
    if dynamic_batch:
        batches.append(tuple(t[-1:] for t in inputs))
        batches.append(tuple(torch.cat([t.flip(0), t[:1]]) for t in inputs))
    seen: dict[int, tuple[torch.Tensor, ...]] = {}
    for b in batches:
        seen.setdefault(b[0].shape[0] if b[0].dim() else 0, b)
    return list(seen.values())


def _max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    d = np.abs(a.astype(np.float64) - b.astype(np.float64))
    d[np.isnan(a) & np.isnan(b)] = 0.0  # NaN where torch has NaN too is a match
    return float(np.nan_to_num(d, nan=np.inf).max())


def _check(model: nn.Module, inputs: tuple[torch.Tensor, ...], path: str, output_names: Sequence[str],
           dynamic_batch: bool, atol: float) -> tuple[tuple[int, ...], float]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # warnings about unused initializers etc. are noise here
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    worst, sizes = 0.0, []
    for batch in _batches(inputs, dynamic_batch):
        with torch.no_grad():
            expected = [t.numpy() for t in _flatten(model(*batch))]
        got = session.run(None, {n: t.numpy() for n, t in zip(names, batch)})
        size = batch[0].shape[0] if batch[0].dim() else 0
        sizes.append(size)
        for name, e, g in zip(output_names, expected, got):
            diff = _max_abs_diff(e, g)
            if diff > atol:
                shapes = f" (shapes {e.shape} vs {g.shape})" if e.shape != g.shape else ""
                raise ExportCheckError(f"{path}: onnxruntime differs from torch by {diff:.3g} on output {name!r} "
                                       f"at batch size {size}{shapes}; tolerance {atol:g}. The file is written; "
                                       "pass atol= to accept it, or export with another opset or exporter")
            worst = max(worst, diff)
    return tuple(sizes), worst
