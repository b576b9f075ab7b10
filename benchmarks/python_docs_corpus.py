"""A real English corpus for the text benchmarks: the prose of the Python documentation.

Debian's ``python3-doc`` package installs the reStructuredText sources of the Python
documentation (``/usr/share/doc/python3.X-doc/html/_sources/**/*.rst.txt``, about
12 MB, ~500 documents). This script keeps their prose paragraphs and drops
everything else, with a few line rules rather than a reST parser, so it is simple,
fast and gives the same text on every machine with the same package:

- kept: paragraphs, list items, the bodies of prose directives (``note``,
  ``versionchanged``, ``function`` descriptions, ...), with inline markup
  reduced to its text (``:func:`os.open``` -> ``os.open``, ``**bold**`` -> ``bold``);
- dropped: section titles, code (``::`` literal blocks, ``>>>`` sessions, code
  directives), tables, comments and targets, directive arguments and options,
  paragraphs of fewer than five words.

Each source file is one document (its paragraphs separated by a blank line). The
split is by document and depends only on its name: the first 8 hex digits of the
SHA-256 of ``library/os`` etc., modulo 100, put 5% of the documents in test, 5% in
validation and the rest in train. It writes ``train.jsonl``, ``validation.jsonl``
and ``test.jsonl`` (``{"name": ..., "text": ...}`` a line) into ``--out``; give the
folder to the text task as a dataset so that its splits are kept:

    python benchmarks/python_docs_corpus.py [--out benchmarks/results/corpus/python-docs]
    xlm train --plugin mdlm --task text --set task.dataset=benchmarks/results/corpus/python-docs
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

SOURCES_GLOB = "/usr/share/doc/python3*-doc/html/_sources"
DEFAULT_OUT = Path(__file__).parent / "results" / "corpus" / "python-docs"
SPLITS = ("train", "validation", "test")
MIN_WORDS = 5
#: Directives whose body is code, data or navigation, never prose.
SKIP_BODY = {
    "code-block", "code", "sourcecode", "doctest", "testcode", "testoutput", "testsetup",
    "testcleanup", "literalinclude", "productionlist", "highlight", "index", "toctree",
    "csv-table", "list-table", "table", "image", "figure", "raw", "math", "include",
    "parsed-literal", "audit-event", "moduleauthor", "sectionauthor", "grammar-snippet",
}  # fmt: skip
_DIRECTIVE = re.compile(r"\.\. ([\w:-]+)::")
_OPTION = re.compile(r":[\w -]+:(\s|$)")  # a directive option or field marker; a role has a backtick
_BULLET = re.compile(r"^([*+-]|#\.|\d+\.|\(?[a-z0-9]\))\s+")
_ROLE = re.compile(r":[\w:.+-]+:`([^`]*)`")
_INLINE = [
    (re.compile(r"``(.+?)``"), r"\1"),  # inline literals
    (re.compile(r"`([^`<]*?)\s*<[^`>]*>`__?"), r"\1"),  # hyperlinks with a target
    (re.compile(r"`([^`]*)`__?"), r"\1"),  # references, interpreted text
    (re.compile(r"`([^`]*)`"), r"\1"),
    (re.compile(r"\*\*(.+?)\*\*|\*(\S.*?)\*"), lambda m: m.group(1) or m.group(2)),
    (re.compile(r"\s*\[(#\w*|\d+)\]_"), ""),  # footnote references
    (re.compile(r"\|(\w+)\|"), r"\1"),  # substitutions
    (re.compile(r"\\ ?"), ""),  # escapes
]


def blocks(text: str) -> Iterator[list[str]]:
    """The paragraphs of one reST source as lists of lines; code and skipped directives never appear."""
    paragraph: list[str] = []
    skip_deeper_than: int | None = None  # inside a literal block or a skipped directive
    for line in text.splitlines():
        stripped, indent = line.strip(), len(line) - len(line.lstrip())
        if skip_deeper_than is not None:
            if not stripped or indent > skip_deeper_than:
                continue
            skip_deeper_than = None
        if not stripped or stripped.startswith(".. "):
            if paragraph:
                yield paragraph
            paragraph = []
            if stripped:  # a directive keeps its body only if that body is prose
                match = _DIRECTIVE.match(stripped)
                if match is None or match.group(1) in SKIP_BODY:
                    skip_deeper_than = indent
            continue
        if _OPTION.match(stripped) and not paragraph:
            continue
        if stripped.endswith("::"):  # "for example::" introduces a literal block; "::" alone too
            lead = stripped[:-2].rstrip()
            paragraph += [lead + ":"] if lead else []
            if paragraph:
                yield paragraph
            paragraph, skip_deeper_than = [], indent
            continue
        paragraph.append(stripped)
    if paragraph:
        yield paragraph


def prose(lines: list[str]) -> str | None:
    """One paragraph as plain text, or None when it is a title, a table, a session or too short."""
    if lines[0].startswith(">>>") or any(_is_rule(line) or line[0] in "+|" for line in lines):
        return None
    text = " ".join(_BULLET.sub("", line) for line in lines)
    text = _ROLE.sub(lambda m: _role_text(m.group(1)), text)
    for pattern, replacement in _INLINE:
        text = pattern.sub(replacement, text)
    text = " ".join(text.split())
    return text if len(text.split()) >= MIN_WORDS else None


def _is_rule(line: str) -> bool:
    """A title's under- or overline, a transition, or a simple table's border."""
    return len(line) >= 3 and (len(set(line)) == 1 or set(line) <= set("= ")) and not line[0].isalnum()


def _role_text(inner: str) -> str:
    """What a role shows: the title of ``title <target>``, else the target without ``~``/``!``."""
    title = re.match(r"(.*?)\s*<[^>]*>$", inner)
    return title.group(1) if title and title.group(1) else inner.lstrip("~!")


def split_of(name: str) -> str:
    bucket = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) % 100
    return "test" if bucket < 5 else "validation" if bucket < 10 else "train"


def sources() -> Path:
    found = sorted(Path(p) for p in _glob(SOURCES_GLOB))
    if not found:
        sys.exit(f"error: no Python documentation sources at {SOURCES_GLOB}; run `apt-get install python3-doc`")
    return found[-1]  # the newest Python's, when several are installed


def _glob(pattern: str) -> list[str]:
    import glob

    return glob.glob(pattern)


def documents(root: Path) -> Iterator[tuple[str, str]]:
    """(name, text) for every source file with any prose, in sorted order."""
    for path in sorted(root.rglob("*.rst.txt")):
        paragraphs = [p for p in map(prose, blocks(path.read_text(encoding="utf-8"))) if p]
        if paragraphs:
            yield str(path.relative_to(root)).removesuffix(".rst.txt"), "\n\n".join(paragraphs)


def write_corpus(out: Path, root: Path) -> dict[str, dict[str, float]]:
    """Write the three split files into ``out``; returns statistics per split."""
    out.mkdir(parents=True, exist_ok=True)
    stats = {s: {"documents": 0, "paragraphs": 0, "words": 0, "mib": 0.0} for s in SPLITS}
    handles = {s: open(out / f".{s}.jsonl.tmp", "w", encoding="utf-8") for s in SPLITS}
    try:
        for name, text in documents(root):
            split = split_of(name)
            handles[split].write(json.dumps({"name": name, "text": text}, ensure_ascii=False) + "\n")
            row = stats[split]
            row["documents"] += 1
            row["paragraphs"] += text.count("\n\n") + 1
            row["words"] += len(text.split())
            row["mib"] += len(text.encode()) / 2**20
    finally:
        for handle in handles.values():
            handle.close()
    for split in SPLITS:  # renamed only when all are complete
        (out / f".{split}.jsonl.tmp").replace(out / f"{split}.jsonl")
    return stats


def prepare_corpus(out: Path = DEFAULT_OUT) -> Path:
    """The corpus folder (written first when incomplete), for benchmarks that take ``--corpus``."""
    if not all((out / f"{s}.jsonl").is_file() for s in SPLITS):
        write_corpus(out, sources())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder to write the splits to")
    args = parser.parse_args()
    root = sources()
    stats = write_corpus(args.out, root)
    print(f"{root} -> {args.out}")
    print(f"{'split':<11}{'documents':>10}{'paragraphs':>12}{'words':>12}{'MiB':>8}")
    total = {k: sum(s[k] for s in stats.values()) for k in stats["train"]}
    for split, row in [*stats.items(), ("total", total)]:
        print(
            f"{split:<11}{row['documents']:>10,}{row['paragraphs']:>12,}{row['words']:>12,}"
            f"{row['mib']:>8.2f}"
        )


if __name__ == "__main__":
    main()
