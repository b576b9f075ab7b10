"""benchmarks/python_docs_corpus.py on reST the test writes: prose kept, markup and code dropped,
a split that depends on the document's name only, and one line when python3-doc is missing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
try:
    import _corpus
    import python_docs_corpus as corpus
finally:
    sys.path.remove(str(ROOT / "benchmarks"))

SOURCE = """\
.. _tut-intro:

******************
An Informal Title
******************

Besides the :keyword:`while` statement, Python uses the usual **flow control**
statements, see :func:`~os.path.join` and `the docs <https://python.org>`_ [#]_.

For example::

   >>> x = int(input("Please enter an integer: "))
   >>> print(x)

* A list item that is long enough to keep as prose.

.. note::
   The body of a note is prose too, so it is kept here.

.. code-block:: python

   def code_is_dropped(): pass

.. function:: spam(eggs)
   :noindex:

   Return ``eggs`` fried in the usual way, with the ``ham`` on the side.

+------+------+
| a table row | is dropped |
+------+------+

>>> 1 + 1
2

Too short.
"""


def test_prose_is_kept_and_markup_code_tables_and_titles_dropped():
    paragraphs = [p for p in map(corpus.prose, corpus.blocks(SOURCE)) if p]
    assert paragraphs == [
        "Besides the while statement, Python uses the usual flow control statements, "
        "see os.path.join and the docs.",
        "A list item that is long enough to keep as prose.",
        "The body of a note is prose too, so it is kept here.",
        "Return eggs fried in the usual way, with the ham on the side.",
    ]  # the title, "For example:" (too short), the session, code, table and options are gone


def test_the_split_depends_on_the_name_only():
    names = [f"library/module{i}" for i in range(400)]
    splits = [corpus.split_of(n) for n in names]
    assert splits == [corpus.split_of(n) for n in names]
    assert {"train", "validation", "test"} == set(splits)
    assert splits.count("train") > 300


def test_writes_three_split_files_the_text_task_reads(tmp_path, monkeypatch):
    root = tmp_path / "_sources"
    for i in range(40):
        (root / "library").mkdir(parents=True, exist_ok=True)
        (root / "library" / f"m{i}.rst.txt").write_text(SOURCE.replace("eggs", f"eggs{i}"))
    stats = corpus.write_corpus(tmp_path / "out", root)
    assert sum(row["documents"] for row in stats.values()) == 40
    lines = [json.loads(x) for s in corpus.SPLITS for x in (tmp_path / "out" / f"{s}.jsonl").open()]
    assert len(lines) == 40 and all(set(row) == {"name", "text"} for row in lines)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["test.jsonl", "train.jsonl", "validation.jsonl"]


def test_a_missing_package_says_what_to_install(monkeypatch):
    monkeypatch.setattr(corpus, "SOURCES_GLOB", "/nonexistent/python3*-doc/html/_sources")
    with pytest.raises(SystemExit) as info:
        corpus.sources()
    message = str(info.value)
    assert "apt-get install python3-doc" in message and "\n" not in message


def test_corpus_settings_for_a_path(tmp_path):
    file = tmp_path / "c.txt"
    file.write_text("some text\n")
    assert _corpus.corpus_task(str(file)) == [f"task.path={file}"]
    with pytest.raises(SystemExit, match="no such file or folder"):
        _corpus.corpus_task(str(tmp_path / "missing"))
