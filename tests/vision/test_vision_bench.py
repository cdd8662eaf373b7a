"""The vision benchmark command on a tiny size: measurements in-process and in a worker, the plot."""

from __future__ import annotations

import pytest

from longseq.hardware import cpu_description
from vision.cli import bench_vision


def _load():
    return bench_vision


def test_worker_row_and_plot(tmp_path):
    bench = _load()
    row = bench.worker(dict(model="longseq_vit_tiny", size=48, mode="train", batch=1, repeats=1, threads=1, flops=True))
    assert row["status"] == "ok" and set(bench.FIELDS) == set(row)
    assert row["seconds"] > 0 and row["peak_rss_gb"] > 0 and row["params_m"] > 1
    assert row["cpu"] == cpu_description()
    # 3 x 3 tokens x ~2 FLOPs per parameter (5.5M): ~0.1 GFLOP forward, tripled for training.
    assert 0.05 < row["gflops"] < 5 and abs(row["gflops_per_s"] * row["seconds"] - row["gflops"]) < 1e-6
    infer = bench.worker(dict(model="longseq_vit_tiny", size=48, mode="infer", batch=1, repeats=1, threads=1,
                              flops=True))
    assert abs(row["gflops"] - 3 * infer["gflops"]) < 1e-6
    bench.plot([row, infer, {"model": "x", "size": 48, "mode": "train", "status": "timeout>1s"}],
               tmp_path / "b.png")
    assert (tmp_path / "b.png").stat().st_size > 1000


def test_bigbird_variant_builds():
    bench = _load()
    model = bench.build("longseq_vit_tiny+bigbird", 64)
    assert type(model.blocks[2].pattern).__name__ == "BigBird"
    assert type(model.blocks[0].pattern).__name__ == "Window2D"


def test_model_kwargs_after_colon():
    bench = _load()
    model = bench.build('longseq_vit_digits:{"patch_size": 32, "mlp_ratio": 2.0, "embed_kwargs": {"first_stride": 4}}', 64)
    assert model.patch_size == 32 and model.patch_embed.first_stride == 4
    wide = bench.build('longseq_vit_digits:{"patch_size": 32, "embed_kwargs": {"first_stride": 4}}', 64)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(wide) - n(model) == 6 * 2 * (2 * 128 * 128) + 6 * 2 * 128  # 6 blocks, half-width MLPs
    dense = bench.build('longseq_vit_tiny+dense:{"depth": 3, "global_blocks": [2]}', 64)
    assert len(dense.blocks) == 3 and type(dense.blocks[2].pattern).__name__ == "Dense"
    for bad in ("longseq_vit_tiny:[1]", "longseq_vit_tiny:{depth"):
        with pytest.raises(ValueError, match="JSON object"):
            bench.build(bad, 64)


def test_run_one_measures_in_a_fresh_worker_process():
    row = bench_vision.run_one(dict(model="longseq_vit_tiny", size=32, mode="infer", batch=1, repeats=1, threads=1,
                                    flops=False), timeout=300)
    assert row["status"] == "ok", row
    assert row["seconds"] > 0 and row["peak_rss_gb"] > 0 and row["cpu"] == cpu_description()


def test_bf16_mixed_runs_the_forward_under_autocast(monkeypatch):
    import torch

    seen = set()
    handle = torch.nn.modules.module.register_module_forward_hook(
        lambda module, args, out: seen.add(out.dtype) if isinstance(out, torch.Tensor) else None)
    try:
        spec = dict(model="longseq_vit_tiny", size=48, mode="train", batch=1, repeats=1, threads=1, flops=False)
        row = bench_vision.worker({**spec, "precision": "bf16-mixed"})
        assert row["status"] == "ok" and row["precision"] == "bf16-mixed" and torch.bfloat16 in seen
        seen.clear()
        assert bench_vision.worker(spec)["precision"] == "fp32" and torch.bfloat16 not in seen
    finally:
        handle.remove()
    with pytest.raises(ValueError, match="precision must be one of"):
        bench_vision.worker({**spec, "precision": "fp16"})
    assert bench_vision.parser().parse_args(["--precisions", "fp32", "bf16-mixed"]).precisions == ["fp32", "bf16-mixed"]
