"""The offline English corpus the embedded model is trained on: Python's own documentation text.

Sources (both ship with every CPython installation, PSF License Version 2, which permits use,
modification and redistribution of derived works):

- ``pydoc_data.topics``: the language-reference topics that ``help()`` prints (English prose);
- the docstrings of the pure-Python standard library modules, classes and functions (at least
  ``MIN_DOCSTRING_CHARS`` long, doctest lines removed), excluding test and GUI packages.

Documents are split into train and validation by a stable hash of their source name, so the split does
not depend on the order files are found in.
"""

from __future__ import annotations

import ast
import hashlib
import re
import sysconfig
from dataclasses import dataclass
from pathlib import Path

CORPUS_NAME = "CPython standard library documentation (pydoc topics + stdlib docstrings)"
CORPUS_LICENSE = "PSF License Version 2 (Python Software Foundation License)"
MIN_DOCSTRING_CHARS = 200
#: One document in this many (by hash of its name) goes to the validation split.
VALIDATION_ONE_IN = 20
_SKIPPED_PARTS = ("test", "idlelib", "lib2to3", "turtledemo", "tkinter", "ensurepip", "pydoc_data",
                  "site-packages", "dist-packages")
_DOCTEST_LINE = re.compile(r"^\s*(>>>|\.\.\.)( |$)")


@dataclass(frozen=True)
class Document:
    """One text of the corpus and the name it came from (``topic:if``, ``json/decoder.py:JSONDecoder``)."""

    name: str
    text: str


def _clean(text: str) -> str:
    lines = [line.rstrip() for line in text.splitlines() if not _DOCTEST_LINE.match(line)]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _topic_documents() -> list[Document]:
    from pydoc_data.topics import topics

    return [Document(f"topic:{key}", _clean(topics[key])) for key in sorted(topics)]


def _docstring_documents(stdlib: Path, limit: int | None) -> list[Document]:
    docs: list[Document] = []
    for path in sorted(stdlib.rglob("*.py")):
        if limit is not None and len(docs) >= limit:
            break
        rel = path.relative_to(stdlib).as_posix()
        if any(part in rel for part in _SKIPPED_PARTS):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                text = ast.get_docstring(node)
                if text and len(text) >= MIN_DOCSTRING_CHARS:
                    label = "" if isinstance(node, ast.Module) else f":{node.name}:{node.lineno}"
                    docs.append(Document(f"{rel}{label}", _clean(text)))
    return docs


def load_documents(stdlib: Path | None = None, limit: int | None = None) -> list[Document]:
    """The documents of the corpus in a stable order (topics, then docstrings by file); the first
    ``limit`` of them when given (parsing stops there)."""
    root = Path(stdlib) if stdlib is not None else Path(sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise FileNotFoundError(f"Python standard library directory not found: {root}")
    docs = [d for d in _topic_documents() if d.text]
    if limit is None or len(docs) < limit:
        rest = None if limit is None else limit - len(docs)
        docs += [d for d in _docstring_documents(root, rest) if d.text]
    return docs if limit is None else docs[:limit]


def is_validation(doc: Document) -> bool:
    """Whether ``doc`` belongs to the held-out validation split (stable hash of its name)."""
    digest = hashlib.sha256(doc.name.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "little") % VALIDATION_ONE_IN == 0


def split_documents(docs: list[Document]) -> tuple[list[Document], list[Document]]:
    """``(train, validation)`` split of ``docs``."""
    train = [d for d in docs if not is_validation(d)]
    val = [d for d in docs if is_validation(d)]
    return train, val


def corpus_fingerprint(docs: list[Document]) -> str:
    """sha256 over the documents' names and texts: identifies the exact corpus a model saw."""
    h = hashlib.sha256()
    for d in docs:
        h.update(d.name.encode("utf-8") + b"\0" + d.text.encode("utf-8") + b"\0")
    return h.hexdigest()


__all__ = ["CORPUS_LICENSE", "CORPUS_NAME", "Document", "corpus_fingerprint", "is_validation",
           "load_documents", "split_documents"]
