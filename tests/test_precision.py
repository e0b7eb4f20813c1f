"""Precision modes: bf16 and int8 run on the fixture models and stay within stated tolerances of fp32; fp32 is
untouched (the fixture tests cover its exactness); the mode is recorded in the output."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import SET_A, sine_mix
from vampnet import CheckpointError, Codec, MaskedTransformer, OptionError, Pipeline, SamplingConfig
from vampnet import precision as P
from vampnet.model import packed
from vampnet.spectral import multiscale_mel_distance


def logits(model, codes):
    with torch.inference_mode():
        return model(codes).float()


TOLERANCES = {"fp32": (0.0, 1.0), "bf16": (0.05, 0.9), "int8": (0.1, 0.8)}  # logits rel. error, top-1 agreement


@pytest.mark.parametrize("mode", ["bf16", "int8"])
def test_transformer_logits_close_to_fp32(mode):
    rel_tol, top1 = TOLERANCES[mode]
    codec = Codec.load(SET_A / "codec.pth")
    ref_model = MaskedTransformer.load(SET_A / "coarse.pth", codec)
    fast = P.apply_to_transformer(MaskedTransformer.load(SET_A / "coarse.pth", codec), mode)
    codes = torch.from_numpy(np.load(SET_A / "coarse_codes_in.npy"))
    ref, got = logits(ref_model, codes), logits(fast, codes)
    rel = ((got - ref).norm() / ref.norm()).item()
    agree = (got.argmax(-1) == ref.argmax(-1)).float().mean().item()
    assert rel <= rel_tol and agree >= top1, (rel, agree)
    with pytest.raises(CheckpointError):
        fast.save("/tmp/never.safetensors")


def test_codec_bf16_round_trip_close_to_fp32():
    x = torch.from_numpy(np.load(SET_A / "audio_in.npy"))
    ref = Codec.load(SET_A / "codec.pth")
    fast = P.apply_to_codec(Codec.load(SET_A / "codec.pth"), "bf16", torch.device("cpu"))
    with torch.inference_mode():
        codes_ref, codes_fast = ref.encode(x), fast.encode(x)
        y_ref, y_fast = ref.decode(codes_ref), fast.decode(codes_ref).float()
    assert (codes_ref == codes_fast).float().mean() >= 0.8
    assert multiscale_mel_distance(y_fast, y_ref, 44100) < 0.25 * multiscale_mel_distance(y_ref, 0.5 * y_ref, 44100)


@pytest.mark.parametrize("mode", ["bf16", "int8"])
def test_pipeline_runs_in_each_mode_and_records_it(mode):
    pipe = Pipeline.load(SET_A, precision=mode)
    res = pipe.vamp(torch.from_numpy(sine_mix(1.0)).view(1, 1, -1), 44100, sampling=SamplingConfig(steps=3), seed=0)
    assert torch.isfinite(res.audio).all() and res.settings["precision"] == mode
    assert res.audio.dtype == torch.float32


@pytest.mark.parametrize("bf16,vnni,chosen", [(True, True, "bf16"), (True, False, "bf16"), (False, True, "int8"),
                                               (False, False, "fp32")])
def test_auto_takes_native_bf16_then_vnni_int8_and_never_emulated_bf16(monkeypatch, bf16, vnni, chosen):
    monkeypatch.delenv("VAMPNET_PRECISION", raising=False)
    monkeypatch.setattr(P, "cpu_has_bf16", lambda: bf16)
    monkeypatch.setattr(P, "cpu_has_vnni", lambda: vnni)
    monkeypatch.setattr(P, "fused_int8_available", lambda: True)
    mode, why = P.choose("auto", "cpu", width=1280)  # the official model's width
    assert mode == chosen and why
    # measured not to pay: narrow transformers (the shipped ones), the codec, and anything on a GPU (not measured)
    assert P.choose("auto", "cpu", width=256)[0] == P.choose("auto", "cpu", width=None)[0] == "fp32"
    assert P.choose("auto", "cuda", width=1280)[0] == "fp32"
    assert P.choose("int8", "cpu") == ("int8", None)  # a precision given is kept, silently
    with pytest.raises(OptionError, match="resolved"):
        P.codec_dtype("auto", torch.device("cpu"))


@pytest.mark.parametrize("flags,width,chosen", [({"amx_bf16", "avx512_bf16"}, 512, "bf16"),  # the official codec
                                                ({"amx_bf16", "avx512_bf16"}, 256, "fp32"),  # the shipped codec
                                                ({"avx512_bf16"}, 512, "fp32"),  # bf16 without AMX: not measured
                                                (set(), 512, "fp32"), ({"amx_bf16"}, None, "fp32")])
def test_auto_runs_a_large_codec_in_bf16_on_amx_only(monkeypatch, flags, width, chosen):
    monkeypatch.delenv("VAMPNET_PRECISION", raising=False)
    monkeypatch.setattr(P, "cpu_flags", lambda: frozenset(flags))
    mode, why = P.choose("auto", "cpu", None, codec_width=width)
    assert mode == chosen and why
    assert P.choose("auto", "cuda", None, codec_width=512)[0] == "fp32"
    assert P.choose("fp32", "cpu", None, codec_width=512) == ("fp32", None)  # a precision given is kept


def test_pipeline_auto_gives_a_wide_codec_bf16_on_amx(monkeypatch):
    monkeypatch.delenv("VAMPNET_PRECISION", raising=False)
    monkeypatch.setattr(P, "cpu_flags", lambda: frozenset({"amx_bf16", "avx512_bf16"}))
    monkeypatch.setattr(P, "CODEC_BF16_MIN_WIDTH", 1)  # the fixture codec is narrow: it stands for a wide one
    cache: dict = {}
    pipe = Pipeline.load(SET_A, precision="auto", codec_cache=cache)
    assert pipe.precisions["codec"] == "bf16" and next(pipe.codec.encoder.parameters()).dtype == torch.bfloat16
    assert "codec bf16" in pipe.precision_note
    again = Pipeline.load(SET_A, precision="auto", codec_cache=cache)
    assert again.codec is pipe.codec  # one codec file and request: loaded once, in the same mode
    assert Pipeline.load(SET_A, precision="bf16", codec_cache=cache).codec is pipe.codec  # the mode auto chose
    assert Pipeline.load(SET_A, precision="fp32", codec_cache=cache).precisions["codec"] == "fp32"


def test_auto_on_this_cpu_runs_a_mode_within_its_tolerance_of_fp32(monkeypatch):
    monkeypatch.delenv("VAMPNET_PRECISION", raising=False)
    monkeypatch.setattr(P, "BF16_MIN_WIDTH", 1)  # the fixture models are narrow: let auto pick its fast mode
    chosen, why = P.choose("auto", width=P.BF16_MIN_WIDTH)
    assert chosen != "bf16" or P.cpu_has_bf16()  # never emulated bf16, whatever CPU runs the tests
    pipe = Pipeline.load(SET_A, precision="auto")
    assert pipe.precisions == {"codec": "fp32", "coarse": chosen, "c2f": chosen} and pipe.precision == chosen
    assert pipe.precision_note.startswith("precision auto: ") and why in pipe.precision_note
    codes = torch.from_numpy(np.load(SET_A / "coarse_codes_in.npy"))
    ref = logits(MaskedTransformer.load(SET_A / "coarse.pth", Codec.load(SET_A / "codec.pth")), codes)
    got = logits(pipe.coarse, codes)
    rel_tol, top1 = TOLERANCES[chosen]
    assert ((got - ref).norm() / ref.norm()).item() <= rel_tol
    assert (got.argmax(-1) == ref.argmax(-1)).float().mean().item() >= top1
    res = pipe.vamp(torch.from_numpy(sine_mix(1.0)).view(1, 1, -1), 44100, sampling=SamplingConfig(steps=2), seed=0)
    assert res.settings["precision"] == chosen


def test_unknown_precision_is_an_option_error():
    with pytest.raises(OptionError):
        Pipeline.load(SET_A, precision="fp8")


@pytest.mark.skipif(not P.fused_int8_available(), reason="torch built without its x86 quantised kernels")
def test_int8_linear_matches_the_float_layer_within_8_bit_error():
    g = torch.Generator().manual_seed(0)
    layer = torch.nn.Linear(256, 192)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(192, 256, generator=g) / 16)
        layer.bias.copy_(torch.randn(192, generator=g))
    x = torch.randn(3, 50, 256, generator=g)
    q = P.Int8Linear(layer)
    with torch.inference_mode():
        ref, got = layer(x), q(x)
    assert got.shape == ref.shape and got.dtype == torch.float32
    rel = ((got - ref).norm() / ref.norm()).item()
    # 8-bit weights (per row) and activations (per tensor): ~1 % relative error; 7-bit weights without VNNI
    assert 1e-4 < rel < (0.02 if P.cpu_has_vnni() else 0.03), rel


@pytest.mark.skipif(not P.fused_int8_available(), reason="torch built without its x86 quantised kernels")
def test_int8_linear_without_vnni_does_not_saturate(monkeypatch):
    """Full-scale positive activations and weights: 8-bit x 8-bit pairs would overflow the 16-bit sums of
    non-VNNI kernels (the output would be capped far below the true value); the 7-bit weights used there fit."""
    monkeypatch.setattr(P, "cpu_has_vnni", lambda: False)
    layer = torch.nn.Linear(64, 8, bias=False)
    with torch.no_grad():
        layer.weight.fill_(1.0)
        layer.weight[:, ::2] = 0.98
    x = torch.ones(4, 64)
    x[:, 0] = 0.0  # the activations' zero point stays at 0, so every other one is full scale
    q = P.Int8Linear(layer)
    assert q.weight_bits == 7
    with torch.inference_mode():
        ref, got = layer(x), q(x)
    assert torch.allclose(got, ref, rtol=0.01), (got[0, 0].item(), ref[0, 0].item())


@pytest.mark.skipif(not P.fused_int8_available(), reason="torch built without its x86 quantised kernels")
@pytest.mark.parametrize("mode", ["fp32", "bf16", "int8"])
def test_converted_models_on_the_cpu_pad_their_frames_and_fp32_never(mode):
    model = P.apply_to_transformer(_small_transformer(), mode)
    assert model.pad_frames_to == (1 if mode == "fp32" else P.CPU_FRAME_MULTIPLE)


def test_int8_mode_on_cpu_replaces_every_linear_layer():
    model = P.apply_to_transformer(MaskedTransformer.load(SET_A / "coarse.pth", Codec.load(SET_A / "codec.pth")), "int8")
    kinds = {type(m) for m in model.modules()}
    assert P.Int8Linear in kinds and torch.nn.Linear not in kinds


def _small_transformer(seed=0):
    from vampnet.model import TransformerConfig
    torch.manual_seed(seed)
    return MaskedTransformer(TransformerConfig(n_codebooks=4, n_layers=2, embedding_dim=128, n_heads=2)).eval()


@pytest.mark.skipif(not (P.cpu_has_bf16() and packed.available()), reason="needs a CPU with bf16 instructions")
def test_bf16_on_a_cpu_with_bf16_runs_prepacked_products_with_the_plain_casts_numbers():
    import copy
    base = _small_transformer()
    plain = P.apply_to_transformer(copy.deepcopy(base), "bf16", packed=False)
    fast = P.apply_to_transformer(copy.deepcopy(base), "bf16")
    kinds = {type(m).__name__ for m in fast.modules()}
    assert {"PackedSelfAttention", "PackedGEGLU", "PackedLinear"} <= kinds and "Linear" not in kinds
    for shape in ((1, 4, 575), (3, 4, 50)):  # any batch and length
        codes = torch.randint(0, 1025, shape, generator=torch.Generator().manual_seed(1))
        want, got = logits(plain, codes), logits(fast, codes)
        assert ((got - want).norm() / want.norm()).item() < 2e-2
        assert (got.argmax(-1) == want.argmax(-1)).float().mean().item() > 0.95


def test_folding_the_norm_scales_into_the_products_gives_the_same_logits():
    import copy
    base = _small_transformer()
    with torch.no_grad():  # scales far from 1, so a scale that is lost or applied twice shows
        for norm in [base.norm] + [n for layer in base.layers for n in (layer.attn_norm, layer.ff_norm)]:
            norm.weight.uniform_(0.2, 3.0, generator=torch.Generator().manual_seed(len(norm.weight)))
    base.fold_for_inference()
    folded = packed.fold_norm_scales(copy.deepcopy(base))
    assert not any(type(m).__name__ == "RMSNorm" for m in folded.modules())
    codes = torch.randint(0, 1025, (2, 4, 30), generator=torch.Generator().manual_seed(3))
    want, got = logits(base, codes), logits(folded, codes)
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-4), (got - want).abs().max()


def test_bf16_without_the_prepacked_kernels_is_the_plain_cast(monkeypatch):
    monkeypatch.setattr(packed, "available", lambda: False)
    model = P.apply_to_transformer(_small_transformer(), "bf16")
    assert not any(type(m).__name__.startswith("Packed") for m in model.modules())
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())


@pytest.mark.skipif(not (P.cpu_has_bf16() and packed.available()), reason="needs a CPU with bf16 instructions")
def test_a_prepacked_model_copies_and_compiles_to_its_own_numbers():
    import copy
    import shutil
    model = P.apply_to_transformer(_small_transformer(), "bf16")
    codes = torch.randint(0, 1025, (2, 4, 40), generator=torch.Generator().manual_seed(2))
    want = logits(model, codes)
    assert torch.equal(logits(copy.deepcopy(model), codes), want)  # a copy shares the read-only packed weights
    if shutil.which("g++") or shutil.which("c++"):  # torch.compile's CPU code needs a C++ compiler
        with torch.inference_mode():
            compiled = torch.compile(lambda c: model(c), fullgraph=True, dynamic=False)(codes).float()
        assert ((compiled - want).norm() / want.norm()).item() < 2e-2


def test_vampnet_precision_says_what_auto_means_and_is_checked(monkeypatch):
    monkeypatch.setenv("VAMPNET_PRECISION", "int8")
    assert P.choose("auto") == ("int8", None)
    assert P.choose("bf16") == ("bf16", None)  # a precision given is not overridden
    monkeypatch.setenv("VAMPNET_PRECISION", "fp16")
    with pytest.raises(OptionError, match="VAMPNET_PRECISION must be one of fp32, bf16, int8, got 'fp16'"):
        P.choose("auto")


def test_the_default_precision_is_auto():
    from vampnet import PipelineConfig
    assert PipelineConfig().precision == "auto"


def test_auto_keeps_the_shipped_models_in_fp32_quietly(monkeypatch):
    monkeypatch.delenv("VAMPNET_PRECISION", raising=False)
    pipe = Pipeline.from_pretrained(precision="auto")  # 192- and 256-wide transformers: bf16 does not pay
    assert pipe.precisions == {"codec": "fp32", "coarse": "fp32", "c2f": "fp32"}
    assert pipe.precision_note is None  # the exact numbers, as without auto: nothing to say


@pytest.mark.skipif(not P.fused_int8_available(), reason="torch built without its x86 quantised kernels")
def test_int8_layers_pack_for_the_cpus_fastest_engine_and_compute_the_same(monkeypatch):
    torch.manual_seed(0)
    linear, x = torch.nn.Linear(256, 96), torch.randn(40, 256)
    engine_before = torch.backends.quantized.engine
    layer = P.Int8Linear(linear)
    assert layer.engine == ("onednn" if "amx_int8" in P.cpu_flags() and "onednn" in
                            torch.backends.quantized.supported_engines else "x86")
    assert torch.backends.quantized.engine == engine_before  # packing leaves the global engine as it was
    monkeypatch.setattr(P, "int8_engine", lambda: "x86")
    reference = P.Int8Linear(linear)
    with torch.inference_mode():
        got, want, exact = layer(x), reference(x), linear(x)
    assert ((got - want).norm() / want.norm()).item() < 1e-2  # the same 8-bit product, another kernel
    assert ((got - exact).norm() / exact.norm()).item() < 3e-2
