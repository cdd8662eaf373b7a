"""timm's training hooks on the longseq backbones: gradient checkpointing, the no-decay
list, and the parameter groups that timm's layer-wise LR decay builds from."""

from __future__ import annotations

import pytest
import timm
import torch
from timm.optim import create_optimizer_v2, param_groups_layer_decay
from torch.utils.checkpoint import checkpoint

from vision.models import swin as swin_module
from vision.models import vit as vit_module
from vision.tasks.classification import ImageClassificationTask

from .helpers import TINY_KWARGS

VIT_TOKENS = dict(TINY_KWARGS["longseq_vit_tiny"], pos_embed="learn", class_token=True, global_pool="token")
MODELS = {
    "vit": ("longseq_vit_tiny", TINY_KWARGS["longseq_vit_tiny"]),
    "vit_tokens": ("longseq_vit_tiny", VIT_TOKENS),
    "swin": ("longseq_swin_tiny", TINY_KWARGS["longseq_swin_tiny"]),
}


def _model(key: str) -> torch.nn.Module:
    name, kwargs = MODELS[key]
    torch.manual_seed(0)
    return timm.create_model(name, num_classes=3, **kwargs)


@pytest.mark.parametrize("key", list(MODELS))
def test_grad_checkpointing_keeps_outputs_and_gradients(key, monkeypatch):
    plain, recomputed = _model(key), _model(key)
    recomputed.set_grad_checkpointing()
    calls = []
    module = vit_module if key.startswith("vit") else swin_module
    monkeypatch.setattr(module, "checkpoint", lambda *a, **k: calls.append(1) or checkpoint(*a, **k))
    x = torch.randn(2, 3, 52, 60)
    outputs = [m(x) for m in (plain, recomputed)]
    torch.testing.assert_close(outputs[0], outputs[1])
    grads = [torch.autograd.grad(y.square().sum(), list(m.parameters())) for y, m in zip(outputs, (plain, recomputed))]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert calls  # the blocks ran under checkpoint
    recomputed.set_grad_checkpointing(False)
    calls.clear()
    recomputed(x).sum().backward()
    assert not calls


def test_no_weight_decay_names():
    assert _model("vit").no_weight_decay() == set()
    assert _model("vit_tokens").no_weight_decay() == {"pos_embed", "cls_token"}
    swin = _model("swin")
    tables = swin.no_weight_decay()
    assert tables and all(name.endswith("attn_branch.attn.bias.table") for name in tables)
    assert len(tables) == sum(len(stage.blocks) for stage in swin.layers)


@pytest.mark.parametrize("key", list(MODELS))
def test_layer_decay_groups_by_depth(key):
    model = _model(key)
    groups = param_groups_layer_decay(model, weight_decay=0.05, no_weight_decay_list=model.no_weight_decay(),
                                      layer_decay=0.5)
    scale_of = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    decay_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert set(scale_of) == {id(p) for p in named.values()}  # every parameter in one group
    assert scale_of[id(named["patch_embed.proj.weight"])] == min(scale_of.values())
    assert scale_of[id(named["head.fc.weight"])] == 1.0
    first = "blocks.0" if key.startswith("vit") else "layers.0.blocks.0"
    last = "blocks.2" if key.startswith("vit") else "layers.3.blocks.0"
    query = "attn_branch.attn.q.weight"
    assert scale_of[id(named[f"{first}.{query}"])] < scale_of[id(named[f"{last}.{query}"])]
    for name in model.no_weight_decay():
        assert decay_of[id(named[name])] == 0.0
    optimizer = create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=0.05, layer_decay=0.5)
    model(torch.randn(1, 3, 40, 40)).sum().backward()
    optimizer.step()


def test_task_layer_decay_sets_group_rates():
    task = ImageClassificationTask(_model("vit_tokens"), num_classes=3, lr=1e-3, layer_decay=0.5)
    groups = task.parameter_groups()
    # stem, three blocks, then the final norm and head: five depths, each half the next's rate
    assert sorted({g["lr"] for g in groups}) == pytest.approx([1e-3 * 0.5**k for k in range(4, -1, -1)])
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    assert lr_of[id(task.backbone.cls_token)] == pytest.approx(1e-3 * 0.5**4)
    assert lr_of[id(task.backbone.head.fc.weight)] == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="layer_decay"):
        ImageClassificationTask(_model("vit"), num_classes=3, layer_decay=1.5)


def test_task_leaves_tokens_undecayed():
    task = ImageClassificationTask(_model("vit_tokens"), num_classes=3)
    undecayed = {id(p) for g in task.parameter_groups() if g["weight_decay"] == 0.0 for p in g["params"]}
    assert id(task.backbone.pos_embed) in undecayed and id(task.backbone.cls_token) in undecayed
    assert id(task.backbone.blocks[0].attn.q.weight) not in undecayed
