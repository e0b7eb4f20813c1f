"""`vampnet info` / `describe`: a complete checkpoint is described as it is, an incomplete one names its missing
and unexpected keys, and a pickled file is refused with our one-line message."""
from __future__ import annotations

import datetime
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vampnet.checkpoints import describe
from vampnet.errors import CheckpointError
from vampnet.serialization import save_safetensors

EXE = Path(sys.executable).parent / "vampnet"


def info(path):
    return subprocess.run([str(EXE), "info", str(path)], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("part,kind", [("codec", "codec"), ("coarse", "transformer"), ("c2f", "transformer")])
def test_complete_official_and_converted_files(set_a, ours_dir, part, kind):
    for path in (set_a / f"{part}.pth", ours_dir / f"{part}.safetensors"):
        d = describe(path)
        assert d["kind"] == kind and d["complete"] is True
        assert not {"missing", "unexpected", "misshapen"} & d.keys()


def test_official_transformer_with_a_key_missing_and_one_extra(set_a, tmp_path):
    obj = torch.load(set_a / "coarse.pth", weights_only=True)
    del obj["state_dict"]["transformer.norm.weight"]
    obj["state_dict"]["transformer.extra.weight"] = torch.zeros(3)
    torch.save(obj, tmp_path / "broken.pth")
    d = describe(tmp_path / "broken.pth")
    assert d["kind"] == "transformer" and d["complete"] is False
    assert d["missing"] == ["transformer.norm.weight"] and d["unexpected"] == ["transformer.extra.weight"]
    proc = info(tmp_path / "broken.pth")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'broken.pth'} is an incomplete transformer checkpoint (1 missing, 1 unexpected keys; "
        "first: transformer.norm.weight)"]
    assert '"missing"' in proc.stdout


def test_our_codec_with_a_misshapen_and_a_missing_tensor(ours_dir, tmp_path):
    from safetensors import safe_open

    with safe_open(str(ours_dir / "codec.safetensors"), framework="pt") as f:
        state = {k: f.get_tensor(k) for k in f.keys()}
        config = __import__("json").loads(f.metadata()["config"])
    names = sorted(state)
    del state[names[0]]
    state[names[1]] = torch.zeros(1)
    save_safetensors(tmp_path / "codec.safetensors", state, "codec", config)
    d = describe(tmp_path / "codec.safetensors")
    assert d["complete"] is False and d["missing"] == [names[0]]
    assert len(d["misshapen"]) == 1 and d["misshapen"][0].startswith(f"'{names[1]}' has shape (1,)")
    with pytest.raises(CheckpointError, match=f"missing key '{names[0]}'"):
        __import__("vampnet").Codec.load(tmp_path / "codec.safetensors")


def test_readable_file_of_another_kind_is_described_truly(tmp_path):
    torch.save({"layers.0.attn.q.lora_A": torch.zeros(2, 4), "layers.0.attn.q.lora_B": torch.zeros(4, 2)},
               tmp_path / "adapter.pth")
    d = describe(tmp_path / "adapter.pth")
    assert d["kind"] == "lora" and "complete" not in d
    assert info(tmp_path / "adapter.pth").returncode == 0


def test_pickled_checkpoint_is_refused_in_one_line(set_a, tmp_path):
    obj = torch.load(set_a / "codec.pth", weights_only=True)
    obj["metadata"]["saved"] = datetime.datetime(2024, 1, 1)  # an object: loading it would run pickle code
    torch.save(obj, tmp_path / "pickled.pth")
    message = f"{tmp_path / 'pickled.pth'} holds Python objects, not plain weights; refusing to load it"
    with pytest.raises(CheckpointError) as e:
        describe(tmp_path / "pickled.pth")
    assert str(e.value) == message
    proc = info(tmp_path / "pickled.pth")
    assert proc.returncode == 1 and proc.stderr.strip() == f"error: {message}"
