"""Genome input: reading sequence files, annotation labels, BED intervals, the token cache, default genomes.

* ``readers``: FASTA / GenBank / FASTQ (plain, gzip, zip members) through biopython.
* ``annotation``: per-base labels (intergenic, gene, CDS) from GenBank features or GFF3.
* ``labelled``: labelled sequences for classification (CSV/TSV tables, split files, a FASTA per class).
* ``bed``: BED intervals.
* ``cache``: a genome converted once to a memory-mapped token file (:class:`GenomeArray`).
* ``sources``: the default genomes, checksum-verified files inside pinned wheels.
"""

from genomics.io.annotation import (
    CDS, GENE, GENE_TYPES, INTERGENIC, LABEL_NAMES, LABELS_VERSION, labels_from_gff, labels_from_record,
)
from genomics.io.bed import Interval, read_bed
from genomics.io.labelled import DataInputError, LabelledRows, read_labelled
from genomics.io.cache import GenomeArray, RecordInfo, build_genome_cache, default_cache_dir, file_checksum
from genomics.io.readers import GenomeFormatError, SeqFormat, detect_format, iter_records, open_binary, path_exists
from genomics.io.sources import ECOLI_K12, YEAST_CHROMOSOMES, YEAST_S288C, ecoli_k12_fasta, yeast_genbank

__all__ = [
    "CDS", "GENE", "GENE_TYPES", "INTERGENIC", "LABEL_NAMES", "LABELS_VERSION", "labels_from_gff", "labels_from_record",
    "Interval", "read_bed", "DataInputError", "LabelledRows", "read_labelled",
    "GenomeArray", "RecordInfo", "build_genome_cache", "default_cache_dir", "file_checksum",
    "GenomeFormatError", "SeqFormat", "detect_format", "iter_records", "open_binary", "path_exists",
    "ECOLI_K12", "YEAST_CHROMOSOMES", "YEAST_S288C", "ecoli_k12_fasta", "yeast_genbank",
]
