"""A user's clone has nothing beside it: no file in the repository may read or cite the folder beside it or a path that
exists only on one machine (a home folder, a build machine's work folder)."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

from conftest import ROOT

# built from pieces so that this file does not match itself
FORBIDDEN = re.compile("|".join([r"\.\./" + "shared", "shared/" + r"(reference|checks|hooks|DESIGN)",
                                 r"(?<![\w.~-])/" + r"(work|home|root|Users|mnt)/"]))
TEXT_SUFFIXES = {".py", ".md", ".txt", ".sh", ".toml", ".yaml", ".yml", ".cfg", ".ini", ".json", ".csv", ".js",
                 ".html", ".css", ""}


def repository_files() -> list:
    try:
        listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout.split("\n")
        return [ROOT / f for f in listed if f]
    except (OSError, subprocess.CalledProcessError):  # an unpacked source archive: no git
        return [p for p in ROOT.rglob("*") if ".venv" not in p.parts and ".git" not in p.parts]


def test_no_file_reads_or_cites_anything_outside_the_repository():
    offenders = []
    for path in repository_files():
        if path.name == Path(__file__).name or not path.is_file() or path.suffix not in TEXT_SUFFIXES or path.stat().st_size > 2_000_000:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for n, line in enumerate(text.splitlines(), 1):
            if FORBIDDEN.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()[:100]}")
    assert not offenders, "\n".join(offenders)


def test_the_pattern_catches_what_it_must():
    assert FORBIDDEN.search("x = ROOT.parent / '..' / 'shared'") is None  # (split paths are caught by review)
    for bad in ("see ../" + "shared/DESIGN.md", "cd /" + "work/corpus", "open('/" + "home/me/x.wav')",
                "fixtures at shared/" + "reference/fixtures"):
        assert FORBIDDEN.search(bad), bad
    for fine in ("/usr/share/doc/wesnoth/copyright", "~/work/corpus", "https://example.org/home/x"):
        assert not FORBIDDEN.search(fine), fine
