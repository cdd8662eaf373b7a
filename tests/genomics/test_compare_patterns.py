"""longseq-compare-dna-patterns on a tiny model: one row per pattern and budget, the Markov
reference from the first run, CSV and plot, and the flag checks."""

from __future__ import annotations

import csv

import pytest
import yaml

from genomics.cli import compare_patterns
from genomics.cli.train_config import default_config_path
from longseq.training.errors import UserError


def _tiny_config(tmp_path, monkeypatch, depth: int):
    """The default LM config shrunk to a few thousand parameters, in fp32."""
    monkeypatch.setenv("LONGSEQ_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    cfg = yaml.safe_load(default_config_path("lm").read_text())
    cfg["model"].update(dim=16, depth=depth, heads=2, head_chunks=2, window=16, kmer_kernel=3)
    cfg["data"]["val_seq_len"] = 4096
    cfg["trainer"]["precision"] = "32-true"
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(cfg))
    return config


def test_two_patterns_each_at_equal_steps_and_equal_time(tmp_path, monkeypatch):
    """Both budgets per pattern; the equal-steps runs ask for more steps than the cap lets
    them take, so each says where it stopped."""
    config = _tiny_config(tmp_path, monkeypatch, depth=1)
    rows = compare_patterns.run(["--patterns", "window", "segment", "--seq-len", "256", "--steps", "1000000",
                                 "--minutes", "0.02", "--cap-minutes", "0.03", "--config", str(config),
                                 "--out", str(tmp_path / "cmp")])
    assert [(r["pattern"], r["budget"]) for r in rows] == [
        ("window", "1000000 steps"), ("window", "0.02 min"), ("segment", "1000000 steps"), ("segment", "0.02 min")]
    for capped, timed in (rows[0:2], rows[2:4]):
        assert capped["status"].startswith("capped at 0.03 min: ") and capped["status"].endswith(" of 1000000 steps")
        assert f": {capped['steps']} of " in capped["status"] and 1 <= capped["steps"] < 1000000
        assert timed["status"] == "ok" and timed["steps"] >= 1
    assert all(1.0 < r["bits_per_base"] < 4.0 for r in rows)  # measured and finite (a few timed steps may not learn)
    assert min(r["bits_per_base"] for r in rows) < 3.0  # the longest run learned (a uniform guess over 9 ids: 3.17)
    assert all(abs(r["margin_vs_markov"] - (r["bits_per_base"] - rows[0]["bits_per_base"] + rows[0]["margin_vs_markov"]))
               < 1e-3 for r in rows)  # one reference for every row
    table = list(csv.DictReader(open(tmp_path / "cmp" / "compare_patterns.csv")))
    assert [r["pattern"] for r in table] == ["window", "window", "segment", "segment"]
    assert (tmp_path / "cmp" / "compare_patterns.png").stat().st_size > 5000
    saved = yaml.safe_load((next((tmp_path / "cmp" / "segment" / "steps").glob("lm/version_*")) / "config.yaml")
                           .read_text())
    assert [spec["type"] for spec in saved["model"]["layer_patterns"]] == ["segment"]


@pytest.mark.parametrize(("argv", "message"), [
    (["--steps", "0"], "--steps: must be a positive whole number"),
    (["--minutes", "0"], "--minutes: must be > 0"),
    (["--seq-len", "-1"], "--seq-len: must be a positive whole number"),
    (["--cap-minutes", "0"], "--cap-minutes: must be > 0"),
])
def test_flag_errors(argv, message, tmp_path):
    with pytest.raises(UserError, match=message):
        compare_patterns.run([*argv, "--out", str(tmp_path / "no")])
    assert not (tmp_path / "no").exists()
