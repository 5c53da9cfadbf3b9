"""ONNX export (checked by onnxruntime) and import (our converter), against onnxruntime and torch.

onnxruntime is the independent reference for the importer: every converter runs on hand-built
single-op graphs, and the exported models of our zoo come back to torch with the original's
outputs and gradients.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from tests.models._onnx_cases import CASES, Case, Init, f32, pos
from torchdeck import models
from torchdeck.train import Learner


# -- helpers ---------------------------------------------------------------------------------
def _single_op_model(case: Case) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    names, inits, graph_inputs, feed = [], [], [], {}
    for i, v in enumerate(case.inputs):
        if v is None:
            names.append("")
            continue
        name = f"in{i}"
        names.append(name)
        if isinstance(v, Init):
            inits.append(numpy_helper.from_array(v.value, name))
        else:
            dtype = helper.np_dtype_to_tensor_dtype(v.dtype)
            graph_inputs.append(helper.make_tensor_value_info(name, dtype, v.shape))
            feed[name] = v
    attrs = {k: numpy_helper.from_array(v) if isinstance(v, np.ndarray) else v for k, v in case.attrs.items()}
    outs = [f"out{i}" for i in range(case.outputs)]
    node = helper.make_node(case.op, names, outs, name=f"{case.id}_node", **attrs)
    graph = helper.make_graph([node], case.id, graph_inputs, [helper.make_empty_tensor_value_info(o) for o in outs],
                              inits)
    return _model(graph, case.opset), feed


def _model(graph: onnx.GraphProto, opset: int) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)
    model = onnx.shape_inference.infer_shapes(model)  # types the outputs left untyped above
    onnx.checker.check_model(model)
    return model


def _ort(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.log_severity_level = 3  # its optimisers warn about old opsets they skip
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feed)


def _ours(module: nn.Module, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
    with torch.no_grad():
        out = module(*[torch.from_numpy(feed[n]) for n in module.meta["onnx"].input_names])
    return [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]


def _assert_match(ours: list[np.ndarray], reference: list[np.ndarray], tol: float = 1e-5) -> None:
    assert len(ours) == len(reference)
    for a, b in zip(ours, reference):
        assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, a.shape, b.dtype, b.shape)
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def _seeded(build, seed: int = 0) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _small_cnn() -> nn.Module:
    def build():
        body, features = models.build_backbone("small_cnn", 3, width=8)
        model = models.Model(body, nn.Linear(features, 5))
        for m in model.modules():  # running statistics as after training, so BatchNorm is not the identity
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                nn.init.uniform_(m.weight, 0.5, 1.5)
                nn.init.uniform_(m.bias, -0.5, 0.5)
        return model
    return _seeded(build)


def _mlp() -> nn.Module:
    def build():
        body, features = models.build_backbone("mlp", 1, in_features=12, hidden=16)
        return models.Model(body, nn.Linear(features, 3))
    return _seeded(build)


def _tabular() -> nn.Module:
    def build():
        body, features = models.build_backbone("tabular_mlp", 5, cardinalities=[3, 4], hidden=(16, 8), dropout=0.2)
        return models.Model(body, nn.Linear(features, 2))
    return _seeded(build)


def _tabular_rows(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    codes = torch.stack([torch.randint(0, 3, (n,), generator=g), torch.randint(0, 4, (n,), generator=g)], 1)
    return torch.cat([codes.float(), torch.randn(n, 3, generator=g)], 1)


def _resnet18() -> nn.Module:
    import torchvision
    return _seeded(lambda: torchvision.models.resnet18(weights=None, num_classes=10))


def _image(n: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# -- every converter against onnxruntime ------------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_single_op_matches_onnxruntime(case):
    model, feed = _single_op_model(case)
    _assert_match(_ours(models.import_onnx(model), feed), _ort(model, feed))


def test_every_supported_op_has_a_case():
    assert sorted(set(models.supported_onnx_ops()) - {c.op for c in CASES}) == []


def test_registering_an_op_twice_is_refused():
    from torchdeck.models._onnx import register_op
    with pytest.raises(ValueError, match=r"ONNX op 'Relu' since opset 1 is registered twice"):
        register_op("Relu")(lambda x: x)


# -- hand-built models ---------------------------------------------------------------------------
def test_hand_built_mlp_imports_with_trainable_named_weights():
    inits = [numpy_helper.from_array(f32(8, 6), "fc1.weight"), numpy_helper.from_array(f32(8), "fc1.bias"),
             numpy_helper.from_array(f32(8, 3), "fc2/w:0"), numpy_helper.from_array(f32(3), "fc2/b:0")]
    nodes = [helper.make_node("Gemm", ["x", "fc1.weight", "fc1.bias"], ["h"], transB=1, name="fc1"),
             helper.make_node("Relu", ["h"], ["r"], name="relu"),
             helper.make_node("Gemm", ["r", "fc2/w:0", "fc2/b:0"], ["y"], name="fc2")]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])], inits)
    model = _model(graph, 17)
    module = models.import_onnx(model)
    for n in (1, 5):
        feed = {"x": f32(n, 6)}
        _assert_match(_ours(module, feed), _ort(model, feed))
    params = dict(module.named_parameters())
    assert sorted(params) == ["fc1.bias", "fc1.weight", "fc2_b_0", "fc2_w_0"]
    assert all(p.requires_grad for p in params.values())
    info = module.meta["onnx"]
    assert info.names["fc2_w_0"] == "fc2/w:0" and info.opset == 17 and info.input_names == ("x",)
    np.testing.assert_array_equal(params["fc1.weight"].detach().numpy(), numpy_helper.to_array(inits[0]))


def test_hand_built_conv_batchnorm_pool_imports_with_statistics_as_buffers():
    inits = [numpy_helper.from_array(f32(4, 3, 3, 3), "conv.w"), numpy_helper.from_array(f32(4), "conv.b"),
             numpy_helper.from_array(pos(4), "bn.scale"), numpy_helper.from_array(f32(4), "bn.bias"),
             numpy_helper.from_array(f32(4), "bn.mean"), numpy_helper.from_array(pos(4), "bn.var")]
    nodes = [helper.make_node("Conv", ["x", "conv.w", "conv.b"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("BatchNormalization", ["c", "bn.scale", "bn.bias", "bn.mean", "bn.var"], ["b"]),
             helper.make_node("Relu", ["b"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["y"])]
    graph = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 9, 9])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4, 1, 1])], inits)
    model = _model(graph, 15)
    module = models.import_onnx(model)
    for n in (1, 3):
        feed = {"x": f32(n, 3, 9, 9)}
        _assert_match(_ours(module, feed), _ort(model, feed))
    assert sorted(dict(module.named_parameters())) == ["bn.bias", "bn.scale", "conv.b", "conv.w"]
    assert sorted(dict(module.named_buffers())) == ["bn.mean", "bn.var"]


def test_clashing_initializer_names_stay_distinct_and_the_module_copies():
    import copy

    names = ["a", "a.b", "training", "0.weight"]
    inits = [numpy_helper.from_array(f32(2), n) for n in names]
    nodes = [helper.make_node("Add", ["x", "a"], ["s1"]), helper.make_node("Add", ["s1", "a.b"], ["s2"]),
             helper.make_node("Sub", ["s2", "training"], ["s3"]), helper.make_node("Mul", ["s3", "0.weight"], ["y"])]
    graph = helper.make_graph(nodes, "names", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])], inits)
    model = _model(graph, 18)
    module = models.import_onnx(model)
    feed = {"x": f32(3, 2)}
    _assert_match(_ours(module, feed), _ort(model, feed))
    assert sorted(module.meta["onnx"].names.items()) == [("0.weight", "0.weight"), ("a", "a"), ("a_b", "a.b"),
                                                 ("training_1", "training")]
    twin = copy.deepcopy(module)
    assert twin.meta["onnx"] == module.meta["onnx"]
    _assert_match(_ours(twin, feed), _ort(model, feed))


def test_import_folds_shape_arithmetic_but_keeps_weights_in_the_graph():
    # Flatten the way a dynamic-batch export does: Shape -> Gather -> Unsqueeze -> Concat -> Reshape,
    # and a weight transposed in the graph, whose gradient must still reach it.
    inits = [numpy_helper.from_array(np.array(0, dtype=np.int64), "zero"),
             numpy_helper.from_array(np.array([-1], dtype=np.int64), "minus_one"),
             numpy_helper.from_array(np.array([0], dtype=np.int64), "axes"),
             numpy_helper.from_array(f32(2, 12), "w")]
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "zero"], ["batch"]),
             helper.make_node("Unsqueeze", ["batch", "axes"], ["batch1"]),
             helper.make_node("Concat", ["batch1", "minus_one"], ["shape"], axis=0),
             helper.make_node("Reshape", ["x", "shape"], ["flat"]),
             helper.make_node("Transpose", ["w"], ["wt"]), helper.make_node("MatMul", ["flat", "wt"], ["y"])]
    graph = helper.make_graph(nodes, "flatten", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])], inits)
    model = _model(graph, 18)
    module = models.import_onnx(model)
    for n in (1, 4):
        feed = {"x": f32(n, 3, 4)}
        _assert_match(_ours(module, feed), _ort(model, feed))
    x = torch.randn(3, 3, 4)
    module(x).sum().backward()
    torch.testing.assert_close(module.get_parameter("w").grad, x.reshape(3, 12).sum(0).expand(2, 12))


def _unsupported_model() -> onnx.ModelProto:
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Einsum", ["r", "r"], ["e"], equation="ij,ij->i", name="the_einsum"),
             helper.make_node("NonZero", ["e"], ["y"], name="nz")]
    graph = helper.make_graph(nodes, "bad", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.INT64, None)])
    return _model(graph, 18)


def test_unsupported_op_names_op_node_and_supported_ops(tmp_path):
    path = tmp_path / "bad.onnx"
    onnx.save(_unsupported_model(), path)
    with pytest.raises(models.UnsupportedOpError) as info:
        models.import_onnx(path)
    msg = str(info.value)
    assert str(path) in msg
    assert "ONNX op 'Einsum' (node 'the_einsum', opset 18) has no converter" in msg
    assert "also unsupported in this graph: NonZero" in msg
    assert "supported ops: Abs, Add," in msg and "Conv" in msg and "Gemm" in msg
    assert isinstance(info.value, ValueError)


def test_missing_and_corrupt_files_are_named(tmp_path):
    missing = tmp_path / "nope.onnx"
    with pytest.raises(FileNotFoundError, match=r"ONNX file not found: .*nope\.onnx"):
        models.import_onnx(missing)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07this is not an ONNX model\xff\xfe")
    with pytest.raises(ValueError, match=r"garbage\.onnx: not a (readable|valid) ONNX model"):
        models.import_onnx(garbage)
    truncated = tmp_path / "truncated.onnx"
    whole = _unsupported_model().SerializeToString()
    truncated.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match=r"truncated\.onnx: not a (readable|valid) ONNX model"):
        models.import_onnx(truncated)


# -- export, checked by onnxruntime, and back ------------------------------------------------
EXPORTS = {
    # name: (model builder, example input, other batches, exporter, opset)
    "small_cnn-dynamo": (_small_cnn, lambda: _image(4), lambda: [_image(1, seed=1), _image(7, seed=2)], "dynamo", 18),
    "small_cnn-torchscript": (_small_cnn, lambda: _image(4), lambda: [_image(1, seed=1), _image(7, seed=2)],
                              "torchscript", None),
    "mlp-torchscript": (_mlp, lambda: torch.randn(6, 1, 3, 4), lambda: [torch.randn(1, 1, 3, 4), torch.randn(9, 12)],
                        "torchscript", None),
    "tabular_mlp-dynamo": (_tabular, lambda: _tabular_rows(6), lambda: [_tabular_rows(1, 1), _tabular_rows(11, 2)],
                           "dynamo", None),
    "resnet18-torchscript": (_resnet18, lambda: _image(1, 64), lambda: [_image(3, 64, seed=1)], "torchscript", None),
}


@pytest.fixture(scope="module", params=sorted(EXPORTS))
def exported(request, tmp_path_factory):
    build, example, others, exporter, opset = EXPORTS[request.param]
    model = build()
    path = tmp_path_factory.mktemp("onnx") / f"{request.param}.onnx"
    report = models.export_onnx(model, path, example(), exporter=exporter, opset=opset)
    assert report.exporter == exporter and report.opset == (opset or report.opset)
    print(f"{request.param}: {report}")
    return request.param, model, path, report, others()


def test_export_matches_torch_in_onnxruntime(exported):
    name, model, path, report, others = exported
    assert report.max_abs_diff is not None and report.max_abs_diff <= 1e-4
    assert report.atol == 1e-4 and report.dynamic_batch and report.opset >= 18
    assert report.input_names == ("input",) and report.output_names == ("output",)
    assert len(report.batch_sizes) >= 2 and 1 in report.batch_sizes
    # Independently of the report: onnxruntime on batch sizes the export never saw.
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    model.eval()
    for x in others:
        x = x.reshape(x.shape[0], *model_input_shape(name, x))
        with torch.no_grad():
            expected = model(x).numpy()
        got = session.run(None, {"input": x.numpy()})[0]
        print(f"{name}: batch {x.shape[0]}: onnxruntime max abs diff {np.abs(got - expected).max():.3g}")
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


def model_input_shape(name: str, x: torch.Tensor) -> tuple[int, ...]:
    return (1, 3, 4) if name.startswith("mlp") else tuple(x.shape[1:])


def test_import_round_trip_matches_torch(exported):
    name, model, path, _, others = exported
    module = models.import_onnx(path)
    model.eval()
    for x in others:
        x = x.reshape(x.shape[0], *model_input_shape(name, x))
        with torch.no_grad():
            diff = (module(x) - model(x)).abs().max().item()
        print(f"{name}: batch {x.shape[0]}: imported vs torch max abs diff {diff:.3g}")
        assert diff <= 1e-5


def test_imported_module_trains(exported):
    name, model, path, _, others = exported
    module = models.import_onnx(path)
    x = others[-1].reshape(others[-1].shape[0], *model_input_shape(name, others[-1]))
    y = torch.arange(x.shape[0]) % 2
    loss = nn.functional.cross_entropy(module(x), y)
    loss.backward()
    params = dict(module.named_parameters())
    assert params and all(p.grad is not None for p in params.values())
    assert sum(bool(p.grad.abs().sum() > 0) for p in params.values()) >= len(params) - 1
    # A step short enough for the first-order decrease (lr * |g|^2) to dominate, whatever the scale.
    norm = torch.sqrt(sum((p.grad ** 2).sum() for p in params.values()))
    torch.optim.SGD(module.parameters(), lr=1e-3 / float(norm)).step()
    with torch.no_grad():
        assert nn.functional.cross_entropy(module(x), y) < loss


def test_imported_mlp_fine_tunes_exactly_like_the_original(tmp_path):
    # No fusion in an MLP: the imported parameters carry the original names, so one SGD step on
    # each must give the same weights, and those load straight back into the torchdeck model.
    model = _mlp()
    path = tmp_path / "mlp.onnx"
    models.export_onnx(model, path, torch.randn(4, 12), exporter="torchscript")
    module = models.import_onnx(path)
    assert sorted(dict(module.named_parameters())) == sorted(dict(model.named_parameters()))
    x, y = torch.randn(5, 12), torch.tensor([0, 1, 2, 1, 0])
    for m in (model, module):
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        nn.functional.cross_entropy(m(x), y).backward()
        opt.step()
    for k, p in model.named_parameters():
        torch.testing.assert_close(module.get_parameter(k), p)
    fresh = _mlp()
    fresh.load_state_dict(dict(module.named_parameters()))
    torch.testing.assert_close(fresh(x), module(x))


class _Layers(nn.Module):
    """Layers beyond our zoo's, as exporters write them: upsampling, transposed convolution,
    reflection padding, attention with its run-time reshapes, two outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.PReLU(8)
        self.up = nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.norm = nn.LayerNorm(4)
        self.attn = nn.MultiheadAttention(4, 2, batch_first=True)
        self.fc = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = nn.functional.hardswish(self.act(self.bn(self.conv(x))))
        smooth = nn.functional.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)
        blocky = nn.functional.interpolate(y, scale_factor=2, mode="nearest")
        u = self.up(y) + smooth[:, :4] + blocky[:, 4:]
        u = nn.functional.avg_pool2d(nn.functional.pad(u, (1, 1, 1, 1), mode="reflect"), 3, stride=1)
        tokens = self.norm(nn.functional.gelu(u.flatten(2).transpose(1, 2)))
        a, _ = self.attn(tokens, tokens, tokens, need_weights=False)
        return nn.functional.log_softmax(self.fc(a.mean(1)).clamp(-3, 3), -1), torch.sigmoid(a).amax(1)


@pytest.mark.parametrize("exporter", ["torchscript", pytest.param("dynamo", marks=pytest.mark.slow)])
def test_common_layers_round_trip(tmp_path, exporter):
    model = _seeded(_Layers).eval()
    report = models.export_onnx(model, tmp_path / "layers.onnx", _image(3, 8), exporter=exporter)
    print(f"layers-{exporter}: {report}")
    assert report.max_abs_diff <= 1e-4 and report.output_names == ("output_0", "output_1")
    module = models.import_onnx(tmp_path / "layers.onnx")
    for n in (1, 5):
        x = _image(n, 8, seed=n)
        with torch.no_grad():
            for ours, theirs in zip(module(x), model(x)):
                assert ours.shape == theirs.shape and (ours - theirs).abs().max() <= 1e-5


@pytest.mark.gpu
def test_gpu_model_exports_from_a_cpu_copy_and_the_import_runs_on_gpu(tmp_path):
    model = _seeded(_Layers).cuda()
    report = models.export_onnx(model, tmp_path / "gpu.onnx", _image(3, 8).cuda(), exporter="torchscript")
    assert report.max_abs_diff <= 1e-4
    assert next(model.parameters()).is_cuda and model.training  # the model itself is left as it was
    module = models.import_onnx(tmp_path / "gpu.onnx").cuda()
    x = _image(5, 8, seed=3).cuda()
    with torch.no_grad():
        for ours, theirs in zip(module(x), model.eval()(x)):
            assert ours.is_cuda and (ours - theirs).abs().max() <= 1e-3  # TF32 kernels on both sides


@pytest.mark.slow
def test_resnet18_dynamo_export_round_trip(tmp_path):
    model = _resnet18()
    report = models.export_onnx(model, tmp_path / "r.onnx", _image(2, 64))
    print(f"resnet18-dynamo: {report}")
    assert report.max_abs_diff <= 1e-4 and report.exporter == "dynamo"
    module = models.import_onnx(tmp_path / "r.onnx")
    x = _image(3, 64, seed=5)
    with torch.no_grad():
        assert (module(x) - model.eval()(x)).abs().max() <= 1e-5


# The rest of the zoo through torch's default (dynamo) exporter and back: every backbone the
# models registry offers must import (resnet18 above). ViT needs its 224² input; the others
# run at 64².
ZOO = ["resnet34", "resnet50", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0", "convnext_tiny",
       "vit_b_16"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ZOO)
def test_every_zoo_backbone_round_trips_through_the_dynamo_exporter(tmp_path, name):
    size = 224 if name.startswith("vit") else 64
    body, width = _seeded(lambda: models.build_backbone(name, 3, pool="avg"))
    model = nn.Sequential(body, nn.Linear(width, 5)).eval()
    report = models.export_onnx(model, tmp_path / f"{name}.onnx", _image(2, size))
    assert report.exporter == "dynamo" and report.max_abs_diff <= 1e-4
    module = models.import_onnx(tmp_path / f"{name}.onnx")
    x = _image(3, size, seed=5)  # another batch size than the export's
    with torch.no_grad():
        assert (module(x) - model(x)).abs().max() <= 1e-4


def test_the_zoo_test_covers_every_torchvision_backbone():
    from torchdeck.models import available
    torchvision_names = {n for n in available() if n not in ("small_cnn", "small_convnet", "mlp", "tabular_mlp")}
    assert torchvision_names == {"resnet18", *ZOO}


# -- export: learners, modes, errors -----------------------------------------------------------
class _Drifting(nn.Module):
    """Adds how often it has been called: the traced graph holds one count, later calls another."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 2)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.linear(x) + float(self.calls)


def test_export_check_fails_loudly_when_onnxruntime_disagrees(tmp_path):
    path = tmp_path / "drift.onnx"
    with pytest.raises(models.ExportCheckError, match=r"drift\.onnx: onnxruntime differs from torch by [0-9.e+-]+ "
                                                        r"on output 'output' at batch size 4; tolerance 0.0001"):
        models.export_onnx(_Drifting(), path, torch.randn(4, 3), exporter="torchscript")
    assert path.is_file()  # kept for inspection
    report = models.export_onnx(_Drifting(), path, torch.randn(4, 3), exporter="torchscript", atol=100.0)
    assert 1.0 <= report.max_abs_diff <= 100.0 and report.atol == 100.0
    unchecked = models.export_onnx(_Drifting(), path, torch.randn(4, 3), exporter="torchscript", check=False)
    assert unchecked.max_abs_diff is None and str(unchecked).endswith("; not checked")


def test_export_from_a_learner_takes_the_validation_batch_and_restores_modes(tmp_path):
    model = _mlp()
    valid = [(torch.randn(20, 1, 3, 4), torch.zeros(20, dtype=torch.long))]
    learner = Learner(model, {"train": valid, "valid": valid}, nn.CrossEntropyLoss(),
                      torch.optim.SGD(model.parameters(), lr=0.1))
    learner.model.train()
    learner.model.backbone[1].eval()  # a frozen part, as fine_tune leaves it
    before = {n: m.training for n, m in learner.model.named_modules()}
    report = models.export_onnx(learner, tmp_path / "l.onnx", exporter="torchscript", dynamic_batch=False)
    assert report.batch_sizes == (16,) and not report.dynamic_batch
    assert {n: m.training for n, m in learner.model.named_modules()} == before
    session = ort.InferenceSession(str(tmp_path / "l.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == [16, 1, 3, 4]


def test_export_refuses_bad_arguments(tmp_path):
    model, x, path = _mlp(), torch.randn(2, 12), tmp_path / "m.onnx"
    cases = [
        (dict(exporter="jit"), r"exporter 'jit' is unknown; allowed: dynamo, torchscript"),
        (dict(opset=3), r"opset must be an integer >= 7 or None, got 3"),
        (dict(atol=-1.0), r"atol must be a number >= 0 or None, got -1.0"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            models.export_onnx(model, path, x, **kwargs)
    with pytest.raises(ValueError, match=r"example_input is required with a module"):
        models.export_onnx(model, path)
    with pytest.raises(ValueError, match=r"example_input must be a tensor or a tuple of tensors, got list of ndarray"):
        models.export_onnx(model, path, [np.zeros((2, 12))])
    with pytest.raises(ValueError, match=r"expected a torch.nn.Module or a Learner, got str"):
        models.export_onnx("resnet18", path)
    assert not path.exists()
