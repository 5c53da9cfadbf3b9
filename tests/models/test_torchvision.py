"""torchvision backbones: the cut and the stages against torchvision's own feature extractor,
local weights files through our loading path, the feature shapes of the whole zoo on the meta
device (no memory), and the errors a user meets."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

from torchdeck import models

# Where each stage of ours must end, named in torchvision's own modules: the last layer
# before the resolution halves (read off torchvision's architecture by hand).
REFERENCE_NODES = {
    "resnet18": ["relu", "layer1", "layer2", "layer3", "layer4"],
    "mobilenet_v3_small": ["features.0", "features.1", "features.3", "features.8", "features.12"],
}

# The width of what torchvision's classifier reads: the pooled features of our backbone.
CLASSIFIER_INPUT = {
    "resnet18": lambda m: m.fc.in_features, "resnet34": lambda m: m.fc.in_features,
    "resnet50": lambda m: m.fc.in_features,
    "mobilenet_v3_small": lambda m: m.classifier[0].in_features,
    "mobilenet_v3_large": lambda m: m.classifier[0].in_features,
    "efficientnet_b0": lambda m: m.classifier[1].in_features,
    "convnext_tiny": lambda m: m.classifier[2].in_features,
    "vit_b_16": lambda m: m.heads.head.in_features,
}


def _torchvision(name, seed=0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torchvision.models.get_model(name, weights=None).eval()


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    """A seeded torchvision resnet18 and its state dict saved as torch.save writes it."""
    reference = _torchvision("resnet18", seed=1)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    return reference, path


def test_registry_names_the_zoo():
    assert set(CLASSIFIER_INPUT) <= set(models.available())
    assert set(models.TORCHVISION_BACKBONES) == set(CLASSIFIER_INPUT)


@pytest.mark.parametrize("name", sorted(CLASSIFIER_INPUT))
def test_every_backbone_builds_on_meta_with_torchvisions_feature_width(name):
    with torch.device("meta"):
        body, features = models.build_backbone(name, 3)
        expected = CLASSIFIER_INPUT[name](torchvision.models.get_model(name, weights=None))
    assert isinstance(body, models.PooledEncoder) and features == expected == body.out_features
    shapes = body.encoder().feature_shapes()
    assert shapes[0] == models.FeatureShape(3, 224, 224, 1)
    strides = [s.stride for s in shapes]
    assert strides == sorted(strides) and strides[-1] == (16 if name == "vit_b_16" else 32)
    assert shapes[-1].channels == expected and shapes[-1].height * shapes[-1].stride == 224


@pytest.mark.parametrize("name", sorted(REFERENCE_NODES))
def test_stages_are_torchvisions_feature_maps(name, tmp_path):
    reference = _torchvision(name, seed=2)
    path = tmp_path / f"{name}.pth"
    torch.save(reference.state_dict(), path)
    encoder = models.build_encoder(name, 3, weights=path).eval()
    extractor = create_feature_extractor(reference, REFERENCE_NODES[name])
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = encoder(x), list(extractor(x).values())
    assert len(ours) == 1 + len(theirs) and torch.equal(ours[0], x)
    for mine, ref in zip(ours[1:], theirs):
        torch.testing.assert_close(mine, ref, rtol=1e-5, atol=1e-5)
    # the dry run on the meta device predicts exactly what the real run gives
    shapes = encoder.feature_shapes(64)
    assert [(s.channels, s.height, s.width) for s in shapes] == [tuple(f.shape[1:]) for f in ours]


def test_pooled_backbone_is_torchvisions_classifier_input(resnet18_file):
    reference, path = resnet18_file
    body, features = models.build_backbone("resnet18", 3, weights=path)
    head_input = {}
    reference.fc.register_forward_hook(lambda m, inputs, out: head_input.update(x=inputs[0]))
    x = torch.randn(3, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference(x)
        ours = body.eval()(x)
    assert features == 512 and ours.shape == (3, 512)
    torch.testing.assert_close(ours, head_input["x"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_weights_file_loads_every_tensor(tmp_path, resnet18_file, suffix):
    reference, _ = resnet18_file
    state = reference.state_dict()
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    body, _ = models.build_backbone("resnet18", 3, weights=path)
    report = body.weights_report
    assert report.missing == [] and report.unexpected == [] and sorted(report.loaded) == sorted(state)
    # tensor by tensor, in the cut model: the stem, a block deep inside, a batch-norm buffer
    assert torch.equal(body.stages[0][0].weight, state["conv1.weight"])
    assert torch.equal(body.stages[3][0][0].conv2.weight, state["layer3.0.conv2.weight"])
    assert torch.equal(body.stages[4][0][1].bn1.running_var, state["layer4.1.bn1.running_var"])


def test_report_names_missing_and_unexpected_keys(tmp_path, resnet18_file):
    reference, _ = resnet18_file
    state = {k: v for k, v in reference.state_dict().items() if not k.startswith("layer4.1.")}
    state["extra.weight"] = torch.zeros(2)
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    body, _ = models.build_backbone("resnet18", 3, weights=path)
    report = body.weights_report
    assert report.unexpected == ["extra.weight"]
    assert report.missing and all(k.startswith("layer4.1.") for k in report.missing)
    assert "layer4.1.conv1.weight" in report.missing and "missing" in str(report)


def test_a_file_of_other_names_is_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"stages.0.0.weight": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match=r"resnet18: no tensor in .*other\.pth.* has a name of torchvision's resnet18"):
        models.build_backbone("resnet18", 3, weights=path)


def test_missing_weights_file_says_where_to_put_it(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match=r"resnet18: weights file not found: '.*nowhere\.pth'; put a state "
                                                r"dict of torchvision's resnet18 there .*resnet18-f37072fd\.pth"):
        models.build_backbone("resnet18", 3, weights=tmp_path / "nowhere.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    expected = tmp_path / "hub" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert models.torchvision_weights_path("resnet18") == str(expected)
    with pytest.raises(FileNotFoundError, match=r"resnet18: weights='imagenet' reads torchvision's "
                                                r"ResNet18_Weights.IMAGENET1K_V1 file from .*resnet18-f37072fd\.pth.* "
                                                r"never downloads: copy the file \(torchvision publishes it at https"):
        models.build_backbone("resnet18", 3, weights="imagenet")


def test_imagenet_weights_come_from_torch_hubs_folder(tmp_path, monkeypatch, resnet18_file):
    reference, path = resnet18_file
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    target = models.torchvision_weights_path("resnet18")
    import os
    import shutil
    os.makedirs(os.path.dirname(target))
    shutil.copy(path, target)
    body, _ = models.build_backbone("resnet18", 3, weights="imagenet")
    assert body.weights_report.path == target
    assert torch.equal(body.stages[0][0].weight, reference.conv1.weight)


def test_grey_input_keeps_the_pretrained_response_to_grey(resnet18_file):
    # With pretrained weights, a 1-channel stem is the RGB kernels' sum: a grey image gives
    # the first stage what the RGB model gives for the same grey repeated in 3 channels.
    reference, path = resnet18_file
    grey = models.build_encoder("resnet18", 1, weights=path).eval()
    rgb = models.build_encoder("resnet18", 3, weights=path).eval()
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(grey(x)[1], rgb(x.expand(-1, 3, -1, -1))[1], rtol=1e-5, atol=1e-5)
    assert grey.stages[0][0].weight.shape == (64, 1, 7, 7)
    # without weights it is just a fresh 1-channel layer
    fresh, _ = models.build_backbone("mobilenet_v3_small", 1)
    assert fresh(torch.zeros(2, 1, 32, 32)).shape == (2, 576)


def test_vit_reads_its_one_size_as_a_grid_of_patches():
    with torch.device("meta"):
        body, features = models.build_backbone("vit_b_16", 3, image_size=32)
        encoder = body.encoder()
        shapes = encoder.feature_shapes()
        assert [(s.channels, s.height, s.stride) for s in shapes] == [(3, 32, 1), (768, 2, 16)]
        assert features == 768 and body(torch.zeros(2, 3, 32, 32)).shape == (2, 768)
        with pytest.raises(ValueError, match=r"vit: this model was built for 32x32 inputs, got 64x64; build it with "
                                             r"the backbone option image_size=64"):
            encoder.feature_shapes(64)


@pytest.mark.parametrize(("name", "options", "pattern"), [
    ("resnet18", {"pool": "median"}, r"resnet18: pool must be one of 'avg', 'max', 'avgmax', got 'median'"),
    ("vit_b_16", {"image_size": 0}, r"vit_b_16: image_size must be a positive integer, got 0"),
    ("resnet18", {"image_size": 64}, r"unexpected keyword argument 'image_size'"),
])
def test_bad_options(name, options, pattern):
    with pytest.raises((ValueError, TypeError), match=pattern):
        models.build_backbone(name, 3, **options)


def test_pool_choices_change_the_width_not_the_stages():
    with torch.device("meta"):
        avg, n_avg = models.build_backbone("resnet18", 3)
        both, n_both = models.build_backbone("resnet18", 3, pool="avgmax")
    assert (n_avg, n_both) == (512, 1024)
    assert avg.state_dict().keys() == both.state_dict().keys()


def test_classification_weights_move_to_a_dense_model():
    # the encoder view shares the pooled backbone's stages: same modules, same names
    pooled, _ = models.build_backbone("small_convnet", 3, widths=[4, 8])
    encoder = models.as_encoder(pooled, 3)
    assert encoder.stages[0] is pooled.stages[0]
    assert encoder.state_dict().keys() == pooled.state_dict().keys()
    seg = models.Model(models.build_encoder("small_convnet", 3, widths=[4, 8]), nn.Identity())
    report = seg.backbone.load_state_dict(pooled.state_dict())
    assert not report.missing_keys and not report.unexpected_keys
