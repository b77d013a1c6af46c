"""`digest eval --reader MODEL` (issue 26, section 2): the coherence of the eval's paragraphs under a
reader model of another family, beside published posts and the same words shuffled; a reader that
cannot be used is one line and exit 5, before any generation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import describe
from digest.config import Config
from digest.errors import EXIT_MODEL
from digest.reader import shuffled
from digest.resources import samples_dir

READER = Path(__file__).resolve().parents[1] / "models" / "gemma-3-270m-q4_k_m.gguf"
SEEDS = Path(__file__).resolve().parents[2] / "shared" / "seeds"


def _eval(run_cli, *extra):
    return run_cli("eval", "--engine", "fake", "--topics", "1", str(samples_dir() / "topics.xml"), *extra)


def _one_error(stderr: str) -> bool:
    errors = [line for line in stderr.splitlines() if "error" in line]
    return len(errors) == 1 and errors[0].startswith("digest: error: ")


def test_a_reader_that_is_the_writer_or_no_model_is_one_line_and_exit_5(run_cli, tmp_path):
    same = _eval(run_cli, "--reader", str(Config().model_path))
    assert same.exit_code == EXIT_MODEL, describe(same)
    assert _one_error(same.stderr) and "is the writer itself" in same.stderr
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model at all")
    bad = _eval(run_cli, "--reader", str(junk))
    assert bad.exit_code == EXIT_MODEL, describe(bad)
    assert _one_error(bad.stderr) and "Traceback" not in bad.stderr
    assert "generating" not in bad.stderr  # refused before any generation


def test_the_floor_is_the_same_words_in_a_fixed_order():
    text = "one two three four five six seven eight"
    assert shuffled(text) == shuffled(text) != text
    assert sorted(shuffled(text).split()) == sorted(text.split())


@pytest.mark.model
@pytest.mark.skipif(not READER.is_file() or not SEEDS.is_dir(), reason="the reader model or the seed posts are not here")
def test_coherence_under_the_reader_ranks_published_text_above_shuffled_words(run_cli, tmp_path):
    reference = tmp_path / "published"
    reference.mkdir()
    shutil.copy(sorted(SEEDS.glob("*.txt"))[0], reference / "000.md")
    result = _eval(run_cli, "--reader", str(READER), "--reference", str(reference), "--json")
    assert result.exit_code == 0, describe(result)
    c = json.loads(result.stdout)["coherence"]["tune"]
    assert c["reader"] == READER.stem and c["paragraphs"] >= 1 and c["reference_paragraphs"] >= 2, c
    assert 1.0 < c["reference"] < c["floor"] and c["nll_per_token"] < c["floor"]
