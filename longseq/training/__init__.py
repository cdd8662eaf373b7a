"""Training plumbing shared by the domains' scripts.

* :mod:`~longseq.training.config`: the config scheme (sections checked against signatures).
* :mod:`~longseq.training.callbacks`: throughput.
* :mod:`~longseq.training.checkpointing`: ``last.ckpt`` on a cadence of steps and minutes, atomic writes.
* :mod:`~longseq.training.sampling`: a data order a resumed run reproduces exactly.
* :mod:`~longseq.training.random_state`: the global random state in checkpoints.
* :mod:`~longseq.training.resume`: finding a run's ``last.ckpt``, continuing its ``metrics.csv``.
* :mod:`~longseq.training.errors`: user errors as one line on stderr and exit status 2.

Needs the ``train`` extra (lightning, pyyaml); ``import longseq`` never imports it.
"""
