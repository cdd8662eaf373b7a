"""The attention benchmark's rows for TopK, Hierarchical, Routing, SegmentRecurrence and LowRank
on a tiny length, and their useful-pair counts against dense masks."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from longseq.bench import attention as bench
from longseq.patterns import Hierarchical, SegmentRecurrence, TopK

NEW_ROWS = ("topk", "hierarchical", "routing", "segment", "lowrank")


def test_new_rows_run_at_a_tiny_length(tmp_path: Path, monkeypatch) -> None:
    for name in ("LONGSEQ_REUSE_FREED_MEMORY", "GLIBC_TUNABLES", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.delenv(name, raising=False)
    bench.main(["--rows", ",".join(NEW_ROWS), "--lengths", "300", "--repeats", "1", "--warmup", "0",
                "--threads", "1", "--out", str(tmp_path)])
    rows = {r["row"]: r for r in csv.DictReader(open(tmp_path / "attention.csv"))}
    assert set(rows) == set(NEW_ROWS)
    for name, r in rows.items():
        assert not r["error"], (name, r["error"])
        assert float(r["seconds"]) > 0 and float(r["peak_rss_gb"]) > 0
    for name in ("topk", "hierarchical", "segment", "lowrank"):  # pairs counted: a throughput figure
        assert float(rows[name]["useful_gflops"]) > 0, name
    assert rows["routing"]["useful_gflops"] == "nan"  # data-dependent pairs, as LSH


def test_quadratic_rows_respect_max_dense(tmp_path: Path, monkeypatch) -> None:
    specs = []
    monkeypatch.setattr(bench, "run_row", lambda spec, timeout: specs.append(spec) or {**spec, "error": "skipped"})
    monkeypatch.setattr(bench, "report", lambda *a, **k: None)
    bench.main(["--rows", "topk,segment", "--lengths", "100,1000", "--max-dense", "500", "--out", str(tmp_path)])
    assert [(s["row"], s["L"]) for s in specs] == [("topk", 100), ("segment", 100), ("segment", 1000)]


@pytest.mark.parametrize("pattern", [Hierarchical(16), Hierarchical(16, causal=True), SegmentRecurrence(16, 1),
                                     SegmentRecurrence(7, 2)])
@pytest.mark.parametrize("L", [1, 50, 64, 300])
def test_pair_counts_match_dense_masks(pattern, L: int) -> None:
    if isinstance(pattern, Hierarchical):
        tokens, summaries = pattern.dense_masks(L)
        expected = int(tokens.sum()) + int(summaries.sum())
    else:
        expected = int(pattern.dense_mask(L).sum())
    assert bench.allowed_pairs("x", pattern, L) == expected
    assert bench.allowed_pairs("topk", TopK(8), L) == L * min(8, L)
