"""``longseq.lsh.LSH``: the Reformer LSH pattern under its older import path.

The pattern is :class:`longseq.patterns.LSH` (who attends whom); its implementation on
the blocked kernel is :mod:`longseq.kernels.lsh`.
"""

from longseq.patterns_lsh import LSH

__all__ = ["LSH"]
