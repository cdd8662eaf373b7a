"""Image-side layers: patchify grids for any size, patch merging, the head, positions; the
timm modules behind them compute what the layers written here before them computed."""

from __future__ import annotations

import math

import pytest
import timm.layers
import torch
import torch.nn.functional as F
from timm.models import swin_transformer

from vision.models.layers import ClassifierHead, ConvStem, PatchEmbed, PatchMerging, drop_path_rates, grid_positions


@pytest.mark.parametrize("layer", [PatchEmbed, ConvStem])
@pytest.mark.parametrize("hw", [(16, 16), (17, 31), (50, 9)])
def test_patchify_grid_is_ceil(layer, hw):
    embed = layer(8, 3, 24)
    out = embed(torch.randn(2, 3, *hw))
    assert out.shape == (2, math.ceil(hw[0] / 8), math.ceil(hw[1] / 8), 24)


def test_patch_embed_pads_bottom_right_with_zeros():
    embed = PatchEmbed(4, 1, 2)
    x = torch.randn(1, 1, 5, 6)
    padded = torch.nn.functional.pad(x, (0, 2, 0, 3))
    assert torch.allclose(embed(x), embed(padded))


def test_conv_stem_rejects_non_power_of_two():
    with pytest.raises(ValueError, match="power-of-two"):
        ConvStem(12, 3, 32)
    for bad in (1, 3, 16):
        with pytest.raises(ValueError, match="first_stride"):
            ConvStem(8, 3, 32, first_stride=bad)


@pytest.mark.parametrize("first_stride", [2, 4, 8])
@pytest.mark.parametrize("hw", [(32, 32), (33, 70)])
def test_conv_stem_first_stride_keeps_the_grid(first_stride, hw):
    stem = ConvStem(8, 3, 24, first_stride=first_stride)
    convs = [m for m in stem.convs if isinstance(m, torch.nn.Conv2d)]
    assert [c.stride[0] for c in convs] == [first_stride] + [2] * (len(convs) - 1)
    assert math.prod(c.stride[0] for c in convs) == 8
    assert convs[0].kernel_size == (2 * first_stride - 1,) * 2  # overlapping windows
    out = stem(torch.randn(2, 3, *hw))
    assert out.shape == (2, math.ceil(hw[0] / 8), math.ceil(hw[1] / 8), 24)


def test_vit_passes_embed_kwargs_to_the_stem():
    import timm

    import vision  # noqa: F401  (registers the models)

    model = timm.create_model("longseq_vit_digits", patch_size=16, embed_dim=32, depth=2, num_heads=2, global_blocks=(1,),
                              embed_kwargs={"first_stride": 4})
    assert model.patch_embed.first_stride == 4
    assert model(torch.randn(1, 3, 40, 56)).shape == (1, 10)


def test_patch_merging_odd_sides_and_order():
    merge = PatchMerging(3, 6)
    x = torch.randn(2, 5, 7, 3)
    assert merge(x).shape == (2, 3, 4, 6)
    # The 2x2 neighbours are concatenated Swin-style: x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2].
    merge.norm = torch.nn.Identity()
    merge.reduction = torch.nn.Identity()
    x = torch.arange(16.0).view(1, 4, 4, 1).expand(1, 4, 4, 3)
    y = merge(x)
    assert y[0, 0, 0, ::3].tolist() == [0.0, 4.0, 1.0, 5.0]


def test_grid_positions():
    pos = grid_positions(2, 3)
    assert pos.tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]


def test_patch_embed_is_timms_and_computes_pad_conv_permute():
    embed = PatchEmbed(4, 3, 8, torch.nn.LayerNorm)
    assert isinstance(embed, timm.layers.PatchEmbed)
    assert set(embed.state_dict()) == {"proj.weight", "proj.bias", "norm.weight", "norm.bias"}  # checkpoint keys
    torch.nn.init.normal_(embed.norm.weight)
    x = torch.randn(2, 3, 13, 10)
    # The layer as written before: zero-pad bottom/right to a multiple of p, conv, to (B, gh, gw, D), norm.
    ref = embed.norm(embed.proj(F.pad(x, (0, (-10) % 4, 0, (-13) % 4))).permute(0, 2, 3, 1))
    torch.testing.assert_close(embed(x), ref, rtol=0, atol=0)
    with pytest.raises(ValueError, match="patch_size"):
        PatchEmbed(0, 3, 8)


@pytest.mark.parametrize("pool", ["avg", "max", "avgmax"])
def test_classifier_head_is_timms_and_pools_tokens(pool):
    head = ClassifierHead(6, 4, pool).eval()
    assert isinstance(head, timm.layers.ClassifierHead)
    assert set(head.state_dict()) == {"fc.weight", "fc.bias"}  # checkpoint keys
    x = torch.randn(2, 3, 5, 6)  # (B, H, W, C)
    tokens = x.flatten(1, 2)
    # The head as written before: pool the tokens (avgmax = average and max concatenated), project.
    pooled = {"avg": tokens.mean(1), "max": tokens.amax(1),
              "avgmax": torch.cat([tokens.mean(1), tokens.amax(1)], dim=-1)}[pool]
    torch.testing.assert_close(head(x, pre_logits=True), pooled)
    torch.testing.assert_close(head(x), head.fc(pooled))
    assert head.num_features == (12 if pool == "avgmax" else 6)


def test_classifier_head_reset_and_errors():
    head = ClassifierHead(6, 4, "avg")
    head.reset(3, "avgmax")
    assert head.fc.in_features == 12 and head.fc.out_features == 3 and head.pool_mode == "avgmax"
    head.reset(0)
    assert head(torch.randn(1, 2, 2, 6)).shape == (1, 12)
    with pytest.raises(ValueError, match="global_pool"):
        ClassifierHead(6, 4, "median")
    with pytest.raises(ValueError, match="global_pool"):
        ClassifierHead(6, 4, "")
    with pytest.raises(ValueError, match="num_classes"):
        head.reset(-1)


def test_patch_merging_is_timms_swin_layer():
    assert PatchMerging is swin_transformer.PatchMerging
    assert set(PatchMerging(3, 6).state_dict()) == {"norm.weight", "norm.bias", "reduction.weight"}


def test_drop_path_rates_rise_linearly_and_check_the_rate():
    assert drop_path_rates(0.0, 1) == [0.0]
    assert drop_path_rates(0.3, 4) == pytest.approx([0.0, 0.1, 0.2, 0.3])
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="drop_path_rate"):
            drop_path_rates(bad, 3)
