"""A text corpus for profiling, made from text every Debian system ships: licences and copyright files.

The text step of ``benchmarks/step_profile.py`` needs a corpus large enough for a
4,096-token BPE vocabulary and a few hundred batches of 128-token blocks, with no
download. Debian installs the full text of common licences under
``/usr/share/common-licenses`` and a ``copyright`` file per package under
``/usr/share/doc``: English prose with code-like fragments, several megabytes on
any system. Files are read in sorted order and identical files kept once, so the
corpus is the same on two machines with the same packages.

    python benchmarks/text_corpus.py [--out corpus.txt] [--max-mb 4]
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Iterator
from pathlib import Path

SOURCES = (Path("/usr/share/common-licenses"), Path("/usr/share/doc"))
DEFAULT_OUT = Path(__file__).parent / "results" / "corpus" / "debian-text.txt"


def _candidates() -> Iterator[Path]:
    licenses, docs = SOURCES
    if licenses.is_dir():
        yield from sorted(p for p in licenses.iterdir() if p.is_file() and not p.is_symlink())
    if docs.is_dir():
        yield from sorted(docs.glob("*/copyright"))


def _documents(max_bytes: int) -> Iterator[str]:
    """Each source file as one document (one line: the text task reads a line per document)."""
    seen: set[str] = set()
    total = 0
    for path in _candidates():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue  # an unreadable or non-UTF-8 file is simply not part of the corpus
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        line = " ".join(text.split())  # one document per line, whitespace runs folded
        if not line:
            continue
        yield line
        total += len(line) + 1
        if total >= max_bytes:
            return


def prepare_corpus(out: Path = DEFAULT_OUT, max_mb: float = 4.0) -> Path:
    """Write the corpus to ``out`` (kept if already there) and return its path."""
    if out.is_file() and out.stat().st_size:
        return out
    documents = list(_documents(int(max_mb * 2**20)))
    if not documents:
        raise SystemExit(f"no Debian text found under {', '.join(map(str, SOURCES))}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text("\n".join(documents) + "\n", encoding="utf-8")
    tmp.replace(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--max-mb", type=float, default=4.0, help="stop after this much text")
    args = parser.parse_args()
    path = prepare_corpus(args.out, args.max_mb)
    print(f"{path}: {path.stat().st_size / 2**20:.1f} MiB, {sum(1 for _ in path.open())} documents")


if __name__ == "__main__":
    main()
