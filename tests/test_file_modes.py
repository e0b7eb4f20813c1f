"""Files we write get the permissions an ordinary `open(path, "w")` would give (the umask's), and a replaced file
keeps its mode: atomic writes go through private temporary files, which must not leak their 0600 mode."""
from __future__ import annotations

import os
import stat
from contextlib import contextmanager

import pytest
import torch

from vampnet import audio
from vampnet.serialization import atomic_path, write_text_atomic
from vampnet.train.state import save_training_checkpoint


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@contextmanager
def umask(value: int):
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


@pytest.mark.parametrize("mask,expected", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_new_files_follow_the_umask(tmp_path, mask, expected):
    with umask(mask):
        write_text_atomic(tmp_path / "a.txt", "x")
        audio.save(tmp_path / "a.wav", torch.zeros(1, 1, 100), 22050)
        plain = tmp_path / "plain.txt"
        plain.write_text("x")  # what the user's tools would make
    assert mode(tmp_path / "a.txt") == expected == mode(plain)
    assert mode(tmp_path / "a.wav") == expected


def test_replacing_a_file_keeps_its_mode(tmp_path):
    target = tmp_path / "shared.txt"
    target.write_text("old")
    os.chmod(target, 0o604)
    with umask(0o077):
        write_text_atomic(target, "new")
    assert target.read_text() == "new" and mode(target) == 0o604


def test_failed_write_leaves_no_temporary_and_the_old_file(tmp_path):
    target = tmp_path / "t.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["t.txt"]


def test_training_checkpoint_folder_and_files_are_readable(tmp_path):
    from vampnet.model.transformer import MaskedTransformer, TransformerConfig

    model = MaskedTransformer(TransformerConfig(n_codebooks=2, vocab_size=16, latent_dim=2, embedding_dim=8,
                                                n_heads=1, n_layers=1))
    opt = torch.optim.AdamW(model.parameters())
    with umask(0o022):
        folder = save_training_checkpoint(tmp_path / "latest", model, opt, {"step": 1})
    assert mode(folder) == 0o755
    assert {p.name: mode(p) for p in folder.iterdir()} == {p.name: 0o644 for p in folder.iterdir()}
