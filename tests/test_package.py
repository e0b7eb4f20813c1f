"""Packaging promises: a fast, side-effect-free import; downloads only on request."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import vampnet


def test_import_is_light_and_downloads_nothing():
    code = ("import sys, time; t = time.perf_counter(); import vampnet; dt = time.perf_counter() - t; "
            "print(dt, 'torch' in sys.modules, 'huggingface_hub' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert float(out[0]) < 2.0 and out[1] == "False" and out[2] == "False"


def test_public_api_names_resolve():
    for name in ("Pipeline", "Codec", "MaskedTransformer", "generate", "prompts", "PromptConfig", "SamplingConfig",
                 "VampNetError", "CheckpointError", "AudioError", "OptionError"):
        assert getattr(vampnet, name) is not None
    with pytest.raises(AttributeError):
        vampnet.not_a_thing  # noqa: B018
    assert issubclass(vampnet.OptionError, vampnet.VampNetError)


def test_download_uses_the_hub_client_with_the_official_names(monkeypatch, tmp_path, set_a):
    """The real download code, exercised against a stand-in for the hub that serves local files."""
    import shutil

    import huggingface_hub

    from vampnet.checkpoints import download_official, find_model_files

    calls = []

    def fake_download(repo_id, filename, revision=None, local_dir=None, **kw):
        calls.append((repo_id, filename, revision))
        target = Path(local_dir) / filename
        shutil.copy(set_a / filename, target)
        return str(target)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    out = download_official(tmp_path / "official", revision="main")
    assert [c[1] for c in calls] == ["codec.pth", "coarse.pth", "c2f.pth"]
    assert all(c[0] == "hugggof/vampnet" and c[2] == "main" for c in calls)
    assert find_model_files(tmp_path / "official") == {k: v for k, v in out.items()}


def test_download_failure_is_a_checkpoint_error(monkeypatch, tmp_path):
    import huggingface_hub

    from vampnet.checkpoints import download_official

    def offline(**kw):
        raise OSError("network unreachable")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: offline())
    with pytest.raises(vampnet.CheckpointError, match="download of codec.pth"):
        download_official(tmp_path)


def test_model_names_resolve_to_folders_with_clear_errors(monkeypatch, tmp_path, set_a):
    from vampnet.errors import CheckpointError
    from vampnet.pretrained import model_folder, shipped_folder

    assert model_folder(set_a) == set_a
    with pytest.raises(CheckpointError, match="not found"):
        model_folder(tmp_path / "nowhere")
    monkeypatch.setenv("VAMPNET_HOME", str(tmp_path))
    with pytest.raises(CheckpointError, match="vampnet download"):
        model_folder("official")
    (tmp_path / "official").mkdir()
    (tmp_path / "official" / "codec.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match="vampnet download"):  # a part is not the whole model
        model_folder("official")
    for part in ("coarse.pth", "c2f.pth"):
        (tmp_path / "official" / part).write_bytes(b"")
    assert model_folder("official") == tmp_path / "official"
    assert shipped_folder().parts[-3:] == ("vampnet", "weights", "small")


def test_licence_file_agrees_with_pyproject_and_ships_in_the_wheel_metadata(tmp_path):
    """LICENSE is the MIT text pyproject names, and setuptools puts it in the wheel's metadata (built from a copy of
    the project's packaging files, so the test writes nothing into the repository)."""
    import shutil

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    root = Path(__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    licence = (root / "LICENSE").read_text()
    assert project["license"] == {"text": "MIT"}
    assert licence.startswith("MIT License\n\nCopyright (c) 2026 the vampnet contributors\n")
    assert "Permission is hereby granted, free of charge" in licence and 'THE SOFTWARE IS PROVIDED "AS IS"' in licence
    pytest.importorskip("setuptools")
    for name in ("pyproject.toml", "README.md", "LICENSE", "src/vampnet/__init__.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / name, tmp_path / name)
    code = ("import setuptools.build_meta as b, sys; print(b.prepare_metadata_for_build_wheel(sys.argv[1]))")
    (tmp_path / "meta").mkdir()
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "meta")], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    dist_info = tmp_path / "meta" / out.stdout.split()[-1]
    assert "License-File: LICENSE" in (dist_info / "METADATA").read_text()
    assert (dist_info / "licenses" / "LICENSE").read_text() == licence
