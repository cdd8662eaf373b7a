"""Routing attention (clusters plus window) against the dense cluster-or-window mask, and
its owned state (online k-means) inside a layer."""

from __future__ import annotations

import pytest
import torch

from longseq import attend
from longseq.kernels.routing import routing_attention
from longseq.layers import RoutingAttention, RoutingState
from longseq.patterns import Routing

from .test_new_patterns import _check_grads, _inputs, masked_reference


@pytest.mark.parametrize("key_mask", [False, True])
@pytest.mark.parametrize("L", [37, 150])
@pytest.mark.parametrize("pattern", [Routing(3, 2), Routing(4, 5, causal=True), Routing(2), Routing(8, 70, iters=0)],
                         ids=repr)
def test_routing_matches_cluster_window_mask(pattern, L, key_mask):
    q, k, v = _inputs(2, 2, L, 8)
    km = (torch.rand(2, L) > 0.3) if key_mask else None
    out = attend(q, k, v, pattern, key_mask=km)
    ref = masked_reference(q, k, v, pattern.dense_masks(q, k, km))
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=1e-10)
    _check_grads(out, ref, (q, k, v), 1e-10)


@pytest.mark.parametrize("causal", [False, True])
def test_routing_large_clusters_in_chunks(monkeypatch, causal):
    """A pair budget far below one cluster's queries x keys: every cluster runs in query
    chunks (recomputed in backward, causal chunks trimmed to their keys), same results."""
    import longseq.kernels.routing as kernel

    monkeypatch.setattr(kernel, "_PAIR_BUDGET", 2 * 2 * 7)
    pattern = Routing(2, 3, causal=causal)
    q, k, v = _inputs(2, 2, 61, 8)
    km = torch.rand(2, 61) > 0.2
    out = attend(q, k, v, pattern, key_mask=km)
    ref = masked_reference(q, k, v, pattern.dense_masks(q, k, km))
    torch.testing.assert_close(out, ref, atol=1e-10, rtol=1e-10)
    _check_grads(out, ref, (q, k, v), 1e-10)


def test_routing_given_centroids_and_hand_checked_mask():
    # two directions, two clusters: tokens 0, 2 on +x, tokens 1, 3 on +y; no window
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, 3.0]]).view(1, 1, 4, 2)
    c = torch.eye(2).view(1, 2, 2)
    p = Routing(2)
    m = p.dense_masks(x, x, centroids=c)[0, 0]
    assert m.int().tolist() == [[1, 0, 1, 0], [0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 0, 1]]
    v = torch.randn(1, 1, 4, 2)
    out = routing_attention(p, x, x, v, key_mask=None, bias=None, dropout_p=0.0, scale=1.0, centroids=c)
    torch.testing.assert_close(out, masked_reference(x, x, v, m[None, None], scale=1.0))
    # queries all in one cluster, keys all in the other: only the window part remains
    qx, ky = torch.tensor([1.0, 0.0]).expand(1, 1, 4, 2), torch.tensor([0.0, 1.0]).expand(1, 1, 4, 2)
    out = routing_attention(Routing(2, 1), qx, ky, v, key_mask=None, bias=None, dropout_p=0.0, scale=1.0,
                            centroids=c)
    band = Routing(2, 1).dense_masks(qx, ky, centroids=c)
    assert torch.equal(band[0, 0], (torch.arange(4)[:, None] - torch.arange(4)[None, :]).abs() <= 1)
    torch.testing.assert_close(out, masked_reference(qx, ky, v, band, scale=1.0))
    with pytest.raises(ValueError, match="centroids must have shape"):
        routing_attention(p, x, x, v, key_mask=None, bias=None, dropout_p=0.0, scale=1.0, centroids=c[:, :1])


def test_routing_gqa_and_dropout():
    p = Routing(3, 2)
    q = torch.randn(1, 4, 40, 8, requires_grad=True)
    k, v = torch.randn(1, 2, 40, 8), torch.randn(1, 2, 40, 8)
    out = attend(q, k, v, p)
    ke, ve = k.repeat_interleave(2, 1), v.repeat_interleave(2, 1)
    torch.testing.assert_close(out, masked_reference(q, ke, ve, p.dense_masks(q, ke)), atol=1e-5, rtol=1e-5)
    attend(q, k, v, p, dropout_p=0.3).sum().backward()
    assert torch.isfinite(q.grad).all()


def test_routing_bf16_and_errors():
    p = Routing(3, 4, causal=True)
    q, k, v = (torch.randn(2, 2, 70, 16) for _ in range(3))
    out = attend(q.bfloat16(), k.bfloat16(), v.bfloat16(), p)
    qb, kb = q.bfloat16(), k.bfloat16()
    ref = masked_reference(q, k, v, p.dense_masks(qb, kb))
    torch.testing.assert_close(out.float(), ref, atol=3e-2, rtol=3e-2)
    with pytest.raises(ValueError, match="data-dependent"):
        p.dense_mask(8)
    with pytest.raises(ValueError, match="Routing.clusters"):
        Routing(0)
    with pytest.raises(TypeError, match="centroids_for"):
        Routing(2, state=object())
    assert Routing(2, 3, state=RoutingState(1, 2, 4)) == Routing(2, 3)  # the state is not part of identity


def test_routing_state_in_a_layer():
    torch.manual_seed(0)
    layer = RoutingAttention(32, 4, Routing(4, 3, causal=True), decay=0.9)
    assert not bool(layer.routing.initialised)
    x = torch.randn(2, 25, 32, requires_grad=True)
    y = layer(x)  # first call: centroids fitted to this batch, then an EMA step
    assert bool(layer.routing.initialised) and y.shape == x.shape
    loss = layer.commitment_loss
    assert loss is not None and loss.requires_grad and float(loss.detach()) >= 0
    (y.sum() + loss).backward()
    assert torch.isfinite(x.grad).all() and layer.q.weight.grad is not None
    before = layer.routing.centroids.clone()
    layer(torch.randn(2, 25, 32))
    assert not torch.equal(before, layer.routing.centroids)  # trained: moved
    assert torch.allclose(layer.routing.centroids.norm(dim=-1), torch.ones(4, 4))
    layer.eval()
    before = layer.routing.centroids.clone()
    with torch.no_grad():
        layer(torch.randn(1, 30, 32))
    assert torch.equal(before, layer.routing.centroids) and layer.commitment_loss is None
    # eval output is attention under the state's centroids
    h = torch.randn(1, 30, 32)
    with torch.no_grad():
        y = layer(h)
        q = layer.q(h).view(1, 30, 4, 8).transpose(1, 2)
        k, v = layer.kv(h).view(1, 30, 2, 4, 8).unbind(2)
        k, v = k.transpose(1, 2), v.transpose(1, 2)
        mask = layer.pattern.dense_masks(q, k, centroids=layer.routing.centroids)
        ref = masked_reference(q, k, v, mask).transpose(1, 2).reshape(1, 30, 32)
    torch.testing.assert_close(y, layer.proj(ref), atol=1e-5, rtol=1e-5)
    # saved and restored with the module
    fresh = RoutingAttention(32, 4, Routing(4, 3, causal=True))
    fresh.load_state_dict(layer.state_dict())
    assert torch.equal(fresh.routing.centroids, layer.routing.centroids) and bool(fresh.routing.initialised)


def test_routing_state_more_clusters_than_tokens():
    layer = RoutingAttention(16, 2, Routing(8, 1))
    y = layer(torch.randn(1, 3, 16), key_mask=torch.tensor([[True, False, True]]))
    assert torch.isfinite(y).all()
    with pytest.raises(ValueError, match="head_chunks"):
        RoutingAttention(16, 2, Routing(2), head_chunks=2)
