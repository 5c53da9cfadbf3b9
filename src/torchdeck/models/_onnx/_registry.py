"""The ONNX op registry: ``(op_type, since_version) -> converter``.

A converter is a plain function over torch tensors: ONNX inputs come positionally (``None``
for an omitted optional input), ONNX attributes as keyword arguments with the spec's defaults.
The importer calls it twice over: at import time to fold nodes whose inputs are all known,
and at run time from the traced ``torch.fx`` graph. Ops whose semantics changed between
opset versions register one converter per version; the model's opset picks the newest one
that is not newer than it (as onnxruntime does).
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Callable

__all__ = ["OpConverter", "OPS", "register_op", "lookup_op", "supported_ops"]


@dataclasses.dataclass(frozen=True)
class OpConverter:
    """One ONNX operator, as a torch function.

    Attributes:
        op_type: the ONNX name (``"Conv"``).
        since: the first opset version this converter implements.
        fn: ``fn(*inputs, **attributes)``; returns a tensor, or a tuple for several outputs.
        config: input positions that configure the op (shapes, axes, pads, scales): when they are
            known at import time they are passed as Python lists or numbers, never as parameters.
        frozen: input positions whose float initializers are statistics, not weights
            (BatchNormalization's running mean and variance): they become buffers.
        attributes: the attribute names ``fn`` accepts; any other attribute on a node is an
            error at import time rather than a silently ignored meaning.
        outputs: how many outputs ``fn`` gives (a tuple when not 1); None for as many as the node has.
        output_count: an attribute ``fn`` reads the node's number of outputs from, when the node
            does not set it (Split into equal parts before opset 18).
    """

    op_type: str
    since: int
    fn: Callable[..., object]
    config: frozenset[int]
    frozen: frozenset[int]
    attributes: frozenset[str]
    outputs: int | None = 1
    output_count: str | None = None


OPS: dict[str, dict[int, OpConverter]] = {}


def register_op(op_type: str, *, since: int = 1, config: tuple[int, ...] = (),
                frozen: tuple[int, ...] = (), outputs: int | None = 1,
                output_count: str | None = None) -> Callable[[Callable[..., object]], Callable[..., object]]:
    """Decorator: ``@register_op("Gemm")`` makes ``fn`` the converter for ``Gemm`` from opset ``since``."""
    def deco(fn: Callable[..., object]) -> Callable[..., object]:
        versions = OPS.setdefault(op_type, {})
        if since in versions:
            raise ValueError(f"ONNX op {op_type!r} since opset {since} is registered twice "
                             f"({versions[since].fn!r}, {fn!r})")
        params = inspect.signature(fn).parameters.values()
        attributes = frozenset(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)
        versions[since] = OpConverter(op_type, since, fn, frozenset(config), frozenset(frozen), attributes,
                                      outputs, output_count)
        return fn
    return deco


def lookup_op(op_type: str, opset: int) -> OpConverter | None:
    """The converter for ``op_type`` in a model of opset ``opset``, or None when there is none."""
    versions = OPS.get(op_type, {})
    usable = [v for v in versions if v <= opset]
    return versions[max(usable)] if usable else None


def supported_ops() -> list[str]:
    """The ONNX op types the importer converts, sorted."""
    return sorted(OPS)
