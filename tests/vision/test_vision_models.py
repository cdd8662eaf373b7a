"""Every registered backbone: any size, timm features_only, intermediates, two training steps."""

from __future__ import annotations

import copy
import math

import pytest
import timm
import torch

import vision
from .helpers import TINY_KWARGS

CONTRACT = ["longseq_vit_tiny", "longseq_vit_small", "longseq_vit_base",
            "longseq_swin_tiny", "longseq_swin_small", "longseq_swin_base"]


def test_contract_names_are_registered():
    registered = set(timm.list_models("longseq_*"))
    assert set(CONTRACT) <= registered and set(vision.MODEL_NAMES) <= registered
    assert set(vision.models.MODEL_CLASSES) == set(vision.MODEL_NAMES)


@pytest.mark.parametrize("name", vision.MODEL_NAMES)
def test_pretrained_cfg_carries_the_project_license(name):
    model = timm.create_model(name, num_classes=3, **TINY_KWARGS[name])
    assert model.pretrained_cfg["license"] == "mit"  # the project's license (pyproject.toml)
    assert isinstance(model, vision.models.MODEL_CLASSES[name])


@pytest.mark.parametrize("name", vision.MODEL_NAMES)
def test_registered_config_forward_non_square(name):
    # Real widths and depths; 120 x 200 is a multiple of neither the patch grid's windows
    # (ViT: 8 x 13 patches vs 14; Swin stage 0: 30 x 50 tokens vs 7).
    model = timm.create_model(name, pretrained=False, num_classes=7).eval()
    with torch.no_grad():
        y = model(torch.randn(1, 3, 120, 200))
    assert y.shape == (1, 7) and torch.isfinite(y).all()


@pytest.mark.parametrize("name", vision.MODEL_NAMES)
def test_tiny_forward_many_windows_and_sizes(name):
    model = timm.create_model(name, num_classes=3, **TINY_KWARGS[name]).eval()
    for h, w in [(37, 53), (64, 64), (97, 41)]:  # several padded windows per grid
        x = torch.randn(2, 3, h, w)
        with torch.no_grad():
            feats = model.forward_features(x)
            y = model.forward_head(feats)
        stride = model.feature_info[-1]["reduction"]
        assert feats.shape == (2, math.ceil(h / stride), math.ceil(w / stride), model.num_features)
        assert y.shape == (2, 3) and torch.isfinite(y).all()
        assert torch.allclose(y[:1], model(x[:1]), atol=1e-5)  # samples do not interact


@pytest.mark.parametrize("name", vision.MODEL_NAMES)
def test_features_only_shapes_and_strides(name):
    kwargs = TINY_KWARGS[name]
    out_indices = (1, 3) if "swin" in name else (0, 2)
    model = timm.create_model(name, features_only=True, out_indices=out_indices, **kwargs).eval()
    channels, strides = model.feature_info.channels(), model.feature_info.reduction()
    if "swin" in name:
        assert channels == [64, 256] and strides == [8, 32]
    else:
        patch = timm.create_model(name, **kwargs).patch_size
        assert channels == [32, 32] and strides == [patch, patch]
    h, w = 75, 130
    with torch.no_grad():
        feats = model(torch.randn(1, 3, h, w))
    assert len(feats) == 2
    for f, c, s in zip(feats, channels, strides):
        assert f.shape == (1, c, math.ceil(h / s), math.ceil(w / s))


@pytest.mark.parametrize("name", ["longseq_vit_tiny", "longseq_swin_tiny"])
def test_forward_intermediates_matches_forward_features(name):
    model = timm.create_model(name, num_classes=0, **TINY_KWARGS[name]).eval()
    x = torch.randn(1, 3, 50, 70)
    with torch.no_grad():
        final, inter = model.forward_intermediates(x)
        ref = model.forward_features(x)
        only = model.forward_intermediates(x, indices=1, intermediates_only=True)
    n = len(model.feature_info)
    assert len(inter) == n and torch.allclose(final, ref, atol=1e-6)
    assert len(only) == 1 and torch.allclose(only[0], inter[-1])
    pooled = model(x)
    assert pooled.shape == (1, model.num_features)


@pytest.mark.parametrize("name", vision.MODEL_NAMES)
def test_two_training_steps(name):
    model = timm.create_model(name, num_classes=4, drop_path_rate=0.1, **TINY_KWARGS[name])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = torch.randn(2, 3, 45, 61), torch.tensor([0, 3])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for _ in range(2):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        for pname, p in model.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        opt.step()
    assert torch.isfinite(loss)
    changed = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert any("table" in k for k in changed) or "vit" in name  # Swin's relative-position tables learn
    assert any(k.startswith("blocks.") or k.startswith("layers.") for k in changed)


def test_classifier_api_and_errors():
    model = timm.create_model("longseq_vit_tiny", num_classes=5, **TINY_KWARGS["longseq_vit_tiny"])
    assert model.get_classifier().out_features == 5
    model.reset_classifier(2, "avgmax")
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 2)
    assert model.get_classifier().in_features == 64
    with pytest.raises(ValueError, match="pretrained"):
        timm.create_model("longseq_swin_tiny", pretrained=True)
    with pytest.raises(ValueError, match="global_blocks"):
        timm.create_model("longseq_vit_tiny", depth=2, global_blocks=(5,))
    with pytest.raises(ValueError, match="global_pool"):
        timm.create_model("longseq_vit_tiny", global_pool="median", **TINY_KWARGS["longseq_vit_tiny"])


@pytest.mark.parametrize("pattern", ["bigbird", "lsh"])
def test_vit_global_blocks_accept_sparse_patterns(pattern):
    from longseq.patterns import LSH, BigBird

    global_pattern = BigBird(block=4, window_blocks=1, global_blocks=1, random_blocks=1) if pattern == "bigbird" \
        else LSH(bucket_size=4, n_hashes=2, seed=0)
    kwargs = {**TINY_KWARGS["longseq_vit_tiny"], "global_pattern": global_pattern}
    model = timm.create_model("longseq_vit_tiny", num_classes=3, **kwargs)
    assert model.blocks[1].pattern is global_pattern  # the global block keeps its sparse pattern
    y = model(torch.randn(2, 3, 90, 130))  # 6 x 9 patches
    y.sum().backward()
    assert y.shape == (2, 3) and torch.isfinite(y).all()
    assert model.blocks[1].attn.q.weight.grad is not None


def test_vit_auto_global_pattern_is_dense_then_bigbird(monkeypatch):
    from longseq.patterns import BigBird, Dense
    from vision.models import vit

    assert vit.auto_global_pattern(vit.AUTO_DENSE_MAX_TOKENS) == Dense()
    assert isinstance(vit.auto_global_pattern(vit.AUTO_DENSE_MAX_TOKENS + 1), BigBird)
    torch.manual_seed(0)
    auto = timm.create_model("longseq_vit_tiny", num_classes=3, **TINY_KWARGS["longseq_vit_tiny"]).eval()
    x = torch.randn(1, 3, 384, 400)  # 24 x 25 = 600 patches: 10 BigBird blocks of 64
    explicit = {name: copy.deepcopy(auto) for name in ("dense", "bigbird")}
    explicit["dense"].global_pattern = Dense()
    explicit["bigbird"].global_pattern = vit.auto_global_pattern(10**9)
    with torch.no_grad():
        torch.testing.assert_close(auto(x), explicit["dense"](x))
        monkeypatch.setattr(vit, "AUTO_DENSE_MAX_TOKENS", 599)  # 600 patches now count as large
        torch.testing.assert_close(auto(x), explicit["bigbird"](x))
        assert not torch.allclose(auto(x), explicit["dense"](x))
    with pytest.raises(ValueError, match="global_pattern"):
        timm.create_model("longseq_vit_tiny", global_pattern="sparse", **TINY_KWARGS["longseq_vit_tiny"])


def test_vit_auto_head_chunks_change_no_result(monkeypatch):
    """Head groups recomputed in backward (the default above AUTO_HEAD_CHUNK_TOKENS) give the
    same output and gradients as no grouping, through windows, RoPE2D and a global block,
    on the first call (empty rotary cache) and the second."""
    import longseq.layers.attention as attention_mod

    monkeypatch.setattr(attention_mod, "AUTO_HEAD_CHUNK_TOKENS", 16)
    torch.manual_seed(0)
    kwargs = dict(TINY_KWARGS["longseq_vit_tiny"], num_classes=3)
    auto = timm.create_model("longseq_vit_tiny", **kwargs)
    plain = timm.create_model("longseq_vit_tiny", head_chunks=1, **kwargs)
    plain.load_state_dict(auto.state_dict())
    assert auto.blocks[0].attn.n_head_chunks(20) == 2 and plain.blocks[0].attn.n_head_chunks(20) == 1
    for _ in range(2):
        x = torch.randn(2, 3, 80, 96)  # 5 x 6 patches: above the patched threshold
        ya, yp = auto(x), plain(x)
        torch.testing.assert_close(ya, yp, atol=1e-5, rtol=1e-5)
        ga = torch.autograd.grad(ya.square().sum(), list(auto.parameters()))
        gp = torch.autograd.grad(yp.square().sum(), list(plain.parameters()))
        for a, b in zip(ga, gp):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
