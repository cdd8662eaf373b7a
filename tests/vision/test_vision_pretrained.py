"""timm checkpoints load into the longseq backbones: ViT-Ti/S/B and Swin-T, .pth and
.safetensors, equal to timm's own models where the attention is the same; position
tables and Swin's relative tables resampled; mismatches reported by name."""

from __future__ import annotations

import logging

import pytest
import timm
import torch
from timm.layers import resample_abs_pos_embed, resize_rel_pos_bias_table

import vision
from vision.models import CheckpointMismatchError

from .photo_data import save_checkpoint, timm_model


def _load(name: str, path, **kwargs) -> torch.nn.Module:
    return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), **kwargs).eval()


@pytest.fixture(scope="module")
def vit_small(tmp_path_factory):
    """timm's vit_small_patch16_224, randomly initialised, and its checkpoint in both formats."""
    folder = tmp_path_factory.mktemp("vit_small")
    model = timm_model("vit_small_patch16_224")
    files = {fmt: save_checkpoint(model, folder / f"vit_small_patch16_224.{fmt}") for fmt in ("pth", "safetensors")}
    return model, files


@pytest.fixture(scope="module")
def swin_tiny(tmp_path_factory):
    model = timm_model("swin_tiny_patch4_window7_224")
    return model, save_checkpoint(model, tmp_path_factory.mktemp("swin") / "swin_tiny_patch4_window7_224.pth")


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_vit_small_all_global_equals_timm(vit_small, fmt):
    reference, files = vit_small
    model = _load("longseq_vit_small", files[fmt], global_blocks="all")
    assert model.num_prefix_tokens == 1 and model.pos_grid == (14, 14) and model.head.pool_mode == "token"
    torch.testing.assert_close(model.pos_embed, reference.pos_embed, rtol=0, atol=0)
    torch.testing.assert_close(model.cls_token, reference.cls_token, rtol=0, atol=0)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        ours, theirs = model(x), reference(x)
    assert ours.shape == (2, 1000)
    assert (ours - theirs).abs().max().item() < 1e-4


@pytest.mark.parametrize(("ours", "theirs", "kwargs"), [
    ("longseq_vit_tiny", "vit_tiny_patch16_224", {}),
    ("longseq_vit_base", "vit_base_patch16_224", {"depth": 2}),  # base widths, two blocks: a fast check
])
def test_vit_tiny_and_base_widths_equal_timm(tmp_path, ours, theirs, kwargs):
    reference = timm_model(theirs, **kwargs)
    path = save_checkpoint(reference, tmp_path / f"{theirs}.safetensors")
    model = _load(ours, path, global_blocks="all", **kwargs)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert (model(x) - reference(x)).abs().max().item() < 1e-4


def test_vit_default_windows_run_at_other_sizes_with_the_table(vit_small):
    reference, files = vit_small
    model = _load("longseq_vit_small", files["pth"], num_classes=3)
    assert model.global_blocks == (2, 5, 8, 11) and model.pos_embed is not None
    x = torch.randn(2, 3, 160, 290)  # 10 x 19 patches: the 14 x 14 table is resampled per forward
    with torch.no_grad():
        y = model(x)
        assert y.shape == (2, 3) and torch.isfinite(y).all()
        features = model.forward_features(x)
        assert features.shape == (2, 1 + 10 * 19, 384)  # class token first, as timm's ViT
        model.pos_embed.mul_(0.0)
        assert not torch.allclose(model(x), y)  # the position table is used
    maps = model.forward_intermediates(x, indices=2, intermediates_only=True)
    assert [tuple(m.shape) for m in maps] == [(2, 384, 10, 19)] * 2


def test_vit_img_size_resamples_the_table_on_load(vit_small):
    reference, files = vit_small
    model = _load("longseq_vit_small", files["pth"], img_size=384)
    assert model.pos_grid == (24, 24)
    expected = resample_abs_pos_embed(reference.pos_embed, new_size=[24, 24], old_size=[14, 14], num_prefix_tokens=1)
    torch.testing.assert_close(model.pos_embed, expected)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 384, 384)).shape == (1, 1000)


def test_vit_architecture_arguments_override_the_checkpoint(vit_small):
    _, files = vit_small
    model = _load("longseq_vit_small", files["pth"], class_token=False, global_pool="avg", num_classes=2)
    assert model.cls_token is None and model.pos_embed.shape == (1, 196, 384)  # prefix row dropped
    with torch.no_grad():
        assert model(torch.randn(1, 3, 96, 128)).shape == (1, 2)


def test_vit_features_only_from_pretrained(vit_small):
    _, files = vit_small
    backbone = _load("longseq_vit_small", files["pth"], features_only=True, out_indices=(5, 11))
    with torch.no_grad():
        maps = backbone(torch.randn(1, 3, 256, 320))
    assert [tuple(m.shape) for m in maps] == [(1, 384, 16, 20)] * 2


def test_swin_tiny_equals_timm(swin_tiny):
    reference, path = swin_tiny
    model = _load("longseq_swin_tiny", path)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert (model(x) - reference(x)).abs().max().item() < 1e-4


def test_swin_window_change_resizes_the_tables(swin_tiny):
    reference, path = swin_tiny
    model = _load("longseq_swin_tiny", path, window_size=8, num_classes=4)
    table = model.layers[2].blocks[1].attn.bias.table
    assert table.shape == (15 * 15, 12)
    source = reference.layers[2].blocks[1].attn.relative_position_bias_table
    torch.testing.assert_close(table, resize_rel_pos_bias_table(source, (8, 8), (225, 12)))
    torch.testing.assert_close(model.layers[2].blocks[1].attn.q.weight,
                               reference.layers[2].blocks[1].attn.qkv.weight[:384])
    with torch.no_grad():
        y = model(torch.randn(1, 3, 256, 200))
    assert y.shape == (1, 4) and torch.isfinite(y).all()


def test_original_swin_layout_is_reindexed(swin_tiny, tmp_path):
    """Checkpoints of the original layout merge patches at the end of a stage and carry buffers."""
    reference, _ = swin_tiny
    state = {}
    for key, value in reference.state_dict().items():
        for stage in (1, 2, 3):
            key = key.replace(f"layers.{stage}.downsample", f"layers.{stage - 1}.downsample")
        state[key.replace("head.fc.", "head.")] = value
    state["layers.0.blocks.0.attn.relative_position_index"] = torch.zeros(49, 49, dtype=torch.long)
    torch.save({"model": state}, tmp_path / "original.pth")
    model = _load("longseq_swin_tiny", tmp_path / "original.pth")
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert (model(x) - reference(x)).abs().max().item() < 1e-4


def test_missing_and_unused_keys_are_logged_by_name(vit_small, tmp_path, caplog):
    reference, _ = vit_small
    state = dict(reference.state_dict())
    del state["blocks.3.norm1.weight"]
    state["fc_norm.weight"] = torch.ones(384)
    path = tmp_path / "edited.pth"
    torch.save(state, path)
    with caplog.at_level(logging.WARNING, logger="vision.models.checkpoint_io"):
        model = _load("longseq_vit_small", path)
    text = caplog.text
    assert str(path) in text and "blocks.3.attn_branch.norm.weight" in text and "fc_norm.weight" in text
    torch.testing.assert_close(model.blocks[0].attn.kv.weight, reference.blocks[0].attn.qkv.weight[384:])


def test_architecture_mismatch_names_file_and_shapes(tmp_path):
    path = save_checkpoint(timm_model("vit_tiny_patch16_224"), tmp_path / "vit_tiny_patch16_224.pth")
    with pytest.raises(CheckpointMismatchError) as info:
        _load("longseq_vit_small", path)
    message = str(info.value)
    assert str(path) in message and "patch_embed.proj.weight" in message
    assert "(192, 3, 16, 16)" in message and "(384, 3, 16, 16)" in message


def test_unrelated_file_and_missing_file(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"encoder.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(CheckpointMismatchError, match="no tensor matches"):
        _load("longseq_swin_tiny", path)
    with pytest.raises(FileNotFoundError, match="not found"):
        _load("longseq_vit_small", tmp_path / "absent.pth")
    with pytest.raises(ValueError, match="pretrained_cfg_overlay"):
        timm.create_model("longseq_vit_small", pretrained=True)


def test_create_pretrained_returns_the_rebuilding_arguments(vit_small):
    _, files = vit_small
    model, kwargs = vision.models.create_pretrained("longseq_vit_small", files["safetensors"], num_classes=2,
                                                    window_size=7)
    assert kwargs["class_token"] and kwargs["pos_embed"] == "learn" and kwargs["window_size"] == 7
    rebuilt = timm.create_model("longseq_vit_small", num_classes=2, **kwargs)
    rebuilt.load_state_dict(model.state_dict())  # same architecture, strictly
