"""Build the shipped offline lm-eval tasks from the embedded model's corpus (deterministic).

    python -m deepseek_tt.evaluation.build_tasks [--out deepseek_tt/evaluation/tasks] [--split validation]

Both tasks come from the held-out validation documents of ``reference_models.corpus`` (Python's
standard library documentation, the text the embedded model was trained on, but documents it never
saw), at most one item per document and task, chosen with a fixed seed:

- ``pydoc_mc``: multiple choice (scored by log-likelihood). The context is the document up to the end
  of a sentence (at most ``CONTEXT_CHARS`` characters, cut at a line start); the choices are the first
  ``CHOICE_WORDS`` words of the true next sentence and of the next sentences of three other documents.
  Chance is 1/4.
- ``pydoc_gen``: greedy generation. The context is cut the same way inside a sentence, after at least
  ``MIN_LEAD_WORDS`` of its words; the target is the next word. Scored by whether the first word the model
  writes is the target (chance is about 0 with a 4096-token vocabulary).

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
MIN_LEAD_WORDS = 4
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


def build_mc(docs: list[Document], rng: random.Random) -> list[dict]:
    candidates = []
    for doc in docs:
        spots = _boundaries(doc)
        if spots:
            end, words = rng.choice(spots)
            candidates.append((doc.name, _context(doc.text, end), " ".join(words[:CHOICE_WORDS])))
    rng.shuffle(candidates)
    items = candidates[:MC_ITEMS]
    if len(items) < MC_ITEMS:
        raise SystemExit(f"only {len(items)} documents have a usable sentence boundary (need {MC_ITEMS})")
    rows = []
    for i, (name, context, answer) in enumerate(items):
        others = [c[2] for j, c in enumerate(candidates) if j != i and c[2] != answer]
        choices = [answer, *rng.sample(others, NUM_CHOICES - 1)]
        rng.shuffle(choices)
        rows.append({"id": f"mc-{i:03d}", "source": name, "context": context, "choices": choices,
                     "label": choices.index(answer)})
    return rows


def build_gen(docs: list[Document], rng: random.Random) -> list[dict]:
    candidates = []
    for doc in docs:
        spots = [(end, words) for end, words in _boundaries(doc) if len(words) > MIN_LEAD_WORDS + 1]
        if not spots:
            continue
        end, words = rng.choice(spots)
        lead = rng.randrange(MIN_LEAD_WORDS, len(words) - 1)
        target = _WORD.search(words[lead])
        if target is None or target.start() != 0:
            continue
        sentence_start = end + len(re.match(r"\s*", doc.text[end:]).group())
        # the context: text up to the sentence plus its first `lead` words as written (line breaks kept)
        pos = sentence_start
        for _ in range(lead):
            pos = re.compile(r"\S+\s*").match(doc.text, pos).end()
        context = _context(doc.text, pos)
        candidates.append({"source": doc.name, "context": context, "target": target.group()})
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
