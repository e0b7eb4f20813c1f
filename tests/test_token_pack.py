"""Fast dataset building and token packs: the bulk encoder gives the codec's own codes, tokenize writes the same
tokens as before, a pack round-trips a dataset exactly, and training reads a pack with no codec file."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import ROOT, sine_mix

from vampnet.codec import Codec, CodecConfig
from vampnet.codec.bulk import BulkEncoder
from vampnet.errors import VampNetError
from vampnet.model import MaskedTransformer
from vampnet.train.config import TrainConfig
from vampnet.train.data import TokenDataset, TokenizeConfig, make_pack, read_index, read_manifest, tokenize
from vampnet.train.masked import train
from vampnet.train.pack import pack_bits, read_pack, unpack_bits

SHIPPED_CODEC = ROOT / "src" / "vampnet" / "weights" / "small" / "codec.safetensors"


@pytest.fixture(scope="module")
def shipped_codec():
    return Codec.load(SHIPPED_CODEC)


def _music(seconds: float, sr: int, batch: int) -> torch.Tensor:
    return torch.stack([torch.from_numpy(sine_mix(seconds, sr, seed=i)) for i in range(batch)]).unsqueeze(1)


def test_bulk_encoder_gives_exactly_the_codecs_codes_and_latents(shipped_codec):
    codec = shipped_codec
    wav = _music(2.9, codec.sample_rate, 4)[..., :-101]  # not a whole number of hops; 2 x 2 signals x 2 pieces
    bulk = BulkEncoder(codec, tile_frames=81, max_batch=2)  # pieces: tile edges, their context, a batch split
    with torch.inference_mode():
        expected_z = codec.encoder(codec.pad(wav))
        expected = codec.encode(wav)
        # the codes are exact; the latents are too on AVX-512 CPUs, while an AVX2-only CPU's convolution kernels
        # round the folded and unfolded weights differently (4e-7 relative seen there)
        torch.testing.assert_close(bulk.latents(wav), expected_z, rtol=1e-5, atol=1e-5)
        assert torch.equal(bulk(wav), expected)
        one = wav[3:]  # a single signal, as the last excerpt of a file often is
        assert torch.equal(bulk(one), codec.encode(one))
    assert expected.shape == (4, codec.n_codebooks, codec.frames(wav.shape[-1]))


def test_bulk_encoder_rejects_bad_input_and_options(shipped_codec):
    with pytest.raises(VampNetError, match="tile_frames"):
        BulkEncoder(shipped_codec, tile_frames=16)
    with pytest.raises(VampNetError, match="batch, 1, samples"):
        BulkEncoder(shipped_codec)(torch.zeros(1, 2, 1000))


def _tiny_codec(folder: Path) -> Path:
    torch.manual_seed(0)
    codec = Codec(CodecConfig(encoder_dim=4, encoder_rates=(4, 4, 4), decoder_dim=16, decoder_rates=(4, 4, 4),
                              n_codebooks=4, codebook_size=64, sample_rate=22050)).eval()
    codec.save(folder / "codec.safetensors")
    return folder / "codec.safetensors"


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    """(folder, codec path): 8 files of tones tokenised by a tiny random codec (64-entry codebooks, hop 64)."""
    root = tmp_path_factory.mktemp("packdata")
    (root / "audio" / "a").mkdir(parents=True)
    for i in range(8):
        sf.write(root / "audio" / "a" / f"f{i}.wav", sine_mix(2.0 + 0.5 * i, 22050, seed=i), 22050)
    codec_path = _tiny_codec(root)
    tokenize([root / "audio"], root / "ds", Codec.load(codec_path), TokenizeConfig(excerpt_s=1.0, val_fraction=0.3),
             codec_path=str(codec_path), progress=False)
    return root / "ds", codec_path


def test_tokenize_writes_the_tokens_the_codec_encode_path_wrote(tiny_dataset, tmp_path):
    folder, codec_path = tiny_dataset
    codec = Codec.load(codec_path)
    audio_dir = folder.parent / "audio"
    tokenize([audio_dir], tmp_path / "old", codec, TokenizeConfig(excerpt_s=1.0, val_fraction=0.3),
             codec_path=str(codec_path), progress=False, encode=codec.encode)
    rows = read_index(folder)
    assert rows == read_index(tmp_path / "old") and len(rows) > 8
    for name in {r["tokens_file"] for r in rows}:
        assert np.array_equal(np.load(folder / name), np.load(tmp_path / "old" / name))


@pytest.mark.parametrize("bits", [1, 6, 10, 13])
def test_bit_packing_round_trips_exactly(bits):
    rng = np.random.default_rng(bits)
    codes = rng.integers(0, 1 << bits, size=(3, 1234567 // 3 + 5))  # crosses a 2**20-code chunk, not a byte multiple
    codes[0, :3] = [0, (1 << bits) - 1, 0]
    packed = pack_bits(codes, bits)
    assert packed.dtype == np.uint8 and packed.size == -(-codes.size * bits // 8)
    assert np.array_equal(unpack_bits(packed, bits, codes.size).reshape(codes.shape), codes)
    with pytest.raises(VampNetError, match="lie in"):
        pack_bits(np.array([1 << bits]), bits)


def test_pack_round_trips_the_dataset_exactly(tiny_dataset, tmp_path):
    folder, codec_path = tiny_dataset
    summary = make_pack(folder, tmp_path / "t.vpack", Codec.load(codec_path), n_codebooks=3)
    manifest, rows, codes, codebooks = read_pack(tmp_path / "t.vpack")
    assert manifest["n_codebooks"] == 3 and manifest["codec_n_codebooks"] == 4 and codes.shape[0] == 3
    assert manifest["codec_fingerprint"] == read_manifest(folder)["codec_fingerprint"]
    assert summary["bytes"] == (tmp_path / "t.vpack").stat().st_size
    assert summary["excerpts"]["train"] + summary["excerpts"]["val"] == len(read_index(folder))
    codec = Codec.load(codec_path)
    assert np.array_equal(codebooks[2], codec.quantizer.quantizers[2].codebook.weight.detach().numpy())
    for r, p in zip(read_index(folder), rows):  # every excerpt's tokens, in index order
        stored = np.load(folder / r["tokens_file"])[:3, r["offset"]: r["offset"] + r["frames"]]
        assert np.array_equal(codes[:, p["offset"]: p["offset"] + p["frames"]], stored)
        assert (p["source"], p["split"], p["frames"]) == (r["source"], r["split"], r["frames"])
    for split in ("train", "val"):
        a, b = TokenDataset(folder, split, 12, 3), TokenDataset(tmp_path / "t.vpack", split, 12)
        assert len(a) == len(b) and b.n_codebooks == 3
        idx = a.fixed_indices(40)
        assert torch.equal(a.batch(idx), b.batch(idx))


def test_tokenize_stores_the_loudness_control_beside_the_tokens_and_packs_carry_it(tiny_dataset, tmp_path):
    import shutil

    from vampnet import audio
    from vampnet.controls import loudness_db
    from vampnet.train.data import _excerpts

    folder, codec_path = tiny_dataset
    codec = Codec.load(codec_path)
    rows = read_index(folder)
    first = rows[0]
    levels = np.load(folder / "loudness" / Path(first["tokens_file"]).name)
    assert levels.shape == (np.load(folder / first["tokens_file"]).shape[1],)
    wav, sr = audio.load(folder.parent / first["source"])
    excerpts, _ = _excerpts(audio.resample(audio.to_mono(wav), sr, codec.sample_rate), codec.sample_rate,
                            TokenizeConfig(excerpt_s=1.0, val_fraction=0.3))
    expected = loudness_db(excerpts[0][1], codec.hop_length)  # measured on the normalised excerpt the codec encoded
    np.testing.assert_allclose(levels[:first["frames"]], expected, atol=0.05)

    make_pack(folder, tmp_path / "t.vpack", codec)
    for split in ("train", "val"):
        a, b = TokenDataset(folder, split, 12), TokenDataset(tmp_path / "t.vpack", split, 12)
        idx = a.fixed_indices(30)
        assert torch.equal(a.batch(idx), b.batch(idx))
        assert a.loudness(idx).shape == (len(idx), 12)
        assert (a.loudness(idx) - b.loudness(idx)).abs().max() <= 0.25 + 1e-3  # the pack's 0.5 dB steps

    old = tmp_path / "old"  # a dataset made before controls: it loads, and says it has no control when asked
    shutil.copytree(folder, old)
    shutil.rmtree(old / "loudness")
    data = TokenDataset(old, "train", 12)
    assert data.batch([0]).shape == (1, 4, 12)
    with pytest.raises(VampNetError, match="no loudness control"):
        data.loudness([0])
    make_pack(old, tmp_path / "old.vpack", codec)
    with pytest.raises(VampNetError, match="no loudness control"):
        TokenDataset(tmp_path / "old.vpack", "train", 12).loudness([0])


def test_pack_keeps_validation_whole_under_a_training_hours_cap(tiny_dataset, tmp_path):
    folder, codec_path = tiny_dataset
    rows = read_index(folder)
    cap = 6.0 / 3600  # six seconds of the files' 15 or so: whole files only
    make_pack(folder, tmp_path / "cap.vpack", Codec.load(codec_path), max_train_hours=cap)
    _, kept, _, _ = read_pack(tmp_path / "cap.vpack")
    rate = 22050 / 64
    train_s = sum(r["frames"] for r in kept if r["split"] == "train") / rate
    assert 0 < train_s <= 6.0
    assert [r["source"] for r in kept if r["split"] == "val"] == [r["source"] for r in rows if r["split"] == "val"]
    trained = {r["source"] for r in kept if r["split"] == "train"}
    assert len(trained) < len({r["source"] for r in rows if r["split"] == "train"})
    assert all(sum(k["source"] == s for k in kept) == sum(r["source"] == s for r in rows) for s in trained)


def test_pack_refuses_another_codec(tiny_dataset, tmp_path, shipped_codec):
    folder, _ = tiny_dataset
    with pytest.raises(VampNetError, match="another codec"):
        make_pack(folder, tmp_path / "x.vpack", shipped_codec)
    assert not (tmp_path / "x.vpack").exists()


def test_training_on_a_pack_needs_no_codec_and_equals_training_on_the_folder(tiny_dataset, tmp_path):
    folder, codec_path = tiny_dataset
    make_pack(folder, tmp_path / "t.vpack", Codec.load(codec_path))
    common = dict(model=dict(embedding_dim=32, n_heads=2, n_layers=1, dropout=0.0), window_s=0.2, batch_size=4,
                  max_steps=6, warmup_steps=3, val_every=3, val_windows=4, save_every=0)
    on_folder = train(TrainConfig(dataset=str(folder), output=str(tmp_path / "a"), **common), progress=False)
    moved = tmp_path / "elsewhere.safetensors"
    codec_path.rename(moved)  # the codec the manifest names is gone: a pack run must not need it
    try:
        on_pack = train(TrainConfig(dataset=str(tmp_path / "t.vpack"), output=str(tmp_path / "b"), **common), progress=False)
        a = MaskedTransformer.load(tmp_path / "a" / "latest" / "model.safetensors").state_dict()
        b = MaskedTransformer.load(tmp_path / "b" / "latest" / "model.safetensors").state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)
        assert on_pack["val_loss"] == on_folder["val_loss"]
        # continuing from the trained model (init=) checks it embeds with the pack's codebooks
        again = train(TrainConfig(dataset=str(tmp_path / "t.vpack"), output=str(tmp_path / "c"),
                                  init=str(tmp_path / "b" / "latest" / "model.safetensors"), **common), progress=False)
        assert again["step"] == 6
        with pytest.raises(VampNetError, match="previews"):
            train(TrainConfig(dataset=str(tmp_path / "t.vpack"), output=str(tmp_path / "d"), preview_every=2, **common),
                  progress=False)
    finally:
        moved.rename(codec_path)


BLOCK_AUDIO_LIBRARIES = '''
import importlib.abc, sys
class _Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"soundfile", "soxr", "pyloudnorm", "cffi"}:
            raise ImportError(f"{name} is not installed (as on the GPU machine)")
sys.meta_path.insert(0, _Missing())
'''


@pytest.mark.slow
def test_gpu_train_script_trains_from_a_pack_and_exports_a_loadable_model(tiny_dataset, tmp_path):
    import hashlib
    import os
    import subprocess
    import sys
    import time

    folder, codec_path = tiny_dataset
    make_pack(folder, tmp_path / "t.vpack", Codec.load(codec_path))
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(BLOCK_AUDIO_LIBRARIES)  # the device's python lacks them
    env = dict(os.environ, PYTHON=sys.executable, DEVICE="cpu", PYTHONPATH=str(tmp_path / "site"), MARGIN="30",
               EXPORT_EVERY="4", VAL_EVERY="3", RUN_DIR=str(tmp_path / "run"),
               SETS="window_s=0.3 batch_size=2 n_layers=1 embedding_dim=32 n_heads=2 val_windows=2 warmup_steps=2 max_steps=6")
    budget = 240
    began = time.time()
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_train.sh"), str(tmp_path / "t.vpack"), str(tmp_path / "out"),
                           str(budget), "coarse", "none"], env=env, capture_output=True, text=True, timeout=300)
    took = time.time() - began
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert took < budget, took
    export = tmp_path / "out" / "coarse"
    parts = sorted(export.glob("model.safetensors.part-*"))
    assert parts and {p.name for p in export.iterdir()} == {"info.json", "log.csv", *(p.name for p in parts)}
    whole = b"".join(p.read_bytes() for p in parts)
    info = json.loads((export / "info.json").read_text())
    assert hashlib.sha256(whole).hexdigest() == info["sha256"] and info["step"] in (3, 6)  # the best validation
    (tmp_path / "model.safetensors").write_bytes(whole)
    model = MaskedTransformer.load(tmp_path / "model.safetensors")
    assert model.n_codebooks == 4 and model.config.n_layers == 1
    log = (export / "log.csv").read_text().splitlines()
    assert "val_loss" in log[0] and len(log) == 1 + 6
    assert not list((tmp_path / "out").glob(".*"))  # no half-written export left behind


def test_pack_tokens_command_writes_a_pack_and_reports_bad_options_in_one_line(tiny_dataset, tmp_path, capsys):
    from vampnet.cli import main

    folder, _ = tiny_dataset
    assert main(["pack-tokens", str(folder), "-o", str(tmp_path / "two.vpack"), "--codebooks", "2"]) == 0
    summary = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert summary["codebooks"] == 2 and read_manifest(tmp_path / "two.vpack")["n_codebooks"] == 2
    assert main(["pack-tokens", str(folder), "-o", str(tmp_path / "nine.vpack"), "--codebooks", "9"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: the dataset has 4 codebooks; cannot keep 9"] and not (tmp_path / "nine.vpack").exists()
