"""The backbones' windowed attention equals independent references (ViTDet and Swin style).

Each reference recomputes one block's attention from its weights with plain
``scaled_dot_product_attention``: once with the pattern's dense mask over all tokens, and
once the way ViTDet / Swin do it (pad, roll, partition into windows, attend inside each
window with Swin's region mask and relative-position table, undo). Padding tokens are
masked in the references because longseq never attends them.
"""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F

from longseq.patterns import Window2D
from longseq.windows import window_partition, window_unpartition
from vision.models.layers import grid_positions


@pytest.mark.parametrize("hw,ws", [((5, 7), 3), ((8, 8), 4), ((9, 4), 4), ((2, 3), 4)])
def test_window_partition_round_trip(hw, ws):
    x = torch.randn(2, *hw, 5)
    windows, (hp, wp) = window_partition(x, ws)
    assert hp % ws == 0 and wp % ws == 0 and hp - hw[0] < ws and wp - hw[1] < ws
    assert windows.shape == (2 * (hp // ws) * (wp // ws), ws, ws, 5)
    assert torch.equal(window_unpartition(windows, ws, (hp, wp), hw), x)
    # Padding is zeros and only zeros were added.
    assert windows.abs().sum() == pytest.approx(x.abs().sum().item(), rel=1e-5)


def _qkv(attn, tokens, positions=None):
    B, L, _ = tokens.shape
    q = attn.q(tokens).view(B, L, attn.heads, attn.head_dim).transpose(1, 2)  # B, nh, L, hd
    k, v = attn.kv(tokens).view(B, L, 2, attn.heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    if attn.rope is not None:
        q, k = attn.rope(q, positions), attn.rope(k, positions)
    return q, k, v


def _dense_ref(attn, tokens, pattern, positions=None):
    """SDPA over all tokens with the pattern's dense mask and the bias module's values."""
    B, L, C = tokens.shape
    q, k, v = _qkv(attn, tokens, positions)
    mask = torch.zeros(L, L).masked_fill(~pattern.dense_mask(L), float("-inf"))
    if attn.bias is not None:
        idx = torch.arange(L)
        mask = mask + attn.bias.tile(idx, idx, pattern)  # nh, L, L
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return attn.proj(out.transpose(1, 2).reshape(B, L, C))


def _windowed_ref(attn, tokens, hw, ws, shift=0, table=None, positions=None):
    """ViTDet / Swin: pad, roll by -shift, partition, attend per window, undo."""
    B, L, C = tokens.shape
    H, W = hw
    nh, hd = attn.heads, attn.head_dim
    q, k, v = (t.transpose(1, 2).reshape(B, H, W, nh * hd) for t in _qkv(attn, tokens, positions))
    valid = torch.ones(1, H, W, 1)
    hp, wp = -(-H // ws) * ws, -(-W // ws) * ws
    region = torch.zeros(1, hp, wp, 1)
    if shift:
        cnt = 0
        for hs in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
            for vs in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
                region[:, hs, vs, :] = cnt
                cnt += 1

    def prep(t):  # pad, roll, partition -> (B*nW, ws*ws, ch)
        t = F.pad(t, (0, 0, 0, wp - W, 0, hp - H))
        t = torch.roll(t, (-shift, -shift), dims=(1, 2))
        return window_partition(t, ws)[0].flatten(1, 2)

    qw, kw, vw = (prep(t).view(-1, ws * ws, nh, hd).transpose(1, 2) for t in (q, k, v))
    keep = prep(valid)[..., 0] > 0  # (nW, ws*ws) real tokens
    reg = window_partition(region, ws)[0].flatten(1, 2)[..., 0]  # region ids, already rolled frame
    same = reg[:, :, None] == reg[:, None, :]
    allowed = same & keep[:, None, :]  # nW, ws*ws, ws*ws
    mask = torch.zeros(allowed.shape).masked_fill(~allowed, float("-inf"))[:, None]  # nW, 1, n, n
    if table is not None:
        c = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(1)
        rel = (c[:, :, None] - c[:, None, :]).permute(1, 2, 0) + ws - 1
        index = rel[..., 0] * (2 * ws - 1) + rel[..., 1]
        mask = mask + table[index].permute(2, 0, 1)[None]  # nW, nh, n, n
    mask = mask.repeat(B, 1, 1, 1)
    out = F.scaled_dot_product_attention(qw, kw, vw, attn_mask=mask)  # B*nW, nh, n, hd
    out = out.transpose(1, 2).reshape(-1, ws, ws, nh * hd)
    out = window_unpartition(out, ws, (hp, wp), (hp, wp))
    out = torch.roll(out, (shift, shift), dims=(1, 2))[:, :H, :W]
    return attn.proj(out.reshape(B, L, C))


@pytest.mark.parametrize("hw", [(5, 7), (6, 6), (4, 9)])
def test_vit_window_block_matches_references(hw):
    ws = 3
    model = timm.create_model("longseq_vit_tiny", embed_dim=32, depth=2, num_heads=2, window_size=ws,
                              global_blocks=(1,), num_classes=0).eval()
    attn = model.blocks[0].attn
    H, W = hw
    tokens, positions = torch.randn(2, H * W, 32), grid_positions(H, W)
    pattern = Window2D(ws, grid=hw)
    with torch.no_grad():
        got = attn(tokens, pattern=pattern, positions=positions)
        dense = _dense_ref(attn, tokens, pattern, positions)
        vitdet = _windowed_ref(attn, tokens, hw, ws, positions=positions)
    torch.testing.assert_close(got, dense, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got, vitdet, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("hw,shift_block", [((7, 10), 0), ((7, 10), 1), ((9, 8), 1), ((12, 12), 1)])
def test_swin_block_matches_references(hw, shift_block):
    ws = 4
    model = timm.create_model("longseq_swin_tiny", embed_dim=16, depths=(2,), num_heads=(2,), window_size=ws,
                              num_classes=0).eval()
    block = model.layers[0].blocks[shift_block]
    attn = block.attn
    attn.bias.table.data.normal_()  # large enough that a misplaced bias shows
    shift = ws // 2 if shift_block else 0
    assert block.pattern.shift == shift
    H, W = hw
    tokens = torch.randn(2, H * W, 16)
    pattern = Window2D(ws, grid=hw, shift=shift)
    with torch.no_grad():
        got = attn(tokens, pattern=pattern)
        dense = _dense_ref(attn, tokens, pattern)
        swin = _windowed_ref(attn, tokens, hw, ws, shift=shift, table=attn.bias.table)
    torch.testing.assert_close(got, dense, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got, swin, atol=1e-5, rtol=1e-4)


def test_swin_stage_uses_the_grid_of_the_image():
    """The stage builds its patterns from the actual grid: output equals block-by-block references."""
    ws = 4
    model = timm.create_model("longseq_swin_tiny", embed_dim=16, depths=(2,), num_heads=(2,), window_size=ws,
                              num_classes=0).eval()
    stage = model.layers[0]
    for block in stage.blocks:
        block.attn.bias.table.data.normal_()
    x = torch.randn(1, 9, 11, 16)
    with torch.no_grad():
        out = stage(x)
        t = x.reshape(1, 99, 16)
        for i, block in enumerate(stage.blocks):
            a = block.attn_branch
            t = t + _windowed_ref(
                a.attn, a.norm(t), (9, 11), ws, shift=(ws // 2) * i, table=a.attn.bias.table)
            t = t + block.ff_branch(t)
    torch.testing.assert_close(out.reshape(1, 99, 16), t, atol=1e-5, rtol=1e-4)
