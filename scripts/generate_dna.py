#!/usr/bin/env python
"""Sample DNA from a trained causal DNA LM, continuing a prompt (console command: ``longseq-generate-dna``).

    python scripts/generate_dna.py --ckpt runs/dna/lm/version_0/checkpoints/last.ckpt --prompt ACGTACGT --length 1000 --out generated.fa

The prompt is ``--prompt`` (bases) or ``--prompt-fasta FILE[:RECORD[:START-END]]`` (the
first record by default; START-END 1-based and inclusive, as samtools regions).
``--prompt-strand -`` takes the reverse complement of the prompt region, so the output
continues the minus strand: upstream of START on the plus strand, written 5' to 3' on the
minus strand. Each base is sampled from the model's next-base distribution over A, C, G,
T at ``--temperature`` (0: always the most likely base), among the ``--top-k`` most
likely; ``--seed`` fixes the draws. The model keeps a bounded cache of past keys and
values (its sliding windows), so each base costs the same however long the context is;
the prompt is read in chunks of ``--prefill-chunk`` bases. Writes FASTA (the generated
bases only; ``--include-prompt`` puts the prompt first) and prints bases per second.
"""

from genomics.cli.generate_dna import main

if __name__ == "__main__":
    main()
