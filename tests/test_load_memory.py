"""Loading holds every weight once: official files stay memory-mapped (LoRA merges and the classifier's reordering
are written into the mapped pages, not into new tensors), precision modes release the float32 file afterwards,
and a precision is applied once. Checked through /proc/self/maps (Linux), which names every file mapped in."""
from __future__ import annotations

import gc
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import SET_A
from vampnet import MaskedTransformer, OptionError, Pipeline
from vampnet.model.official import merge_lora
from vampnet.precision import cpu_has_bf16

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")


def mapped_ranges(path: Path) -> list[tuple[int, int]]:
    """Address ranges where this process maps `path`."""
    target, out = str(Path(path).resolve()), []
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].strip() == target:
                lo, hi = (int(x, 16) for x in fields[0].split("-"))
                out.append((lo, hi))
    return out


@pytest.fixture
def folder(tmp_path):
    """A private copy of the reference models: other tests' models map the originals."""
    for name in ("codec.pth", "coarse.pth", "c2f.pth"):
        shutil.copy(SET_A / name, tmp_path / name)
    return tmp_path


def test_official_weights_stay_in_the_file_mapping_merged_lora_included(folder, codec_a):
    state = torch.load(folder / "coarse.pth", weights_only=True)["state_dict"]
    assert any(k.endswith("lora_A") for k in state)  # the file has LoRA factors, so merges run
    model = MaskedTransformer.load(folder / "coarse.pth", codec_a)
    ranges = mapped_ranges(folder / "coarse.pth")
    assert ranges
    copied = [n for n, p in model.named_parameters() if not any(lo <= p.data_ptr() < hi for lo, hi in ranges)]
    assert copied == []


def test_in_place_lora_merge_gives_the_same_values():
    g = torch.Generator().manual_seed(0)
    w, a, b = torch.randn(64, 48, generator=g), torch.randn(8, 48, generator=g), torch.randn(64, 8, generator=g)
    expected = merge_lora(w, a, b)
    target = w.clone()
    got = merge_lora(target, a, b, in_place=True)
    assert got.data_ptr() == target.data_ptr() and torch.equal(got, expected)


@pytest.mark.parametrize("mode", ["bf16", "int8"])
def test_precision_modes_release_the_float32_files(folder, mode):
    pipe = Pipeline.load(folder, precision=mode)
    gc.collect()
    still_mapped = [name for name in ("codec.pth", "coarse.pth", "c2f.pth") if mapped_ranges(folder / name)]
    # int8 leaves the codec in float32 (memory-mapped like fp32) on CPUs without bf16 instructions
    codec_converted = mode == "bf16" or cpu_has_bf16()
    assert still_mapped == ([] if codec_converted else ["codec.pth"])
    assert pipe.coarse.precision == pipe.c2f.precision == pipe.codec.precision == mode


def test_fp32_keeps_one_mapping_per_file(folder):
    pipe = Pipeline.load(folder)
    assert all(mapped_ranges(folder / name) for name in ("codec.pth", "coarse.pth", "c2f.pth"))
    assert pipe.coarse.layers[0].attn.q.weight.dtype == torch.float32


def test_precision_is_applied_once(folder):
    pipe = Pipeline.load(folder, precision="int8")
    codes = torch.from_numpy(np.load(SET_A / "coarse_codes_in.npy"))
    with torch.inference_mode():
        before = pipe.coarse(codes)
    again = Pipeline(pipe.codec, pipe.coarse, pipe.c2f, precision="int8")  # no second quantisation
    with torch.inference_mode():
        assert torch.equal(again.coarse(codes), before)
    with pytest.raises(OptionError):
        Pipeline(pipe.codec, pipe.coarse, pipe.c2f, precision="bf16")
