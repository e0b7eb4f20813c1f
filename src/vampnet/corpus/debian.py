"""Debian packages for the corpus: fetch a package's .deb with `apt-get download` (no root, nothing installed),
take the files we want out of it with `dpkg-deb --fsys-tarfile` (streamed, so a 1.4 GB game package never lands
whole on disk), and install the tools that rendering needs (fluidsynth, soundfonts) with apt-get."""
from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import CorpusError

DEB_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vampnet" / "debs"


@dataclass(frozen=True)
class DebFile:
    """One file taken out of a .deb: where it was installed, where it is now, and, for a link, what it points to."""

    path: str                    # installed path, e.g. /usr/share/games/x/music/a.ogg
    local: Path | None           # the extracted copy (None for links)
    link_to: str | None = None   # installed path of a symbolic or hard link's target


def _need(tool: str) -> None:
    if shutil.which(tool) is None:
        raise CorpusError(f"{tool} not found: the Debian music sources need a Debian or Ubuntu system")


def package_version(package: str) -> str | None:
    """The installed version of a Debian package, or None when it is not installed (`dpkg -s`)."""
    _need("dpkg")
    result = subprocess.run(["dpkg", "-s", package], capture_output=True, text=True)
    if result.returncode != 0:
        return None
    fields = dict(line.split(":", 1) for line in result.stdout.splitlines() if ":" in line and not line.startswith(" "))
    if "installed" not in fields.get("Status", "").split():
        return None  # e.g. removed with its configuration left behind
    return fields.get("Version", "").strip() or None


def ensure_package(package: str, install: bool = False) -> str:
    """Make sure a tool's package is installed (with apt-get when `install`); returns its version."""
    version = package_version(package)
    if version is not None:
        return version
    command = f"apt-get install -y {package}"
    if not install:
        raise CorpusError(f"Debian package {package} is not installed: run `sudo {command}` (or pass install=True)")
    if os.geteuid() != 0:
        raise CorpusError(f"installing {package} needs root: run `sudo {command}`")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    result = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", package],
                            capture_output=True, text=True, env=env)
    version = package_version(package)
    if result.returncode != 0 or version is None:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise CorpusError(f"`{command}` failed: {tail[0]} (run `apt-get update` first if the package is unknown)")
    return version


def cached_deb(package: str, cache: Path) -> Path | None:
    """The newest .deb of `package` already in the cache folder, if any."""
    debs = sorted(Path(cache).glob(f"{package}_*.deb"), key=lambda p: p.stat().st_mtime)
    return debs[-1] if debs else None


def fetch_deb(package: str, cache: Path) -> Path | None:
    """The package's .deb: from the cache folder, else downloaded there with `apt-get download` (the candidate
    version of this system's apt sources). None when apt does not know the package in this release."""
    deb = cached_deb(package, cache)
    if deb is not None:
        return deb
    _need("apt-get")
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["apt-get", "download", package], cwd=cache, capture_output=True, text=True)
    deb = cached_deb(package, cache)
    if result.returncode != 0 or deb is None:
        message = (result.stderr or result.stdout).strip()
        if "Unable to locate package" in message or "has no installation candidate" in message:
            return None
        tail = message.splitlines()[-1:] or ["no output"]
        raise CorpusError(f"`apt-get download {package}` failed: {tail[0]} (run `apt-get update` first?)")
    return deb


def deb_version(deb: Path) -> str:
    """The Version field of a .deb."""
    _need("dpkg-deb")
    result = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True)
    if result.returncode != 0:
        raise CorpusError(f"not a Debian package: {deb}: {result.stderr.strip()[-200:]}")
    return result.stdout.strip()


def extract(deb: Path, wanted, dest: Path) -> list[DebFile]:
    """Take the files whose installed path satisfies `wanted(path)` out of a .deb into `dest` (keeping their
    installed paths below it); links among them are listed with their targets, not copied. Sorted by path."""
    _need("dpkg-deb")
    process = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    found = []
    try:
        with tarfile.open(fileobj=process.stdout, mode="r|") as tar:
            for member in tar:
                path = "/" + member.name.lstrip("./")
                if not (member.isfile() or member.issym() or member.islnk()) or not wanted(path):
                    continue
                if member.issym():
                    target = os.path.normpath(os.path.join(os.path.dirname(path), member.linkname))
                    found.append(DebFile(path, None, target))
                elif member.islnk():
                    found.append(DebFile(path, None, "/" + member.linkname.lstrip("./")))
                else:
                    local = Path(dest) / path.lstrip("/")
                    local.parent.mkdir(parents=True, exist_ok=True)
                    with tar.extractfile(member) as src, open(local, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                    found.append(DebFile(path, local))
    except tarfile.TarError as e:
        raise CorpusError(f"cannot read {deb}: {e}") from None
    finally:
        process.stdout.close()
        stderr = process.stderr.read().decode(errors="replace")
        process.stderr.close()
        code = process.wait()
    if code != 0:
        raise CorpusError(f"`dpkg-deb --fsys-tarfile {deb}` failed: {stderr.strip()[-200:]}")
    return sorted(found, key=lambda f: f.path)
