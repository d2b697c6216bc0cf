"""The repository explains itself: no file cites a document outside it, and the docs' links resolve.

Design decisions and outside facts live in docs/ (DESIGN.md, HARDWARE.md, DEMO_CONTRACT.md); nothing may
point at a sibling checkout's notes (``../shared``) or at the fact sheet and demo README they came from.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
#: This test and the one-off rewrite script name the old citations on purpose.
EXEMPT = {"suites/unit/test_docs_self_contained.py", "scripts/fix_doc_citations.py"}
#: Directories never scanned when the checkout is not a git work tree.
SKIP_DIRS = {".git", ".tox", ".venv", ".venv312", "build", "dist", "results", "generated", "node_modules", "__pycache__"}
MAX_BYTES = 1 << 20

FORBIDDEN = {
    "../shared": re.compile(r"\.\./shared\b"),
    "FACTS.md": re.compile(r"FACTS\.md"),
    "seed README": re.compile(r"seed[ _-]?readme", re.IGNORECASE),
    "DESIGN <n>": re.compile(r"\bDESIGN\s(?:section\s|§\s?)?\d"),
}
#: Outside docs/ a DESIGN.md citation must name docs/DESIGN.md (inside docs/ the bare name is the sibling).
BARE_DESIGN = re.compile(r"(?<!docs/)\bDESIGN\.md\b")
SECTION_CITATION = re.compile(r"(?:docs/)?(DESIGN|HARDWARE|DEMO_CONTRACT)\.md,? section (\d+(?:\.\d+)?)")
DOC_PATH = re.compile(r"(?<![\w.])docs/([A-Za-z0-9_\-]+\.md)\b")
MD_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _tracked_files() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=30).stdout
        names = [n for n in out.decode().split("\0") if n]
        if names:
            return names
    except (OSError, subprocess.SubprocessError):
        pass
    names = []
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT)
        if path.is_file() and not any(part in SKIP_DIRS or part.endswith(".egg-info") for part in rel.parts):
            names.append(rel.as_posix())
    return names


def _text_files() -> dict[str, str]:
    files = {}
    for name in _tracked_files():
        path = ROOT / name
        if not path.is_file() or path.stat().st_size > MAX_BYTES:
            continue
        data = path.read_bytes()
        if b"\0" in data:
            continue
        try:
            files[name] = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
    return files


@pytest.fixture(scope="module")
def text_files() -> dict[str, str]:
    files = _text_files()
    assert "README.md" in files and "docs/DESIGN.md" in files, f"scan found no repository text under {ROOT}"
    return files


def _numbered_sections(text: str) -> set[str]:
    """``## 5. Title`` -> "5", ``### 5.4 Title`` -> "5.4"."""
    return set(re.findall(r"^#{2,4} (\d+(?:\.\d+)?)\.? ", text, re.MULTILINE))


def test_no_file_cites_documents_outside_the_repository(text_files):
    found = []
    for name, text in sorted(text_files.items()):
        if name in EXEMPT:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            hits = [label for label, pattern in FORBIDDEN.items() if pattern.search(line)]
            if not name.startswith("docs/") and BARE_DESIGN.search(line):
                hits.append("DESIGN.md other than docs/DESIGN.md")
            if hits:
                found.append(f"{name}:{number}: {', '.join(hits)}: {line.strip()[:120]}")
    assert not found, "citations of documents outside the repository (run scripts/fix_doc_citations.py):\n" + "\n".join(found)


def test_section_citations_name_existing_sections(text_files):
    sections = {stem: _numbered_sections(text_files[f"docs/{stem}.md"]) for stem in ("DESIGN", "HARDWARE", "DEMO_CONTRACT")}
    assert {"2", "3", "5.4", "6", "7", "8"} <= sections["DESIGN"], sections["DESIGN"]
    found = []
    for name, text in sorted(text_files.items()):
        if name in EXEMPT:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            for m in SECTION_CITATION.finditer(line):
                if m.group(2) not in sections[m.group(1)]:
                    found.append(f"{name}:{number}: {m.group(0)} (docs/{m.group(1)}.md has {sorted(sections[m.group(1)])})")
    assert not found, "citations of missing sections:\n" + "\n".join(found)


def test_mentioned_docs_exist(text_files):
    found = [
        f"{name}: docs/{m.group(1)}"
        for name, text in sorted(text_files.items())
        if name not in EXEMPT
        for m in DOC_PATH.finditer(text)
        if not (ROOT / "docs" / m.group(1)).is_file()
    ]
    assert not found, "mentions of docs that do not exist:\n" + "\n".join(found)


def test_relative_links_in_readme_and_docs_resolve(text_files):
    pages = [name for name in text_files if name == "README.md" or (name.startswith("docs/") and name.endswith(".md"))]
    assert len(pages) >= 4, pages
    broken = []
    for name in sorted(pages):
        text = re.sub(r"```.*?```", "", text_files[name], flags=re.DOTALL)  # links inside code blocks are not links
        for m in MD_LINK.finditer(text):
            target = m.group(1)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue  # external URL or in-page anchor
            path = target.split("#", 1)[0]
            if not (ROOT / name).parent.joinpath(path).resolve().exists():
                broken.append(f"{name}: ({target})")
    assert not broken, "relative links that resolve to nothing:\n" + "\n".join(broken)


#: Team roles and the tracker's issue numbers mean nothing to a reader of the repository.
ROLES_AND_ISSUES = re.compile(r"\b(?:ops|model|mla|moe|perf|infra|test)\s+engineers?\b|\bissues?\s+#?\d+", re.IGNORECASE)


def test_docs_and_code_name_no_team_roles_or_issue_numbers(text_files):
    files = [name for name in text_files if name.endswith((".md", ".py", ".ini", ".toml", ".sh")) and name not in EXEMPT]
    found = [f"{name}:{number}: {line.strip()[:120]}" for name in sorted(files)
             for number, line in enumerate(text_files[name].splitlines(), 1) if ROLES_AND_ISSUES.search(line)]
    assert not found, "team roles or issue numbers (say what the thing is instead):\n" + "\n".join(found)
    for flagged in ("Written by the ops engineer", "see issue #15", "the five bugs of issue 12"):
        assert ROLES_AND_ISSUES.search(flagged), flagged
    assert not ROLES_AND_ISSUES.search("the kind a careful engineer writes")


def test_the_checks_catch_what_they_guard_against():
    """The patterns above flag each old citation form and pass the new ones."""
    old = [
        "see " + "DESIGN.md section 5",
        "(" + "FACTS.md" + ")",
        "the seed " + "README's CLI",
        "../" + "shared/ttnn",
        "DESIGN " + "6",
    ]
    for line in old:
        assert any(p.search(line) for p in FORBIDDEN.values()) or BARE_DESIGN.search(line), line
    for line in ("see docs/DESIGN.md section 5.4", "docs/HARDWARE.md section 6", "a seeded generator (seed, key)"):
        assert not any(p.search(line) for p in FORBIDDEN.values()) and not BARE_DESIGN.search(line), line
    assert MD_LINK.findall("[a](DESIGN.md#x) ![img](p.png) [b](https://x.y)") == ["DESIGN.md#x", "https://x.y"]
