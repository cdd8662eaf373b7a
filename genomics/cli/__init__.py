"""Console commands of the genomics domain (``pip install 'longseq[genomics,train]'``):

* ``longseq-train-dna`` (:mod:`genomics.cli.train_dna`): train a DNA LM, classifier,
  per-base annotator or the long-range needle check, from a YAML config and flags.
* ``longseq-score-dna`` (:mod:`genomics.cli.score_dna`): per-base log-likelihoods of whole records.
* ``longseq-bench-dna`` (:mod:`genomics.cli.bench_dna`): time one training step against length.
* ``longseq-eval-needle`` (:mod:`genomics.cli.eval_needle`): needle accuracy at several lengths.

Each module has ``main(argv=None)`` (exit status 0 on success) and ``run(argv=None)``,
which returns the results for a caller in the same process; ``scripts/*.py`` call ``main``.
An input error (a flag, file or checkpoint that cannot be used) is one line on stderr and
exit status 2 for ``longseq-train-dna`` (``longseq.training.errors.run_cli``).
Nothing heavy is imported here, so ``--help`` answers at once.
"""
