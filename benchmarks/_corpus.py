"""The text corpora a benchmark can take (``--corpus``), and the ``task.*`` settings that read each.

- ``debian``: licences and copyright files every Debian system ships (``text_corpus.py``),
  one file; the text task holds validation and test out of it.
- ``python-docs``: the prose of the Python documentation (``python_docs_corpus.py``, needs
  ``apt-get install python3-doc``), a folder of train/validation/test files read as a dataset
  so that its split by document is kept.
- anything else: a path, a ``.txt``/``.jsonl``/``.parquet`` file or a folder of them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import python_docs_corpus
import text_corpus

CORPORA = ("debian", "python-docs")


def add_corpus_argument(parser: argparse.ArgumentParser, default: str = "debian") -> None:
    parser.add_argument(
        "--corpus",
        default=default,
        help=f"the text corpus: {' or '.join(CORPORA)} (built on first use), or a file or folder "
        f"(default: {default})",
    )


def corpus_task(corpus: str) -> list[str]:
    """``--set`` items pointing the text task at ``corpus`` (building a named corpus first)."""
    if corpus == "debian":
        return [f"task.path={text_corpus.prepare_corpus()}"]
    if corpus == "python-docs":
        return [f"task.dataset={python_docs_corpus.prepare_corpus()}"]
    path = Path(corpus)
    if not path.exists():
        raise SystemExit(f"error: --corpus {corpus}: not {' or '.join(CORPORA)}, and no such file or folder")
    return [f"task.path={path}"]
