"""Sequence-length warm-up (as in HyenaDNA): train on short windows first, then the full length.

This schedules window *lengths* and batch sizes over training steps; the learning-rate
schedule is :mod:`longseq.schedules`. The YAML ``schedule:`` section of ``longseq-train-dna``
holds :func:`warmup_schedule`'s arguments.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["OPEN_ENDED_STEPS", "Stage", "split_into_epochs", "warmup_schedule"]

#: Steps of a final stage that has no step or token budget (``train_tokens=None``): more than
#: any run reaches, so the clock (``Trainer(max_time=...)``) ends training.
OPEN_ENDED_STEPS = 1_000_000


@dataclass(frozen=True)
class Stage:
    """``steps`` optimizer steps of ``batch_size`` windows of ``seq_len`` bases."""

    seq_len: int
    batch_size: int
    steps: int

    @property
    def tokens(self) -> int:
        """Bases trained on in this stage (padding included)."""
        return self.seq_len * self.batch_size * self.steps


def warmup_schedule(
    seq_len: int,
    batch_size: int = 1,
    *,
    max_steps: int | None = None,
    train_tokens: int | None = 8_000_000,
    start_len: int = 4096,
    factor: int = 4,
    warmup_fraction: float = 0.5,
    warmup_tokens_per_step: int = 65536,
    warmup_tokens: int | None = None,
) -> list[Stage]:
    """Stages of growing length ``start_len * factor**i`` ending at ``seq_len``.

    Warm-up stages take ``warmup_fraction`` of the budget (or ``warmup_tokens`` tokens when
    given), split evenly, with batches of about ``warmup_tokens_per_step`` tokens (never fewer
    than ``batch_size`` windows); the last stage runs ``batch_size`` windows of ``seq_len``.
    The budget is ``max_steps`` optimizer steps if given, else ``train_tokens`` tokens; with
    ``train_tokens=None`` the last stage is open-ended (:data:`OPEN_ENDED_STEPS`): a time
    budget ends the run, and the warm-up needs ``warmup_tokens``. Every stage has at least
    one step; with too few steps the earliest stages are dropped. ``start_len >= seq_len``
    disables the warm-up.
    """
    if seq_len < 2 or batch_size < 1 or factor < 2:
        raise ValueError(f"need seq_len >= 2, batch_size >= 1, factor >= 2; got {seq_len}, {batch_size}, {factor}")
    if not 0.0 <= warmup_fraction < 1.0:
        raise ValueError(f"warmup_fraction must be in [0, 1), got {warmup_fraction}")
    lengths = []
    length = start_len
    while length < seq_len:
        lengths.append(length)
        length *= factor
    warm_batches = [max(batch_size, warmup_tokens_per_step // n) for n in lengths]
    if max_steps is not None:
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        keep = min(len(lengths), max_steps - 1)
        lengths, warm_batches = lengths[len(lengths) - keep :], warm_batches[len(warm_batches) - keep :]
        warm_total = min(round(max_steps * warmup_fraction), max_steps - 1) if lengths else 0
        warm_total = max(warm_total, len(lengths))
        n = max(len(lengths), 1)
        warm_steps = [warm_total // n + (i < warm_total % n) for i in range(len(lengths))]
        final_steps = max_steps - sum(warm_steps)
    else:
        if train_tokens is None and lengths and warmup_tokens is None:
            raise ValueError("train_tokens: null (a time budget) with a length warm-up needs warmup_tokens")
        if train_tokens is not None and train_tokens < 1 or warmup_tokens is not None and warmup_tokens < 1:
            raise ValueError(f"train_tokens and warmup_tokens must be >= 1, got {train_tokens}, {warmup_tokens}")
        warm = warmup_tokens if warmup_tokens is not None else (train_tokens or 0) * warmup_fraction
        per_stage = warm / max(len(lengths), 1)
        warm_steps = [max(1, round(per_stage / (n * b))) for n, b in zip(lengths, warm_batches)]
        if train_tokens is None:
            final_steps = OPEN_ENDED_STEPS
        else:
            rest = train_tokens - warm if lengths else train_tokens
            final_steps = max(1, round(rest / (seq_len * batch_size)))
    stages = [Stage(n, b, s) for n, b, s in zip(lengths, warm_batches, warm_steps)]
    return stages + [Stage(seq_len, batch_size, final_steps)]


def split_into_epochs(stages: list[Stage], val_every: int | None = None) -> list[Stage]:
    """One epoch per stage, or per ``val_every`` steps of a longer stage (so validation
    can run in between); a data module runs epoch e's window length and batch size."""
    epochs = []
    for st in stages:
        chunk = val_every or st.steps
        for start in range(0, st.steps, chunk):
            epochs.append(Stage(st.seq_len, st.batch_size, min(chunk, st.steps - start)))
    return epochs
