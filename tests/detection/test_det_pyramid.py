"""MultiScaleBackbone: levels, strides and declared channels, for plain and hierarchical bodies."""

from __future__ import annotations

import pytest
import torch

import vision  # noqa: F401  (registers the longseq_* timm models)
from vision.detection.pyramid import MultiScaleBackbone


@pytest.mark.parametrize("name", ["longseq_vit_tiny", "longseq_swin_tiny", "test_convnext"])
def test_levels_have_declared_channels_and_strides(name: str) -> None:
    torch.manual_seed(0)
    m = MultiScaleBackbone(name, channels=(24, 40, 56)).eval()
    assert m.output_shape() == {"p3": (24, 8), "p4": (40, 16), "p5": (56, 32)}
    for hw in [(100, 70), (64, 96)]:  # non-square, not a multiple of the window or the stride
        with torch.no_grad():
            feats = m(torch.randn(2, 3, *hw))
        # Input padded to a multiple of 32: (100, 70) -> (128, 96).
        hp, wp = -(-hw[0] // 32) * 32, -(-hw[1] // 32) * 32
        assert [tuple(f.shape) for f in feats] == [(2, c, hp // s, wp // s) for c, s in zip((24, 40, 56), (8, 16, 32))]
        assert all(torch.isfinite(f).all() for f in feats)


def test_plain_vit_uses_simple_feature_pyramid() -> None:
    m = MultiScaleBackbone("longseq_vit_tiny", channels=(16, 16, 16))
    assert set(m.in_strides) == {16}
    # stride 8 from a transposed conv, stride 16 as is, stride 32 max-pooled: all from the deepest map.
    assert m.sources == [len(m.in_strides) - 1] * 3
    assert any(isinstance(x, torch.nn.ConvTranspose2d) for x in m.resample[0].modules())
    assert any(isinstance(x, torch.nn.MaxPool2d) for x in m.resample[2].modules())


def test_hierarchical_body_picks_matching_stages() -> None:
    m = MultiScaleBackbone("longseq_swin_tiny", channels=(16, 16, 16))
    assert [m.in_strides[i] for i in m.sources] == [8, 16, 32]
    assert all(isinstance(r, torch.nn.Identity) for r in m.resample)


HYBRID = {"patch_size": 32, "embed_dim": 32, "depth": 2, "num_heads": 2, "window_size": 2, "global_blocks": (1,),
          "stem_features": True, "embed_kwargs": {"first_stride": 4}}


def test_hybrid_vit_takes_fine_levels_from_the_conv_stem() -> None:
    """stem_features: strides 8 and 16 come from the conv stem as they are, 32 from the blocks."""
    torch.manual_seed(0)
    m = MultiScaleBackbone("longseq_vit_digits", (8, 16, 24), HYBRID)
    assert m.in_strides == [4, 8, 16, 32]  # stem stages 4, 8, 16, then the global block
    assert [m.in_strides[i] for i in m.sources] == [8, 16, 32]
    assert all(isinstance(r, torch.nn.Identity) for r in m.resample)
    feats = m(torch.randn(2, 3, 90, 70))  # padded to 96 x 96
    assert [tuple(f.shape) for f in feats] == [(2, 8, 12, 12), (2, 16, 6, 6), (2, 24, 3, 3)]
    sum(f.square().mean() for f in feats).backward()
    assert all(p.grad is not None for p in m.body.parameters() if p.requires_grad)


def test_stem_features_do_not_change_the_blocks() -> None:
    """The same weights give the same block maps with and without the stem levels listed."""
    import timm

    kw = {k: v for k, v in HYBRID.items() if k != "stem_features"}
    plain = timm.create_model("longseq_vit_digits", **kw).eval()
    hybrid = timm.create_model("longseq_vit_digits", stem_features=True, **kw).eval()
    hybrid.load_state_dict(plain.state_dict())  # stem_features adds no parameters
    x = torch.randn(1, 3, 64, 100)
    with torch.no_grad():
        ref = plain.forward_intermediates(x, indices=[0, 1], intermediates_only=True)
        got = hybrid.forward_intermediates(x, indices=[3, 4], intermediates_only=True)
        stem = hybrid.forward_intermediates(x, indices=[1], intermediates_only=True, stop_early=True)
        assert torch.equal(plain(x), hybrid(x))
    assert all(torch.equal(a, b) for a, b in zip(ref, got))
    assert stem[0].shape == (1, 8, 8, 13)  # the stride-8 stem stage: widths 8, 8, 16, 32 (floor of 8)
    assert [f["reduction"] for f in hybrid.feature_info] == [4, 8, 16, 32, 32]
    with pytest.raises(ValueError, match="forward_stages"):
        timm.create_model("longseq_vit_tiny", depth=2, global_blocks=(1,), stem_features=True)


def test_model_kwargs_reach_timm() -> None:
    m = MultiScaleBackbone("test_convnext", (8, 8, 8), {"out_indices": (1, 2)})
    assert m.in_strides == [8, 16]
    # stride 32 is missing from the body: pooled from its deepest (stride 16) map.
    assert m.sources == [0, 1, 1]
    assert [f.shape[-1] for f in m(torch.randn(1, 3, 64, 64))] == [8, 4, 2]
    with pytest.raises(ValueError, match="model_kwargs"):
        MultiScaleBackbone(m.body, (8, 8, 8), {"out_indices": (1,)})


def test_gradients_reach_the_body() -> None:
    m = MultiScaleBackbone("test_vit", channels=(8, 8, 8))
    sum(f.mean() for f in m(torch.randn(1, 3, 64, 64))).backward()
    assert all(p.grad is not None for p in m.body.parameters() if p.requires_grad)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="same length"):
        MultiScaleBackbone("test_vit", channels=(8, 8), strides=(8, 16, 32))
    with pytest.raises(ValueError, match="ascending"):
        MultiScaleBackbone("test_vit", channels=(8, 8), strides=(16, 8))
    with pytest.raises(ValueError, match="powers of two"):
        MultiScaleBackbone("test_vit", channels=(8,), strides=(24,))
