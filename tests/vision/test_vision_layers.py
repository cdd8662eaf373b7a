"""Image-side layers: patchify grids for any size, patch merging, pooling, positions."""

from __future__ import annotations

import math

import pytest
import torch

from vision.models.layers import ConvStem, PatchEmbed, PatchMerging, grid_positions, pool_tokens


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


def test_grid_positions_and_pooling():
    pos = grid_positions(2, 3)
    assert pos.tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]
    x = torch.randn(2, 5, 4)
    assert torch.equal(pool_tokens(x, "max"), x.amax(1))
    assert pool_tokens(x, "avgmax").shape == (2, 8)
    with pytest.raises(ValueError, match="global_pool"):
        pool_tokens(x, "median")
