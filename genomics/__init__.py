"""longseq genomics: DNA tokenizers, genome I/O, Lightning data modules, DNA models.

Submodules import lazily: ``genomics.tokenizers`` needs numpy and torch only, the data
modules need biopython and Lightning.
"""
