"""The repository stands alone: a clone in an empty folder has everything its code, tests,
benchmarks and documents read, so no file may name a folder beside the repository; its own
documents link only to what it holds, and its HTTP reference covers every route."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.fast

ROOT = Path(__file__).resolve().parents[1]

# Built from parts, so that this file does not name what it looks for.
SIBLING = re.compile(re.escape("." + "./" + "shared") + "|" + r"""/\s*["']""" + "shared" + r"""["']\s*/""")


def repository_files() -> list[Path]:
    """Every file git would put in a commit now: tracked ones and new ones not ignored."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    files = [ROOT / name for name in listed.decode().split("\0") if name]
    return [path for path in files if path.is_file() and not path.is_symlink()]  # deleted ones are gone


def test_no_file_names_a_folder_beside_the_repository():
    files = repository_files()
    assert any(path.name == "README.md" for path in files)  # the listing really is the repository
    found = []
    for path in files:
        text = path.read_bytes().decode("utf-8", errors="replace")
        found += [
            f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}"
            for m in SIBLING.finditer(text)
        ]
    assert not found, "files that reach outside the repository:\n" + "\n".join(found)


def test_the_check_finds_both_spellings():
    assert SIBLING.search("see " + "." + "./" + "shared" + "/API.md")
    assert SIBLING.search("Path(__file__).parents[3] / " + '"shared"' + ' / "data"')
    assert not SIBLING.search("cgroups.shared(root) and a shared GPU")


def test_the_ci_entry_point_checks_it_before_the_tests():
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.index("git grep") < ci.index("make test")


DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "examples" / "README.md"]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(markdown: str) -> set[str]:
    """The anchors a Markdown file's headings get on GitHub: lower case, punctuation dropped,
    spaces as hyphens."""
    titles = re.findall(r"(?m)^#+ (.+)$", markdown)
    return {re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-") for title in titles}


def test_the_documents_links_lead_to_files_and_headings_in_the_repository():
    broken = []
    for document in DOCUMENTS:
        for target in LINK.findall(document.read_text()):
            if re.match(r"[a-z]+://", target):
                continue
            path, _, anchor = target.partition("#")
            linked = (document.parent / path).resolve() if path else document
            if not linked.is_relative_to(ROOT) or not linked.exists():
                broken.append(f"{document.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked.read_text()):
                broken.append(f"{document.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_the_link_check_sees_a_missing_heading():
    assert "students-code-the-sandbox" in anchors("## Students' code: the sandbox\n")
    assert "gpus" not in anchors("## GPU workers\n")


def test_the_http_reference_names_every_route(client, alice):
    document = client.get("/api/v1/openapi.json", headers=alice).get_json()
    reference = (ROOT / "docs" / "api.md").read_text()
    routes = [f"{method.upper()} {path}" for path, methods in document["paths"].items() for method in methods]
    assert len(routes) >= 40
    missing = [route for route in routes if f"`{route}`" not in reference]
    assert not missing, "docs/api.md does not describe:\n" + "\n".join(missing)
