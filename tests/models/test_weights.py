"""Backbones and local weights files."""

from __future__ import annotations

import pytest
import torch

from torchdeck import models


def _model(seed=0, width=4):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        body, features = models.build_backbone("small_cnn", 1, width=width)
        return models.Model(body, torch.nn.Linear(features, 10))


def _equal(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_backbones_and_shapes():
    for name, out in [("small_cnn", 8), ("mlp", 128)]:
        body, features = models.build_backbone(name, 1, **({"width": 4} if name == "small_cnn" else {}))
        assert features == out
        assert body(torch.zeros(2, 1, 8, 8)).shape == (2, out)
    with pytest.raises(ValueError, match=r"unknown backbone 'vit'; allowed: .*\bmlp\b.*\bsmall_cnn\b"):
        models.build_backbone("vit", 1)


def test_safetensors_round_trip(tmp_path):
    from safetensors.torch import save_file

    src, dst = _model(0), _model(1)
    assert not _equal(src, dst)
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    report = models.load_weights(dst, path)
    assert _equal(src, dst)
    assert report.missing == [] and report.unexpected == []
    assert sorted(report.loaded) == sorted(src.state_dict())


@pytest.mark.parametrize("wrapped", [False, True])
def test_torch_state_dict_round_trip(tmp_path, wrapped):
    src, dst = _model(0), _model(1)
    path = tmp_path / "w.pt"
    torch.save({"state_dict": src.state_dict()} if wrapped else src.state_dict(), path)
    models.load_weights(dst, path)
    assert _equal(src, dst)


def test_report_lists_missing_and_unexpected_keys(tmp_path):
    src, dst = _model(0), _model(1)
    state = {k: v for k, v in src.state_dict().items() if not k.startswith("head.")}
    state["extra.weight"] = torch.zeros(3)
    path = tmp_path / "partial.pt"
    torch.save(state, path)
    head_before = dst.head.weight.detach().clone()
    report = models.load_weights(dst, path)
    assert sorted(report.missing) == ["head.bias", "head.weight"]
    assert report.unexpected == ["extra.weight"]
    assert "extra.weight" not in report.loaded and len(report.loaded) == len(state) - 1
    assert torch.equal(dst.head.weight, head_before)
    assert torch.equal(dst.backbone[0][0].weight, src.backbone[0][0].weight)
    text = str(report)
    assert "missing 2" in text and "unexpected 1" in text and str(path) in text
    with pytest.raises(RuntimeError, match="head.weight"):
        models.load_weights(_model(2), path, strict=True)


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nowhere" / "w.safetensors"
    with pytest.raises(FileNotFoundError, match=r"weights file not found: '.*nowhere/w\.safetensors'"):
        models.load_weights(_model(), path)


def test_shape_mismatch_names_tensor_and_both_shapes(tmp_path):
    path = tmp_path / "wide.pt"
    torch.save(_model(0, width=6).state_dict(), path)
    dst = _model(1, width=4)
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    with pytest.raises(ValueError, match=r"tensor 'backbone\.0\.0\.weight' has shape \(6, 1, 3, 3\), the model expects \(4, 1, 3, 3\)"):
        models.load_weights(dst, path)
    assert all(torch.equal(before[k], v) for k, v in dst.state_dict().items())  # nothing half-loaded


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(ValueError, match=r"expected a state dict \(name -> tensor\), got list"):
        models.load_weights(_model(), path)
