"""Point every citation of a design note or fact sheet outside the repository at the docs in ``docs/``.

    python scripts/fix_doc_citations.py [--check] [--root DIR]

Rewrites, in every tracked text file (``git ls-files``):

- ``DESIGN.md section N`` / ``DESIGN N`` / ``../shared/DESIGN.md`` -> ``docs/DESIGN.md section N`` (the
  section numbers of docs/DESIGN.md, refined to a subsection where a file's citation is about one);
- ``FACTS.md`` / ``../shared/FACTS.md`` -> ``docs/HARDWARE.md`` (with its section where known);
- mentions of the original demo's README -> ``docs/DEMO_CONTRACT.md`` or "the original demo's ...".

Inside ``docs/`` the new paths are written relative to ``docs/`` (``DESIGN.md section 3``). Prints each
changed line; idempotent (a second run changes nothing). Exits 1 when a citation remains that it does not
know how to rewrite, or when a rewritten citation names a section the target doc does not have.
``--check`` reports without writing.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

#: Files that hold the old names on purpose (this script and the test that guards against them).
EXEMPT = ("scripts/fix_doc_citations.py", "suites/unit/test_docs_self_contained.py")
#: The new docs; they never cite the old files, and their relative links must stay untouched.
NEW_DOCS = ("docs/DESIGN.md", "docs/HARDWARE.md", "docs/DEMO_CONTRACT.md")
MAX_BYTES = 1 << 20


def doc(path: str, name: str) -> str:
    """How ``path`` refers to ``docs/<name>``: relative inside docs/, from the root elsewhere."""
    return name if path.startswith("docs/") else f"docs/{name}"


Replacement = Callable[[str, re.Match], str]


@dataclass(frozen=True)
class Rule:
    """``pattern`` -> ``replace(path, match)`` in files whose path ends with ``only`` (all files when None)."""

    pattern: re.Pattern
    replace: Replacement
    only: str | None = None

    def applies(self, path: str) -> bool:
        return self.only is None or path.endswith(self.only)


def fixed(template: str) -> Replacement:
    """A replacement where ``{DESIGN}``, ``{HARDWARE}``, ``{DEMO}`` become paths as seen from the file."""
    return lambda path, _m: template.format(
        DESIGN=doc(path, "DESIGN.md"), HARDWARE=doc(path, "HARDWARE.md"), DEMO=doc(path, "DEMO_CONTRACT.md")
    )


def rule(pattern: str, replacement: str | Replacement, only: str | None = None, flags: int = 0) -> Rule:
    replace = fixed(replacement) if isinstance(replacement, str) else replacement
    return Rule(re.compile(pattern, flags), replace, only)


def design_section(section: str) -> Replacement:
    return lambda path, _m: f"{doc(path, 'DESIGN.md')} section {section}"


def design_numbered(path: str, m: re.Match) -> str:
    return f"{doc(path, 'DESIGN.md')} section {m.group('n')}"


#: Not preceded by a path, a word or a dash: a bare mention of the old file.
BARE = r"(?<![\w/.\-])"
#: An old-style DESIGN citation: "DESIGN.md section 5", "../shared/DESIGN.md section 5", "DESIGN 5", "DESIGN §5".
OLD_DESIGN_SECTION = BARE + r"(?:\.\./)?(?:shared/)?DESIGN(?:\.md)?,?\s(?:section\s|§\s?)?(?P<n>\d+(?:\.\d+)?)\b"

RULES: tuple[Rule, ...] = (
    # --- DESIGN.md: citations about one subsection ------------------------------------------------------
    rule(BARE + r"DESIGN\.md section 5\b(?!\.)", design_section("5.2"), only="fixtures/options.py"),
    rule(BARE + r"DESIGN\.md section 5\b(?!\.)", design_section("5.3"), only="suites/accuracy/matrix.py"),
    rule(BARE + r"DESIGN\.md section 5\b(?!\.)", design_section("5.4"), only="deepseek_tt/accuracy/thresholds.py"),
    rule(BARE + r"DESIGN\.md section 5\b(?!\.)", design_section("5.5"), only="fixtures/results.py"),
    rule(BARE + r"DESIGN\.md section 5\b(?!\.)", design_section("5.5"), only="reports/store.py"),
    # --- the original demo's README ---------------------------------------------------------------------
    rule(r', seed README "How to develop"', ""),
    rule(r'\(seed README "How to develop"\)', "({DESIGN} section 3)"),
    rule(r'\(seed README, "Programmatic usage"\)', "({DEMO} section 5)"),
    rule(r"\(seed README's CLI\)", "(the original demo's CLI, {DEMO})"),
    rule(r"the seed README's demo CLI", "the original demo's CLI ({DEMO})"),
    rule(
        r"Every argument of the seed README keeps its name, default and meaning",
        "Every argument of the original tt-metal demo keeps its name and meaning, and its default except where {DEMO} "
        "section 1 says otherwise",
    ),
    rule(r"The seed README's request works as written", "The original demo's request ({DEMO} section 7) works as written"),
    rule(r"The seed README's request, as written", "The original demo's request ({DEMO} section 7), as written"),
    rule(r"environment as in the seed README", "environment as in {DEMO} section 7"),
    rule(r"\(the seed README's variable\)", "(the original demo's variable, {DEMO} section 7)"),
    rule(r"\(the seed README's default\)", "(the original demo's default, {DEMO} section 3)"),
    rule(r"\(seed README defaults\)", "(the original demo's defaults, {DEMO} section 1)"),
    rule(r"Prompt files of the seed README", "Prompt files of the original demo ({DEMO} section 2)"),
    rule(r"\(as in the seed README\)", "(as in the original demo, {DEMO} section 1)"),
    rule(r"\(seed README\)", "({DEMO})"),
    rule(
        r"\bSeed flags keep their names, defaults and meanings",
        "The original demo's flags keep their names and meanings, and their defaults except where {DEMO} section 1 says otherwise",
    ),
    rule(r"\bSeed flags keep", "The original demo's flags keep"),
    rule(r"\(the seed's\)", "(the original demo's)"),
    rule(r"\btest_parser_defaults_match_the_seed_readme\b", "test_parser_defaults_match_the_original_demo"),
    rule(r"\bSEED_CURL_BODY\b", "ORIGINAL_DEMO_CURL_BODY"),
    rule(r"\btest_seed_curl_request\b", "test_original_demo_curl_request"),
    rule(r"\bthe seed README's\b", "the original demo's"),
    rule(r"\bThe seed README's\b", "The original demo's"),
    rule(r"\bthe seed README\b", "{DEMO}"),
    rule(r"\bThe seed README\b", "{DEMO}"),
    rule(r"\bseed README\b", "{DEMO}"),
    # --- FACTS.md ------------------------------------------------------------------------------------------
    rule(r"\(sources: (?:\.\./)?(?:shared/)?FACTS\.md, vendor spec sheets\)", "(figures and their sources: {HARDWARE})"),
    rule(r"dims \(FACTS\.md\)", "dims ({HARDWARE} section 4)"),
    rule(r"# FACTS\.md: 192\^-0\.5", "# {HARDWARE} section 4: 192^-0.5"),
    rule(r"against FACTS\.md's published decode bounds", "against the published decode bounds of {HARDWARE} section 6"),
    rule(r"#: FACTS\.md: one Wormhole Galaxy", "#: {HARDWARE} section 6: one Wormhole Galaxy"),
    rule(r"which is what FACTS\.md quotes", "which is what {HARDWARE} section 6 quotes"),
    rule(r"\(FACTS\.md: BF16-HiFi4", "({HARDWARE} section 1: BF16-HiFi4"),
    rule(BARE + r"(?:\.\./)?(?:shared/)?FACTS\.md's", "{HARDWARE}'s"),
    rule(BARE + r"(?:\.\./)?(?:shared/)?FACTS\.md", "{HARDWARE}"),
    # --- DESIGN.md: the rest -------------------------------------------------------------------------------
    rule(r"DESIGN-level decisions live here", "design decisions and outside facts live in `{DESIGN}`"),
    rule(OLD_DESIGN_SECTION, design_numbered),
    rule(BARE + r"(?:\.\./)?(?:shared/)?DESIGN\.md", "{DESIGN}"),
)

#: What must not remain after the rewrite, anywhere (an unknown form of a citation the rules miss).
FORBIDDEN = (
    re.compile(r"\.\./shared\b"),
    re.compile(r"\bshared/(?:DESIGN|FACTS|seed|ttnn/cluster_descs)"),
    re.compile(r"FACTS\.md"),
    re.compile(r"seed[ _-]?readme", re.IGNORECASE),
    re.compile(r"\bseed flags\b", re.IGNORECASE),
    re.compile(r"\bDESIGN\s(?:section\s|§\s?)?\d"),
)
#: Outside docs/, DESIGN.md must be cited as docs/DESIGN.md.
BARE_DESIGN = re.compile(r"(?<!docs/)\bDESIGN\.md\b")
#: A section citation of one of the new docs: (doc name, section).
SECTION_CITATION = re.compile(r"(?:docs/)?(DESIGN|HARDWARE|DEMO_CONTRACT)\.md,? section (\d+(?:\.\d+)?)")
HEADING = re.compile(r"^#{2,4} (\d+(?:\.\d+)?)\. ", re.MULTILINE)


def repo_root(start: Path) -> Path:
    out = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=start, capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def tracked_text_files(root: Path) -> list[tuple[str, str]]:
    """(path relative to root, text) of every tracked, existing, UTF-8 text file of at most MAX_BYTES."""
    names = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True).stdout.decode().split("\0")
    files = []
    for name in filter(None, names):
        path = root / name
        if not path.is_file() or path.stat().st_size > MAX_BYTES:
            continue
        data = path.read_bytes()
        if b"\0" in data:
            continue
        try:
            files.append((name, data.decode("utf-8")))
        except UnicodeDecodeError:
            continue
    return files


def rewrite(path: str, text: str) -> str:
    """``text`` with every rule applied in order."""
    if path in EXEMPT or path in NEW_DOCS:
        return text
    for r in RULES:
        if r.applies(path):
            text = r.pattern.sub(lambda m, r=r: r.replace(path, m), text)
    return text


def problems(path: str, text: str) -> list[str]:
    """Citations left in ``text`` that point outside the repository."""
    if path in EXEMPT:
        return []
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        hits = [p.pattern for p in FORBIDDEN if p.search(line)]
        if not path.startswith("docs/") and BARE_DESIGN.search(line):
            hits.append("DESIGN.md without docs/")
        found += [f"{path}:{number}: {line.strip()[:160]}  [{', '.join(hits)}]"] if hits else []
    return found


def section_problems(path: str, text: str, sections: dict[str, set[str]]) -> list[str]:
    """Section citations of the new docs that name a section the doc lacks."""
    if path in EXEMPT:
        return []
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for m in SECTION_CITATION.finditer(line):
            name, section = m.group(1), m.group(2)
            if name in sections and section not in sections[name]:
                found.append(f"{path}:{number}: {m.group(0)}: docs/{name}.md has no section {section}")
    return found


def doc_sections(root: Path) -> dict[str, set[str]]:
    """Numbered headings of the new docs (``## 5. ...`` -> "5", ``### 5.4 ...`` -> "5.4")."""
    sections = {}
    for rel in NEW_DOCS:
        path = root / rel
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            numbers = set(HEADING.findall(text)) | set(re.findall(r"^#{2,4} (\d+\.\d+) ", text, re.MULTILINE))
            sections[Path(rel).stem] = numbers
    return sections


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=None, help="repository root (default: the git checkout of the cwd)")
    parser.add_argument("--check", action="store_true", help="report what would change; write nothing")
    args = parser.parse_args(argv)
    root = repo_root(args.root or Path.cwd())
    missing = [rel for rel in NEW_DOCS if not (root / rel).is_file()]
    if missing:
        print(f"error: {', '.join(missing)} missing under {root}: merge the docs first", file=sys.stderr)
        return 2
    sections = doc_sections(root)

    changed_files, left = 0, []
    for path, text in tracked_text_files(root):
        new = rewrite(path, text)
        if new != text:
            changed_files += 1
            for number, (old_line, new_line) in enumerate(zip(text.splitlines(), new.splitlines()), 1):
                if old_line != new_line:
                    print(f"{path}:{number}:\n  - {old_line.strip()}\n  + {new_line.strip()}")
            if not args.check:
                (root / path).write_text(new, encoding="utf-8")
        left += problems(path, new) + section_problems(path, new, sections)

    verb = "would change" if args.check else "changed"
    print(f"{verb} {changed_files} file(s)")
    if left:
        print(f"{len(left)} citation(s) left that this script cannot rewrite:", file=sys.stderr)
        for item in left:
            print(f"  {item}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
