"""Per-layer attention in the DNA models (``model.layer_patterns``): every type builds and trains
a step, errors name the layer and key, the default is unchanged, YAML configs train and reload."""

from __future__ import annotations

import pytest
import torch
import yaml

from genomics.cli import train_dna
from genomics.models import DNAClassifier, DNALanguageModel, load_model
from genomics.models.encoder import LAYER_TYPES
from longseq.layers import LowRank, MultiheadAttention, RoutingAttention
from longseq.patterns import LSH, Dense, Hierarchical, Routing, SegmentRecurrence, SlidingWindow, TopK

from .dna_data import random_dna, write_fasta
from .tiny_runs import small_config

SMALL = dict(dim=32, depth=2, heads=2, window=8)
CAUSAL = {  # type -> (entry, pattern class of the layer)
    "window": ({"type": "window", "window": 4, "dilation": 2}, SlidingWindow),
    "global": ("global", Dense),
    "lsh": ({"type": "lsh", "bucket_size": 8, "n_hashes": 1}, LSH),
    "topk": ({"type": "topk", "k": 8, "block": 16}, TopK),
    "hierarchical": ({"type": "hierarchical", "segment": 8}, Hierarchical),
    "routing": ({"type": "routing", "clusters": 4, "window": 4, "decay": 0.9}, Routing),
    "segment": ({"type": "segment", "segment": 8, "memory": 1}, SegmentRecurrence),
}


def _train_step(model: torch.nn.Module, loss_of) -> None:
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    loss = loss_of(model)
    assert torch.isfinite(loss)
    loss.backward()
    opt.step()
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))


@pytest.mark.parametrize("kind", list(CAUSAL))
def test_each_type_trains_a_step_in_the_causal_lm(kind: str) -> None:
    entry, pattern_cls = CAUSAL[kind]
    torch.manual_seed(0)
    model = DNALanguageModel(**SMALL, head_chunks=2, layer_patterns=["window", entry])
    attn = model.backbone.encoder.blocks[1].attn
    assert isinstance(attn.pattern, pattern_cls) and attn.pattern.causal
    assert isinstance(attn, RoutingAttention) == (kind == "routing")
    ids = torch.randint(0, 4, (2, 64))

    def loss(m):
        logits = m(ids)
        return torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 9), ids[:, 1:].reshape(-1))

    _train_step(model, loss)


@pytest.mark.parametrize("kind", [k for k in CAUSAL if k != "segment"] + ["lowrank"])
def test_each_type_trains_a_step_in_the_classifier(kind: str) -> None:
    entry = {"type": "lowrank", "k": 16, "max_len": 80} if kind == "lowrank" else CAUSAL[kind][0]
    torch.manual_seed(0)
    model = DNAClassifier(2, **SMALL, global_tokens=1, pool="cls", layer_patterns=[entry, "window"])
    if kind == "lowrank":
        assert isinstance(model.backbone.encoder.blocks[0].attn, LowRank)
    ids, labels = torch.randint(0, 4, (3, 60)), torch.tensor([0, 1, 1])
    mask = torch.ones(3, 60, dtype=torch.bool)
    mask[2, 50:] = False
    _train_step(model, lambda m: torch.nn.functional.cross_entropy(m(ids, mask), labels))


def test_default_is_unchanged_and_all_window_list_matches_it() -> None:
    torch.manual_seed(0)
    default = DNALanguageModel(**SMALL)
    torch.manual_seed(0)
    listed = DNALanguageModel(**SMALL, layer_patterns=["window", "window"])
    assert default.state_dict().keys() == listed.state_dict().keys()
    assert all(type(b.attn) is MultiheadAttention for b in listed.backbone.encoder.blocks)
    assert default.backbone.patterns == listed.backbone.patterns
    ids = torch.randint(0, 4, (1, 40))
    listed.load_state_dict(default.state_dict())
    with torch.no_grad():
        assert torch.equal(default.eval()(ids), listed.eval()(ids))
    assert default.config["layer_patterns"] is None


@pytest.mark.parametrize("layer_patterns, message", [
    (["window"], r"has 1 entries but depth is 2"),
    ("window", r"must be a list of 2 entries"),
    (["window", "sparse"], r"layer_patterns\[1\]\.type must be one of window, global, lsh"),
    (["window", {"type": "routing", "clusterz": 8}], r"layer_patterns\[1\]: unknown key 'clusterz' for type 'routing'"),
    ([{"type": "topk", "k": 0}, "window"], r"layer_patterns\[0\]\.k must be an int >= 1, got 0"),
    (["window", {"type": "routing", "decay": 1.5}], r"layer_patterns\[1\]\.decay must be a number in \[0, 1\)"),
    ([{"type": "lowrank", "k": 4}, "window"], r"layer_patterns\[0\] \(lowrank\): .*no causal form"),
    (["window", 3], r"layer_patterns\[1\] must be a type name or a mapping"),
])
def test_errors_name_the_layer_and_key(layer_patterns, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DNALanguageModel(**SMALL, layer_patterns=layer_patterns)


def test_other_errors() -> None:
    with pytest.raises(ValueError, match=r"layer_patterns\[0\] \(segment\): SegmentRecurrence is causal only"):
        DNAClassifier(2, **SMALL, layer_patterns=["segment", "window"])
    with pytest.raises(ValueError, match=r"layer_patterns\[0\] \(lowrank\): lowrank needs max_len"):
        DNAClassifier(2, **SMALL, layer_patterns=[{"type": "lowrank"}, "window"])
    with pytest.raises(ValueError, match="lsh_layers or in model.layer_patterns, not both"):
        DNALanguageModel(**SMALL, lsh_layers=[0], layer_patterns=["window", "window"])
    with pytest.raises(ValueError, match="need kv_heads == heads"):
        DNALanguageModel(**SMALL, kv_heads=1, layer_patterns=["window", "lsh"])
    assert set(LAYER_TYPES) == set(CAUSAL) | {"lowrank"}


def test_cached_decoding_refuses_unbounded_layers_naming_them() -> None:
    model = DNALanguageModel(**SMALL, layer_patterns=["window", "topk"])
    with pytest.raises(ValueError, match="layer 1: .*TopK"):
        model.new_cache(1)


def test_yaml_layer_patterns_train_and_reload(tmp_path, monkeypatch) -> None:
    """A YAML ``model.layer_patterns`` trains through longseq-train-dna and load_model rebuilds it."""
    monkeypatch.setenv("LONGSEQ_CACHE_DIR", str(tmp_path / "cache"))
    config = small_config("lm", tmp_path / "lm.yaml")
    cfg = yaml.safe_load(config.read_text())
    cfg["model"].update(depth=3, layer_patterns=["window", {"type": "routing", "clusters": 4, "window": 8},
                                                 {"type": "segment", "segment": 16}])
    config.write_text(yaml.safe_dump(cfg))
    fasta = write_fasta(tmp_path / "train.fa", {"chr": random_dna(12000, 1)})
    summary = train_dna.run(["--task", "lm", "--max-steps", "2", "--config", str(config), "--out-dir",
                             str(tmp_path / "runs"), "--fasta", str(fasta), "--seq-len", "256", "--no-markov"])
    model, _, info = load_model(summary["checkpoint"])
    blocks = model.backbone.encoder.blocks
    assert isinstance(blocks[1].attn, RoutingAttention) and bool(blocks[1].attn.routing.initialised)
    assert isinstance(blocks[2].attn.pattern, SegmentRecurrence)
    assert info.model_config["layer_patterns"][1] == {"type": "routing", "clusters": 4, "window": 8}


def test_docs_layer_patterns_yaml_builds_and_trains() -> None:
    """The ``model:`` YAML in docs/patterns.md builds a causal LM (at a small width) that trains a step."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "patterns.md").read_text(encoding="utf-8")
    (block,) = re.findall(r"^```yaml\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    model_cfg = yaml.safe_load(block)["model"]
    torch.manual_seed(0)
    model = DNALanguageModel(dim=32, heads=2, window=64, **model_cfg)
    assert isinstance(model.backbone.encoder.blocks[1].attn, RoutingAttention)
    ids = torch.randint(0, 4, (1, 300))
    _train_step(model, lambda m: m(ids).logsumexp(-1).mean())


@pytest.mark.parametrize("spec", ["lsh", {"type": "topk", "k": 8, "block": 16}, {"type": "hierarchical", "segment": 16},
                                  {"type": "routing", "clusters": 4, "window": 8}, {"type": "segment", "segment": 16}],
                         ids=["lsh", "topk", "hierarchical", "routing", "segment"])
def test_every_layer_pattern_trains_under_cpu_bf16_autocast(spec) -> None:
    """bf16-mixed (what ``precision: auto`` picks on CPUs with bf16 units) runs every pattern."""
    torch.manual_seed(0)
    model = DNALanguageModel(dim=32, depth=2, heads=2, window=8, kmer_kernel=3, layer_patterns=["window", spec])
    ids = torch.randint(0, 4, (2, 200))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(ids)
    out.float().logsumexp(-1).mean().backward()
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)
