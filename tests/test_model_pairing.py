"""Which coarse / coarse-to-fine pairs a pipeline accepts, and what a coarse-to-fine model conditioned on fewer
codebooks than the coarse model makes does with the rest (the original regenerates them where the mask says so)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import save_model_folder

import vampnet
from vampnet import Codec, MaskedTransformer, Pipeline
from vampnet.codec import CodecConfig
from vampnet.errors import CheckpointError
from vampnet.model.transformer import TransformerConfig
from vampnet.pipeline import DEFAULT_C2F_SAMPLING
from vampnet.sampling import generate_with_config, seeded_generator


def _models(coarse_k: int, c2f_k: int, c2f_cond: int):
    torch.manual_seed(0)
    codec = Codec(CodecConfig(encoder_dim=4, encoder_rates=(4, 4, 4), decoder_dim=16, decoder_rates=(4, 4, 4),
                              n_codebooks=5, codebook_size=64, sample_rate=22050)).eval()
    size = dict(vocab_size=64, latent_dim=codec.config.codebook_dim, embedding_dim=32, n_heads=2, n_layers=1)
    coarse = MaskedTransformer(TransformerConfig(n_codebooks=coarse_k, **size)).eval()
    c2f = MaskedTransformer(TransformerConfig(n_codebooks=c2f_k, n_conditioning_codebooks=c2f_cond, **size)).eval()
    with torch.no_grad():
        for model in (coarse, c2f):
            books = [q.codebook.weight for q in codec.quantizer.quantizers[:model.n_codebooks]]
            model.embedding.codebooks.copy_(torch.stack(books))
    return codec, coarse, c2f


def test_c2f_conditioned_on_fewer_codebooks_regenerates_the_coarse_models_upper_ones():
    codec, coarse, c2f = _models(coarse_k=3, c2f_k=5, c2f_cond=2)
    pipe = Pipeline(codec, coarse, c2f, c2f_chunk_s=0.2)
    T = pipe.c2f_chunk  # one chunk: the c2f step can be replayed by hand below
    codes = torch.randint(0, 64, (1, 5, T), generator=torch.Generator().manual_seed(3))
    mask = vampnet.prompts.periodic(codes, 4)
    sampling = vampnet.SamplingConfig(steps=4)

    out = pipe.generate(codes, mask, sampling, seed=7)

    # the same stream of random numbers: coarse windows first, then the coarse-to-fine model on their result
    generator = seeded_generator(7)
    coarse_out = pipe.generate(codes, mask, sampling, generator=generator, coarse_only=True)
    expected = generate_with_config(c2f, coarse_out, mask, DEFAULT_C2F_SAMPLING, generator=generator)
    assert torch.equal(out, expected)
    assert torch.equal(out[:, :2], coarse_out[:, :2])           # the c2f model's conditioning: kept as the coarse model made it
    assert torch.equal(out[~mask], codes[~mask])                 # prompt tokens survive in every codebook
    regenerated = mask[:, 2]
    assert (out[:, 2][regenerated] != coarse_out[:, 2][regenerated]).any()  # codebook 2 came from the c2f model


def test_pairing_through_files_and_the_cli_vamp(tmp_path, wav_file):
    codec, coarse, c2f = _models(coarse_k=3, c2f_k=5, c2f_cond=2)
    save_model_folder(tmp_path, codec, coarse, c2f)
    exe = Path(sys.executable).with_name("vampnet")
    out = tmp_path / "out.wav"
    proc = subprocess.run([str(exe), "vamp", str(wav_file), "-o", str(out), "--models", str(tmp_path), "--seed", "0",
                           "--steps", "2", "-q"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert out.is_file()


@pytest.mark.parametrize("coarse_k,c2f_k,c2f_cond,words", [
    (2, 5, 3, "conditioned on 3 codebooks but the coarse model makes only 2"),
    (4, 3, 2, "makes 3 codebooks, fewer than the coarse model's 4"),
])
def test_pairs_that_cannot_work_are_refused_clearly(coarse_k, c2f_k, c2f_cond, words):
    codec, coarse, c2f = _models(coarse_k, c2f_k, c2f_cond)
    with pytest.raises(CheckpointError, match=words):
        Pipeline(codec, coarse, c2f)
