"""Build the shipped offline lm-eval tasks from the embedded model's corpus (deterministic).

    python -m deepseek_tt.evaluation.build_tasks [--out deepseek_tt/evaluation/tasks] [--split validation]

Both tasks come from the held-out validation documents of ``reference_models.corpus`` (Python's
standard library documentation, the text the embedded model was trained on, but documents it never
saw), at most one item per document and task, chosen with a fixed seed:

- ``pydoc_mc``: multiple choice (scored by log-likelihood). The context is the document up to the end
  of a sentence (at most ``CONTEXT_CHARS`` characters, cut at a line start); the choices are the first
  ``CHOICE_WORDS`` words of the true next sentence and three variants of it with one pair of
  neighbouring words swapped (the first word kept), so every choice has the same words and length and
  only the model's sense of the language can tell them apart. Chance is 1/4.
- ``pydoc_gen``: greedy generation. The context is cut the same way before a word (at least
  ``MIN_LEAD_CHARS`` characters into the document); the target is that word. Scored by whether the
  first word the model writes is the target (exact match; a model that always writes the most frequent
  target scores its frequency, see ``majority_baseline``).

The data depends on the stdlib of the Python that runs this (the model card names 3.11.7); the JSONL
files are committed, so the suite never rebuilds them.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path

from reference_models.corpus import Document, load_documents, split_documents

SEED = 20240616
CONTEXT_CHARS = 320
CHOICE_WORDS = 6
NUM_CHOICES = 4
MIN_LEAD_CHARS = 80
MC_ITEMS = 60
GEN_ITEMS = 40
TASK_DIR = Path(__file__).resolve().parent / "tasks"

# a sentence ends with . ! or ? followed by spaces or one newline (not a paragraph break)
_BOUNDARY = re.compile(r"(?<=[a-z0-9)\"'][.!?])( +|\n(?!\n))")
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")


def _context(text: str, end: int) -> str:
    """``text[:end]`` cut to its last ``CONTEXT_CHARS`` characters at a line start (whole text when short)."""
    start = 0
    if end > CONTEXT_CHARS:
        cut = text.find("\n", end - CONTEXT_CHARS)
        start = cut + 1 if 0 <= cut < end - 40 else end - CONTEXT_CHARS
    return text[start:end].strip()


def _next_sentence_words(text: str, start: int) -> list[str] | None:
    """The whitespace-separated words from ``start`` to the end of the sentence (None for code, lists, headings)."""
    paragraph = text[start:].split("\n\n", 1)[0]
    match = re.search(r"[.!?](\s|$)", paragraph)
    sentence = paragraph[: match.end()] if match else paragraph
    words = sentence.split()
    if not words or not words[0][:1].isupper() or sentence.lstrip().startswith(("*", "-", ">>>", "+")):
        return None
    return words


def _boundaries(doc: Document) -> list[tuple[int, list[str]]]:
    """(end of context, next sentence's words) for every usable sentence boundary of ``doc``."""
    found = []
    for match in _BOUNDARY.finditer(doc.text):
        words = _next_sentence_words(doc.text, match.end())
        if words and len(words) >= CHOICE_WORDS and all(_WORD.search(w) for w in words[:CHOICE_WORDS]):
            found.append((match.start(), words))
    return found


def _swaps(words: list[str], rng: random.Random, count: int) -> list[str]:
    """``count`` distinct variants of ``words`` with one pair of neighbouring words swapped (the first word
    stays first), none equal to the original."""
    original, variants = " ".join(words), []
    for i in range(1, len(words) - 1):
        swapped = [*words[:i], words[i + 1], words[i], *words[i + 2:]]
        text = " ".join(swapped)
        if text != original and text not in variants:
            variants.append(text)
    if len(variants) < count:
        return []
    return rng.sample(variants, count)


def build_mc(docs: list[Document], rng: random.Random) -> list[dict]:
    candidates = []
    for doc in docs:
        spots = [(end, words) for end, words in _boundaries(doc)
                 if len(_swaps(words[:CHOICE_WORDS], random.Random(0), NUM_CHOICES - 1)) == NUM_CHOICES - 1]
        if spots:
            end, words = rng.choice(spots)
            candidates.append((doc.name, _context(doc.text, end), words[:CHOICE_WORDS]))
    rng.shuffle(candidates)
    if len(candidates) < MC_ITEMS:
        raise SystemExit(f"only {len(candidates)} documents have a usable sentence boundary (need {MC_ITEMS})")
    rows = []
    for i, (name, context, words) in enumerate(candidates[:MC_ITEMS]):
        answer = " ".join(words)
        choices = [answer, *_swaps(words, rng, NUM_CHOICES - 1)]
        rng.shuffle(choices)
        rows.append({"id": f"mc-{i:03d}", "source": name, "context": context, "choices": choices,
                     "label": choices.index(answer)})
    return rows


def _gen_spots(text: str) -> list[tuple[int, str]]:
    """(start, word) for every word of ``text`` usable as a generation target: a plain word (letters only)
    after a space, ``MIN_LEAD_CHARS`` or more characters in."""
    return [(match.start(), match.group(1)) for match in re.finditer(r"(?<= )([A-Za-z]+)(?=[\s.,;:)]|$)", text)
            if match.start() >= MIN_LEAD_CHARS]


def build_gen(docs: list[Document], rng: random.Random) -> list[dict]:
    candidates = []
    for doc in docs:
        spots = _gen_spots(doc.text)
        if spots:
            start, word = rng.choice(spots)
            candidates.append({"source": doc.name, "context": _context(doc.text, start), "target": word})
    rng.shuffle(candidates)
    if len(candidates) < GEN_ITEMS:
        raise SystemExit(f"only {len(candidates)} documents fit the generation task (need {GEN_ITEMS})")
    return [{"id": f"gen-{i:03d}", **c} for i, c in enumerate(candidates[:GEN_ITEMS])]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=TASK_DIR, help="directory of the task files")
    parser.add_argument("--split", choices=("validation", "train"), default="validation")
    args = parser.parse_args(argv)
    train, validation = split_documents(load_documents())
    docs = validation if args.split == "validation" else train
    rng = random.Random(SEED)
    mc = build_mc(docs, rng)
    gen = build_gen(docs, rng)
    write_jsonl(args.out / "pydoc_mc.jsonl", mc)
    write_jsonl(args.out / "pydoc_gen.jsonl", gen)
    print(f"wrote {len(mc)} multiple-choice and {len(gen)} generation items from {len(docs)} {args.split} documents to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
