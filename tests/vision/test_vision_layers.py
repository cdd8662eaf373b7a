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
