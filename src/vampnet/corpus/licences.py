"""Licences of corpus sources: what a Debian copyright file says about each file, and whether that licence is free.

Machine-readable copyright files (DEP-5) name licences per file pattern; the last paragraph whose `Files:`
pattern matches a file decides (as DEP-5 says), so a track under its own licence in a game's copyright file
gets that licence. Free-form files are searched for the first licence phrase, with the GPL or CC version read
from the words after it. A licence is free when every part of it ("A and B") is, or any alternative ("A or B")
is; non-commercial, no-derivatives and Sampling-Plus terms are never free; a licence we do not recognise is
"unclear" and its files are left out."""
from __future__ import annotations

import fnmatch
import re

# Licence phrases as they appear in free-form Debian copyright files; the earliest one in the text wins, because
# upstream's licence comes before the packaging's (which is often a different one).
_LICENCE_PATTERNS = (
    ("GPL", r"GNU\s+General\s+Public\s+Licen[cs]e|\bGPL\b"),
    ("LGPL", r"GNU\s+(Lesser|Library)\s+General\s+Public\s+Licen[cs]e|\bLGPL\b"),
    ("CC-BY-SA", r"Creative\s+Commons\s+Attribution[- ]Share[- ]?Alike|\bCC[- ]BY[- ]SA\b"),
    ("CC-BY", r"Creative\s+Commons\s+Attribution(?![- ]Share)|\bCC[- ]BY\b(?![- ]SA)"),
    ("CC0", r"\bCC0\b|Creative\s+Commons\s+Zero"),
    ("MIT", r"\bMIT\s+licen[cs]e|Permission is hereby granted, free of charge"),
    ("Artistic", r"Artistic\s+Licen[cs]e"),
    ("public-domain", r"public\s+domain"),
)

# Terms that make a licence non-free for us, and the licence families we accept (DFSG-free ones).
_NON_FREE = re.compile(r"\bNC\b|non-?commercial|\bND\b|no-?deriv|sampling", re.I)
_FREE = re.compile(r"^(A?GPL|LGPL|CC-BY|CC-BY-SA|CC0|public-domain|PD|Artistic|MIT|Expat|BSD|zlib|ISC|Unlicense|"
                   r"WTFPL|GFDL)([-.+\d]|$|\s)", re.I)


def licence_status(short: str) -> tuple[str, str]:
    """("free" | "non-free" | "unclear", why) for a licence name such as "GPL-2+", "CC-BY-SA-3.0 or GPL-3" or
    "CC-BY-NC-SA-3.0"."""
    alternatives = [a.strip(" ()") for a in re.split(r"\s+or\s+", short.strip(), flags=re.I) if a.strip(" ()")]
    verdicts = []
    for alternative in alternatives:
        parts = [p.strip(" ()") for p in re.split(r"\s+and\s+|,", alternative, flags=re.I) if p.strip(" ()")]
        if any(_NON_FREE.search(p) for p in parts):
            verdicts.append("non-free")
        elif parts and all(_FREE.match(p) for p in parts):
            verdicts.append("free")
        else:
            verdicts.append("unclear")
    if "free" in verdicts:
        return "free", f"{short} is a free licence"
    if "non-free" in verdicts:
        return "non-free", f"{short}: non-commercial, no-derivatives or Sampling-Plus terms"
    return "unclear", f"licence {short or 'not stated'} is not one we recognise as free"


class CopyrightFile:
    """A Debian copyright file, parsed once: `licence_of(path)` for each installed file."""

    def __init__(self, text: str, path: str | None = None):
        self.text, self.path = text, path
        self.dep5 = bool(re.match(r"\s*Format:", text))
        self.paragraphs = _dep5_paragraphs(text) if self.dep5 else []
        self.whole = parse_licence(text)  # the package as a whole (the `Files: *` paragraph, or the free-form text)

    def licence_of(self, path: str) -> dict:
        """{"short", "line"} of one file, named by its installed path (an archive member by the archive's folder
        joined with the member's path)."""
        matching = [p for p in self.paragraphs if any(_matches(path, pattern) for pattern in p[0])]
        if matching:
            return {"short": matching[-1][1], "line": matching[-1][2]}
        return dict(self.whole)


def _matches(path: str, pattern: str) -> bool:
    pattern = pattern.lstrip("./") if pattern.startswith("./") else pattern
    return pattern == "*" or fnmatch.fnmatch(path, "*/" + pattern)


def parse_licence(text: str, files=()) -> dict:
    """The licence of a Debian copyright file: {"short": e.g. "GPL-2+", "line": the words that say so}.

    For DEP-5 files and the given installed `files`, each file's licence (several are joined with " and ");
    without files, or when none matches, the `Files: *` paragraph's."""
    if re.match(r"\s*Format:", text):
        found = _dep5_licences(text, [str(f) for f in files])
        if found:
            return {"short": " and ".join(sorted(found)), "line": "; ".join(found[k] for k in sorted(found))}
    found = [(m.start(), name, m) for name, pattern in _LICENCE_PATTERNS
             for m in [re.search(pattern, text, re.I)] if m]
    # "public domain" often describes where samples came from, not the licence: only use it when nothing else is named
    named = [f for f in found if f[1] != "public-domain"] or found
    if not named:
        return {"short": "unknown", "line": ""}
    _, name, match = min(named, key=lambda f: f[0])
    after = text[match.end():match.end() + 400]
    if name in ("GPL", "LGPL", "CC-BY-SA", "CC-BY"):
        # "version 2", "v3", "licence 3.0", or a number right after the name ("CC BY-SA 3.0", "GPL-2")
        version = (re.search(r"\bversion\s*(\d(?:\.\d)?)|\bv(\d(?:\.\d)?)\b|^\W*licen[cs]e\s+(\d\.\d)\b", after, re.I)
                   or re.match(r"\W{0,3}(\d(?:\.\d)?)\b", after))
        if version:
            name += "-" + next(g for g in version.groups() if g)
            later = r"\bor\s+(?:\(?at\s+your\s+option\)?,?\s+)?(?:any\s+)?later"
            if name.startswith(("GPL", "LGPL")) and re.search(later, after[:200], re.I):
                name += "+"
    return {"short": name, "line": _sentence(text, match.start(), match.end())}


def _dep5_paragraphs(text: str) -> list[tuple[list[str], str, str]]:
    """(file patterns, licence name, its License line) of every paragraph with both fields."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        files_field = re.search(r"^Files:((?:.*)(?:\n[ \t]+.*)*)", block, re.M)
        licence = re.search(r"^License:\s*(\S.*)$", block, re.M)
        if files_field and licence:
            paragraphs.append((files_field.group(1).split(), licence.group(1).strip(), licence.group(0).strip()))
    return paragraphs


def _dep5_licences(text: str, files: list[str]) -> dict[str, str]:
    """{licence: its License line} for the files (or the `Files: *` paragraph) of a DEP-5 copyright file."""
    paragraphs = _dep5_paragraphs(text)
    found = {}
    for f in files:
        matching = [p for p in paragraphs if any(_matches(f, pat) for pat in p[0])]
        if matching:
            found[matching[-1][1]] = matching[-1][2]
    if not found:
        default = next((p for p in paragraphs if p[0] == ["*"]), None) or next(
            (p for p in paragraphs if not all(pat.startswith("debian/") for pat in p[0])), None)
        if default:
            found[default[1]] = default[2]
    return found


def _sentence(text: str, start: int, end: int) -> str:
    """The sentence around text[start:end], on one line."""
    begin = max(text.rfind(". ", 0, start) + 2, text.rfind("\n\n", 0, start) + 2, 0)
    stop = text.find(".", end)
    stop = len(text) if stop < 0 or stop - end > 300 else stop + 1
    return " ".join(text[begin:stop].split())[:300]
