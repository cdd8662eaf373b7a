"""Sample DNA from a trained causal DNA LM, continuing a prompt (console command: ``longseq-generate-dna``).

    python scripts/generate_dna.py --ckpt runs/dna/lm/version_0/checkpoints/last.ckpt --prompt ACGTACGT --length 1000 --out generated.fa

The prompt is ``--prompt`` (bases) or ``--prompt-fasta FILE[:RECORD[:START-END]]`` (the
first record by default; START-END 1-based and inclusive, as samtools regions; FILE is
the longest part before a ``:`` that is a file, so a record name holding colons, such as
bedtools getfasta's ``chr1:0-101(+)``, is read whole); FILE may name a shipped genome:
``ecoli`` (record ``NC_007779.1``) or ``yeast:chrNN``. ``--prompt-strand -`` takes the
reverse complement of the prompt region, so the output continues the minus strand:
upstream of START on the plus strand, written 5' to 3' on the minus strand. Each base is
sampled from the model's next-base distribution over A, C, G, T at ``--temperature`` (0:
always the most likely base), among the ``--top-k`` most likely; ``--seed`` fixes the
draws. The model keeps a bounded cache of past keys and values (its sliding windows), so
each base costs the same however long the context is; the prompt is read in chunks of
``--prefill-chunk`` bases. Writes FASTA (the generated bases only; ``--include-prompt``
puts the prompt first; the header's ``length=`` counts the bases written) and prints
bases per second.
"""

from __future__ import annotations

import argparse
import logging
import re
import time
from pathlib import Path
from typing import Any

__all__ = ["main", "parse_args", "run", "parse_region", "sample_next", "split_spec"]

PROG = "longseq-generate-dna"
_LINE = 80  # FASTA line width
log = logging.getLogger(__name__)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of ``longseq-generate-dna``."""
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, type=Path, help="checkpoint written by longseq-train-dna (--task lm, causal)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", help="prompt bases (ACGT, IUPAC codes)")
    src.add_argument("--prompt-fasta", metavar="FILE[:RECORD[:START-END]]",
                     help="prompt from a FASTA/GenBank file: a record (default the first) and a 1-based inclusive "
                          "region (default the whole record)")
    p.add_argument("--prompt-strand", choices=("+", "-"), default="+",
                   help="'-': reverse-complement the prompt region, continuing the minus strand (default '+')")
    p.add_argument("--length", type=int, default=1000, help="bases to generate (default 1000)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature; 0 = greedy (default 1)")
    p.add_argument("--top-k", type=int, default=4, help="sample among the K most likely bases, 1 to 4 (default 4)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the draws (default 0)")
    p.add_argument("--out", type=Path, default=Path("generated.fa"), help="output FASTA (default generated.fa)")
    p.add_argument("--name", default="generated", help="FASTA record name (default 'generated')")
    p.add_argument("--include-prompt", action="store_true", help="write the prompt before the generated bases")
    p.add_argument("--prefill-chunk", type=int, default=1024,
                   help="prompt bases per cached step (default 1024; the cost per base grows with it)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="unpickle a checkpoint holding more than tensors and plain values (trusted files only)")
    return p.parse_args(argv)


def _fail(message: str) -> SystemExit:
    return SystemExit(f"{PROG}: error: {message}")


_REGION = re.compile(r"(.+):(\d[\d,]*)-(\d[\d,]*)")


def split_spec(spec: str) -> tuple[str, str | None]:
    """``FILE[:REST]`` -> (FILE, REST or None). FILE is the longest prefix ending before a
    ``:`` that is an existing file (or ``archive.zip::member``), so record names that hold
    colons (bedtools getfasta's ``chr1:0-101(+)``) are kept whole; when no prefix exists,
    FILE ends at the first single ``:`` (a shipped genome such as ``ecoli``, or a missing file)."""
    from genomics.io.readers import path_exists

    if path_exists(spec):
        return spec, None
    cuts = [i for i, c in enumerate(spec) if c == ":" and spec[i - 1 : i] != ":" and spec[i + 1 : i + 2] != ":"]
    for i in reversed(cuts):
        if path_exists(spec[:i]):
            return spec[:i], spec[i + 1 :] or None
    return (spec[: cuts[0]], spec[cuts[0] + 1 :] or None) if cuts else (spec, None)


def _region_split(rest: str) -> tuple[str, tuple[int, int]] | None:
    """``RECORD:START-END`` -> (RECORD, (START, END)) unchecked, or None when ``rest`` has no region."""
    m = _REGION.fullmatch(rest)
    if not m:
        return None
    record, start, end = m.groups()
    return record, (int(start.replace(",", "")), int(end.replace(",", "")))


def _check_region(region: tuple[int, int]) -> tuple[int, int]:
    s, e = region
    if s < 1 or e < s:
        raise ValueError(f"region {s}-{e} must satisfy 1 <= START <= END")
    return region


def parse_region(spec: str) -> tuple[str, str | None, tuple[int, int] | None]:
    """``FILE[:RECORD[:START-END]]`` -> (file, record or None, (start, end) 1-based inclusive or None).

    FILE is found as :func:`split_spec` says. Raises ``ValueError`` for a malformed region.
    (A record name ending in ``:N-M`` is told from a region only by the file's records, which
    ``--prompt-fasta`` reads: there the whole name wins.)
    """
    path, rest = split_spec(spec)
    if rest is None:
        return path, None, None
    split = _region_split(rest)
    if split is None:
        return path, rest, None
    return path, split[0], _check_region(split[1])


def _shipped(path: str, record: str | None) -> tuple[str, str | None]:
    """A shipped genome named in place of a file: ``ecoli[:RECORD...]`` (*E. coli* K-12, one
    record) or ``yeast:chrNN[:START-END]`` (one *S. cerevisiae* chromosome)."""
    from genomics.io.sources import shipped_genome

    if Path(path).exists():
        return path, record
    if path == "ecoli":
        return shipped_genome("ecoli") or path, record
    if path == "yeast" and record is not None:
        return shipped_genome(f"yeast:{record}") or path, None
    return path, record


def _listed(names: list[str], k: int = 10) -> str:
    shown = ", ".join(names[:k])
    return shown + (f", ... ({len(names)} records in all)" if len(names) > k else "")


def _find_record(path: str, rest: str | None) -> tuple[Any, tuple[int, int] | None]:
    """The record ``rest`` names in ``path`` (the first when None) and its region, if any.

    ``rest`` is tried as a whole record name first, then as ``RECORD:START-END``; a record
    that is not found is an error listing the file's records."""
    from genomics.io.readers import iter_records

    split = _region_split(rest) if rest is not None else None
    names: list[str] = []
    by_region = None  # the first record RECORD:START-END names, taken only if no record is named `rest` whole
    records = iter_records(path)
    try:
        for rec in records:
            if rest is None or rest in (rec.id, rec.name):
                return rec, None
            if by_region is None and split is not None and split[0] in (rec.id, rec.name):
                by_region = rec
            names.append(rec.id)
    finally:
        records.close()
    if by_region is not None:
        return by_region, _check_region(split[1])
    wanted = split[0] if split is not None and split[0] != rest else rest
    raise ValueError(f"no record named {wanted!r} in {path}; its records: {_listed(names)}")


def _prompt_ids(args: argparse.Namespace, tokenizer: Any) -> tuple[Any, str]:
    """Prompt ids (numpy uint8, strand applied) and a description for the FASTA header."""
    import numpy as np

    from genomics.io.readers import describe_bad_sequence, missing_input

    if args.prompt is not None:
        text = args.prompt.strip()
        if not text:
            raise _fail("--prompt is empty: give at least one base")
        try:
            ids = tokenizer.encode(text, record="--prompt")
        except ValueError as exc:
            raise _fail(f"--prompt: {exc}") from None
        where = f"prompt={len(ids)}bp"
    else:
        spec = args.prompt_fasta
        path, rest = split_spec(spec)
        region_given = None
        try:
            if path == "yeast" and rest is not None:  # yeast:chrNN[:START-END]: the chromosome is the file
                split = _region_split(rest)
                chromosome, region_given = split if split is not None else (rest, None)
                path, rest = _shipped(path, chromosome)
            else:
                path, rest = _shipped(path, rest)
        except ValueError as exc:
            raise _fail(f"--prompt-fasta {spec}: {exc}") from None
        problem = missing_input(path)
        if problem is not None:  # FILE, or ZIP::MEMBER of a shipped zip
            raise _fail(f"--prompt-fasta {spec}: {problem}" + (f" {path}" if problem == "no such file" else ""))
        try:
            rec, region = _find_record(path, rest)
            region = _check_region(region_given) if region_given is not None else region
        except ValueError as exc:  # a GenomeFormatError starts with the quoted file
            message = str(exc)
            raise _fail(f"--prompt-fasta {message}" if message.startswith(repr(path))
                        else f"--prompt-fasta {spec}: {message}") from None
        seq = str(rec.seq)
        start, end = region or (1, len(seq))
        if end > len(seq):
            raise _fail(f"--prompt-fasta {spec}: region end {end} is past the record's {len(seq)} bases")
        text = seq[start - 1 : end]
        try:
            ids = tokenizer.encode(text, record=rec.id, offset=start - 1)
        except ValueError as exc:
            raise _fail(f"--prompt-fasta {spec}: {describe_bad_sequence(text[:10_000], rec.id, str(exc))}") from None
        where = f"prompt={rec.id}:{start}-{end}"
    if args.prompt_strand == "-":
        ids = np.ascontiguousarray(tokenizer.reverse_complement(ids))
    return ids, f"{where}({args.prompt_strand})"


def sample_next(logits: Any, base_ids: Any, temperature: float, top_k: int, generator: Any) -> Any:
    """Next base ids (B,) from logits (B, V): restricted to ``base_ids`` (A, C, G, T), the
    ``top_k`` most likely of them, softmax at ``temperature`` (0: argmax)."""
    import torch

    scores = logits[:, base_ids].float()  # B, 4
    if temperature == 0 or top_k == 1:
        return base_ids[scores.argmax(-1)]
    top, idx = scores.topk(top_k, dim=-1)
    probs = torch.softmax(top / temperature, dim=-1)
    pick = torch.multinomial(probs.cpu(), 1, generator=generator).to(idx.device)
    return base_ids[idx.gather(-1, pick).squeeze(-1)]


def run(argv: list[str] | None = None) -> dict[str, Any]:
    """Generate as the command line says; returns ``{"sequence", "prompt_length",
    "bases_per_second", "out"}``."""
    args = parse_args(argv)
    if args.length < 1:
        raise _fail(f"--length must be >= 1, got {args.length}")
    if args.temperature < 0:
        raise _fail(f"--temperature must be >= 0, got {args.temperature}")
    if not 1 <= args.top_k <= 4:
        raise _fail(f"--top-k must be in [1, 4] (there are four bases), got {args.top_k}")
    if args.prefill_chunk < 1:
        raise _fail(f"--prefill-chunk must be >= 1, got {args.prefill_chunk}")
    import torch
    from tqdm import tqdm

    from genomics.models import CheckpointError, load_model

    try:
        model, tokenizer, info = load_model(args.ckpt, args.device, trusted=args.trust_checkpoint)
    except CheckpointError as exc:
        raise _fail(f"--ckpt {exc}") from None
    if info.task != "lm" or model.objective != "causal":
        kind = f"{model.objective} LM" if info.task == "lm" else f"{info.task} model"
        raise _fail(f"--ckpt {args.ckpt} holds a {kind}; generation needs a causal LM")
    prompt, where = _prompt_ids(args, tokenizer)
    try:
        cache = model.new_cache(1, args.device, max_len=len(prompt) + args.length)
    except ValueError as exc:
        raise _fail(f"--ckpt {args.ckpt}: its model cannot be decoded with a bounded cache: {exc}") from None
    base_ids = torch.as_tensor(tokenizer.encode("ACGT").astype("int64"), device=args.device)
    gen = torch.Generator().manual_seed(args.seed)
    ids = torch.as_tensor(prompt.astype("int64"), device=args.device)[None]  # 1, P
    out = torch.empty(args.length, dtype=torch.long)
    t0 = time.perf_counter()
    with torch.inference_mode():
        logits = None
        for s in range(0, ids.shape[1], args.prefill_chunk):
            logits = model.step(ids[:, s : s + args.prefill_chunk], cache)[:, -1]
        prefill_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        for i in tqdm(range(args.length), desc="bases", unit="bp", disable=None):
            nxt = sample_next(logits, base_ids, args.temperature, args.top_k, gen)
            out[i] = nxt[0]
            logits = model.step(nxt[:, None], cache)[:, -1]
    gen_s = time.perf_counter() - t1
    rate = args.length / gen_s if gen_s > 0 else float("inf")
    sequence = tokenizer.decode(out.numpy().astype("uint8"))
    prompt_text = tokenizer.decode(prompt)
    text = (prompt_text if args.include_prompt else "") + sequence
    # length= is the length of the sequence written; with the prompt, both parts are named too
    parts = (f" with_prompt prompt_length={len(prompt_text)} generated_length={len(sequence)}"
             if args.include_prompt else "")
    header = (f">{args.name} length={len(text)} {where} temperature={args.temperature} top_k={args.top_k} "
              f"seed={args.seed}{parts}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w") as fh:
        fh.write(header + "\n")
        for s in range(0, len(text), _LINE):
            fh.write(text[s : s + _LINE] + "\n")
    print(f"prompt: {len(prompt):,} bases read in {prefill_s:.2f} s")
    print(f"generated {args.length:,} bases in {gen_s:.2f} s: {rate:,.1f} bases/s "
          f"(context {len(prompt) + args.length:,} bases, device {args.device})")
    print(f"wrote {args.out}")
    return {"sequence": sequence, "prompt_length": len(prompt), "bases_per_second": rate, "out": args.out}


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``longseq-generate-dna``)."""
    run(argv)


if __name__ == "__main__":
    main()
