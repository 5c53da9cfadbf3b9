"""ONNX -> torch (what ONNX2Flux is to Flux): a ``torch.fx.GraphModule`` whose float
initializers are trainable parameters, so weights converted elsewhere can be fine-tuned.

Each ONNX node becomes one call of its converter (see ``_registry``) in an fx graph. Nodes whose
inputs are all constants that are not weights (shape arithmetic, Constant nodes) are computed
once at import time instead; a node that reads a weight stays in the graph, so its gradient
reaches the weight.
"""

from __future__ import annotations

import dataclasses
import keyword
import operator
import os
import re
from typing import Any

import numpy as np
import torch
from torch import fx, nn

from torchdeck.models._onnx import _ops_math, _ops_nn, _ops_resample, _ops_shape  # noqa: F401  (register the ops)
from torchdeck.models._onnx._registry import OpConverter, lookup_op, supported_ops
from torchdeck.models._onnx._values import torch_dtype

__all__ = ["import_onnx", "UnsupportedOpError", "ONNXImportInfo"]

_DEFAULT_DOMAINS = ("", "ai.onnx")


class UnsupportedOpError(ValueError):
    """An ONNX graph uses an op the importer has no converter for."""


@dataclasses.dataclass(frozen=True)
class ONNXImportInfo:
    """Where an imported module came from; ``module.meta["onnx"]`` (fx's ``meta`` survives ``deepcopy``)."""

    source: str  # the file, or the ModelProto's graph name
    opset: int
    input_names: tuple[str, ...]  # the ONNX graph inputs, in the order ``forward`` takes them
    output_names: tuple[str, ...]
    names: dict[str, str]  # torch parameter/buffer path -> ONNX initializer name


@dataclasses.dataclass(frozen=True)
class _Const:
    """A value known at import time: an initializer, a Constant node, or a folded node."""

    tensor: torch.Tensor
    onnx_name: str
    weight: bool  # a float initializer: becomes a trainable parameter where a node reads it as data


@dataclasses.dataclass(frozen=True)
class _NotComputed:
    """An optional node output the converter does not give (BatchNormalization's batch statistics)."""

    node: str
    index: int
    given: int


def import_onnx(source: str | os.PathLike | Any) -> fx.GraphModule:
    """An ONNX model (a file path or an ``onnx.ModelProto``) as a torch module.

    The module's ``forward`` takes the graph inputs positionally and returns one tensor, or a
    tuple for several graph outputs. Float initializers become parameters named after them
    (``backbone.0.0.weight`` stays ``backbone.0.0.weight``; characters Python can't hold become
    ``_``); ``module.meta["onnx"]`` (an :class:`ONNXImportInfo`) maps each back to its ONNX name
    and names the graph's inputs and outputs. BatchNormalization statistics and integer
    constants are buffers. Dropout is the identity (an exported graph is an inference graph),
    also in training mode. Save fine-tuned weights with ``state_dict()``: the structure comes
    from the ONNX file (``torch.save`` of the whole module would re-trace it, which fx cannot).

    Raises FileNotFoundError for a missing file, ValueError for an unreadable or invalid one,
    and :class:`UnsupportedOpError` naming the op, the node and the supported ops.
    """
    model, where = _load(source)
    return _Importer(model, where).run()


def _load(source: Any) -> tuple[Any, str]:
    import onnx

    if isinstance(source, onnx.ModelProto):
        where = f"ONNX model {source.graph.name!r}"
        check_target: Any = source
    else:
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"ONNX file not found: {path!r}")
        try:
            source = onnx.load(path)
        except Exception as e:  # protobuf raises its own DecodeError, or OSError/ValueError
            raise ValueError(f"{path}: not a readable ONNX model ({type(e).__name__}: {e})") from None
        where, check_target = path, path  # the checker reads a path lazily, so models over 2 GB work
    try:
        onnx.checker.check_model(check_target)
    except Exception as e:
        raise ValueError(f"{where}: not a valid ONNX model: {str(e).strip().splitlines()[0]}") from None
    return source, where


def _identifier(name: str) -> str:
    """An ONNX name as a Python identifier: ``onnx::Conv_35`` -> ``onnx__Conv_35``."""
    out = re.sub(r"\W", "_", name) or "_"
    if out[0].isdigit() or keyword.iskeyword(out):
        out = "_" + out
    return out


def _tensor(proto: Any, where: str) -> torch.Tensor:
    from onnx import numpy_helper

    dtype = torch_dtype(proto.data_type, where=f"{where}: tensor {proto.name!r}")
    array = numpy_helper.to_array(proto)
    if dtype == torch.bfloat16:  # numpy has no bfloat16; go through float32, which holds it exactly
        return torch.from_numpy(np.asarray(array, dtype=np.float32)).to(dtype)
    return torch.from_numpy(np.array(array, copy=True)).to(dtype)


def _attribute(attr: Any, where: str) -> Any:
    import onnx

    value = onnx.helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, onnx.TensorProto):
        return _tensor(value, where)
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode() for v in value]
    if isinstance(value, (onnx.GraphProto, onnx.SparseTensorProto, onnx.TypeProto)) or (
            isinstance(value, list) and value and not isinstance(value[0], (int, float))):
        raise UnsupportedOpError(f"{where}: attribute {attr.name!r} holds a {type(value).__name__}; "
                                 "allowed: numbers, strings, tensors and lists of them (no subgraphs)")
    return value


class _Importer:
    def __init__(self, model: Any, where: str) -> None:
        self.model = model
        self.where = where
        self.graph = fx.Graph()
        self.root = nn.Module()
        self.values: dict[str, fx.Node | _Const | _NotComputed] = {}
        self.attrs: dict[str, fx.Node] = {}  # ONNX name -> its get_attr node
        self.onnx_names: dict[str, str] = {}  # torch attribute path -> ONNX name
        self.opset = self._opset()

    def run(self) -> fx.GraphModule:
        g = self.model.graph
        self._refuse_unsupported()
        for init in g.initializer:
            t = _tensor(init, self.where)
            self.values[init.name] = _Const(t, init.name, weight=t.is_floating_point())
        inputs = [i.name for i in g.input if i.name not in self.values]
        for name in inputs:
            self.values[name] = self.graph.placeholder(_identifier(name))
        for node in g.node:
            self._convert(node)
        outs = [self._as_node(self._value(o.name, "graph output"), frozen=False) for o in g.output]
        self.graph.output(outs[0] if len(outs) == 1 else tuple(outs))
        self.graph.eliminate_dead_code()
        module = fx.GraphModule(self.root, self.graph, class_name="ImportedONNX")
        kept = {n.target for n in self.graph.nodes if n.op == "get_attr"}
        names = {k: v for k, v in self.onnx_names.items() if k in kept}
        module.meta["onnx"] = ONNXImportInfo(self.where, self.opset, tuple(inputs), tuple(o.name for o in g.output),
                                             names)
        return module

    # -- the graph as a whole ----------------------------------------------------------------
    def _opset(self) -> int:
        versions = [o.version for o in self.model.opset_import if o.domain in _DEFAULT_DOMAINS]
        if not versions:
            raise ValueError(f"{self.where}: no opset for the default ONNX domain in opset_import")
        return versions[0]

    def _refuse_unsupported(self) -> None:
        bad = [n for n in self.model.graph.node
               if n.domain not in _DEFAULT_DOMAINS or lookup_op(n.op_type, self.opset) is None]
        if not bad:
            return
        first = bad[0]
        domain = f", domain {first.domain!r}" if first.domain not in _DEFAULT_DOMAINS else ""
        others = sorted({n.op_type for n in bad} - {first.op_type})
        also = f"; also unsupported in this graph: {', '.join(others)}" if others else ""
        raise UnsupportedOpError(f"{self.where}: ONNX op {first.op_type!r} (node {first.name or first.output[0]!r}"
                                 f"{domain}, opset {self.opset}) has no converter{also}; "
                                 f"supported ops: {', '.join(supported_ops())}")

    # -- one node ----------------------------------------------------------------------------
    def _convert(self, node: Any) -> None:
        conv = lookup_op(node.op_type, self.opset)
        assert conv is not None  # _refuse_unsupported ran first
        label = node.name or node.output[0]
        desc = f"node {label!r} ({node.op_type})"
        where = f"{self.where}: {desc}"
        attrs = {a.name: _attribute(a, where) for a in node.attribute}
        unknown = sorted(set(attrs) - conv.attributes)
        if unknown:
            raise ValueError(f"{where}: attribute(s) {', '.join(unknown)} are not supported; "
                             f"allowed: {', '.join(sorted(conv.attributes)) or 'none'}")
        if conv.output_count and attrs.get(conv.output_count) is None:
            attrs[conv.output_count] = len(node.output)
        inputs = [self._value(name, where) if name else None for name in node.input]
        if self._foldable(conv, inputs):
            self._fold(conv, node, desc, where, inputs, attrs)
        else:
            self._emit(conv, node, label, desc, inputs, attrs)

    @staticmethod
    def _foldable(conv: OpConverter, inputs: list[Any]) -> bool:
        # A weight read as data must stay in the graph for its gradient; as configuration
        # (a float initializer holding Resize's scales) it is just a number.
        return all(v is None or isinstance(v, _Const) for v in inputs) and not any(
            isinstance(v, _Const) and v.weight and i not in conv.config for i, v in enumerate(inputs))

    def _fold(self, conv: OpConverter, node: Any, desc: str, where: str, inputs: list[Any],
              attrs: dict[str, Any]) -> None:
        try:
            with torch.no_grad():
                result = conv.fn(*[v.tensor if v is not None else None for v in inputs], **attrs)
        except (ValueError, RuntimeError, IndexError, TypeError) as e:
            raise ValueError(f"{where}: {e}") from e
        results = [result] if conv.outputs == 1 else list(result)
        for i, name in enumerate(node.output):
            if name:
                self.values[name] = (_Const(results[i], name, weight=False) if i < len(results)
                                     else _NotComputed(desc, i, len(results)))

    def _emit(self, conv: OpConverter, node: Any, label: str, desc: str, inputs: list[Any],
              attrs: dict[str, Any]) -> None:
        args: list[Any] = []
        for i, v in enumerate(inputs):
            if isinstance(v, _Const) and i in conv.config:
                args.append(v.tensor.tolist())  # written into the graph as a literal
            else:
                args.append(None if v is None else self._as_node(v, frozen=i in conv.frozen))
        kwargs = {k: self._as_node(_Const(v, f"{label}.{k}", weight=False), frozen=True)
                  if isinstance(v, torch.Tensor) else v for k, v in attrs.items()}
        call = self.graph.create_node("call_function", conv.fn, tuple(args), kwargs, name=_identifier(label))
        for i, name in enumerate(node.output):
            if not name:
                continue
            if conv.outputs == 1:
                self.values[name] = call if i == 0 else _NotComputed(desc, i, 1)
            elif conv.outputs is not None and i >= conv.outputs:
                self.values[name] = _NotComputed(desc, i, conv.outputs)
            else:
                self.values[name] = self.graph.call_function(operator.getitem, (call, i))

    # -- values ------------------------------------------------------------------------------
    def _value(self, name: str, where: str) -> fx.Node | _Const:
        if name not in self.values:
            raise ValueError(f"{where}: reads {name!r}, which no earlier node, initializer or graph input gives")
        v = self.values[name]
        if isinstance(v, _NotComputed):
            raise ValueError(f"{where}: reads {name!r}, output {v.index} of {v.node}, which the importer does "
                             f"not compute (the converter gives {v.given} output(s), for inference)")
        return v

    def _as_node(self, v: fx.Node | _Const, *, frozen: bool) -> fx.Node:
        if isinstance(v, fx.Node):
            return v
        if v.onnx_name not in self.attrs:
            value: torch.Tensor = nn.Parameter(v.tensor) if v.weight and not frozen else v.tensor
            target = self._place(v.onnx_name, value)
            self.attrs[v.onnx_name] = self.graph.get_attr(target)
            self.onnx_names[target] = v.onnx_name
        return self.attrs[v.onnx_name]

    def _place(self, onnx_name: str, value: torch.Tensor) -> str:
        """Register ``value`` under a path that follows the ONNX name's dots where it can."""
        parts = [_identifier(p) if not p.isdigit() else p for p in onnx_name.split(".")]
        module = self.root
        for part in parts[:-1]:
            child = getattr(module, part, None)
            if child is None:
                child = nn.Module()
                module.add_module(part, child)
            elif not isinstance(child, nn.Module):  # "a" is a tensor and "a.b" wants it as a module
                return self._place_flat(parts, value)
            module = child
        if hasattr(module, parts[-1]):
            return self._place_flat(parts, value)
        _register(module, parts[-1], value)
        return ".".join(parts)

    def _place_flat(self, parts: list[str], value: torch.Tensor) -> str:
        base = _identifier("_".join(parts))
        name, n = base, 0
        while hasattr(self.root, name):
            n += 1
            name = f"{base}_{n}"
        _register(self.root, name, value)
        return name


def _register(module: nn.Module, name: str, value: torch.Tensor) -> None:
    if isinstance(value, nn.Parameter):
        module.register_parameter(name, value)
    else:
        module.register_buffer(name, value)
