"""The masked transformer: relative-position buckets, official conversion (LoRA rule, key checks), our format."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vampnet import CheckpointError, MaskedTransformer, OptionError
from vampnet.model import relative_position_buckets
from vampnet.model.official import merge_lora


def expected_bucket(rel: int) -> int:
    """The original's relative-position bucket of key - query offset `rel` (T5's bidirectional bucketing, 32
    buckets, max distance 128), written out as a table: 0..7 exact, then log-spaced ranges; keys after the query +16."""
    a = abs(rel)
    ranges = [(0, 7, None), (8, 11, 8), (12, 15, 9), (16, 22, 10), (23, 31, 11), (32, 45, 12), (46, 63, 13), (64, 90, 14)]
    for lo, hi, b in ranges:
        if lo <= a <= hi:
            base = a if b is None else b
            break
    else:
        base = 15
    return base + (16 if rel > 0 else 0)


def test_relative_position_buckets_match_the_written_out_table():
    T = 300
    buckets = relative_position_buckets(T)
    for q in (0, 1, 150, 299):
        for k in range(T):
            assert buckets[q, k] == expected_bucket(k - q), (q, k)
    assert 16 not in buckets.unique().tolist()


def test_logits_shape_and_attributes(coarse_a, c2f_a):
    codes = torch.randint(0, 1024, (2, 6, 9))
    assert c2f_a(codes).shape == (2, 2, 9, 1024)
    assert coarse_a(codes[:, :4]).shape == (2, 4, 9, 1024)
    assert (c2f_a.n_codebooks, c2f_a.n_conditioning_codebooks, c2f_a.vocab_size, c2f_a.mask_token) == (6, 4, 1024, 1024)


def test_bias_cache_does_not_change_results(coarse_a):
    codes = torch.randint(0, 1025, (1, 4, 20))
    with torch.inference_mode():
        a = coarse_a(codes)
        b = coarse_a(codes)  # second call uses the cached bias
    with torch.no_grad():
        c = coarse_a(codes)
    assert torch.equal(a, b) and torch.equal(a, c)


@pytest.mark.parametrize("frames", [9, 16, 23])
def test_padding_the_frames_leaves_every_real_frames_logits_unchanged(coarse_a, frames):
    codes = torch.randint(0, 1025, (2, 4, frames), generator=torch.Generator().manual_seed(frames))
    with torch.inference_mode():
        want = coarse_a(codes)
        coarse_a.pad_frames_to = 16
        try:
            got, again = coarse_a(codes), coarse_a(codes)  # the second call takes the padded bias from the cache
        finally:
            del coarse_a.pad_frames_to  # back to the class default: no padding
    assert got.shape == want.shape
    assert torch.equal(got, again)
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-4), (got - want).abs().max()  # float32 rounding only
    if frames % 16 == 0:  # nothing to pad: the very same computation
        assert torch.equal(got, want)


def test_padded_keys_get_no_attention(coarse_a):
    bias = coarse_a.rel_bias(5, 3)
    assert bias.shape[-2:] == (8, 8)
    assert torch.isneginf(bias[..., 5:]).all() and torch.isfinite(bias[..., :5]).all()
    assert torch.equal(bias[..., :5, :5], coarse_a.rel_bias(5))


def test_wrong_number_of_codebooks_is_a_clear_error(coarse_a):
    with pytest.raises(OptionError, match="4 codebooks"):
        coarse_a(torch.zeros(1, 3, 5, dtype=torch.long))


def test_lora_rule_is_weight_plus_b_at_a_over_rank():
    w, a, b = torch.randn(6, 5), torch.randn(8, 5), torch.randn(6, 8)
    assert torch.allclose(merge_lora(w, a, b), w + b @ a / 8)


def _official(set_a, part="coarse"):
    return torch.load(set_a / f"{part}.pth", weights_only=True)


def test_absent_lora_means_no_delta_and_present_lora_is_merged(set_a, codec_a, coarse_a, tmp_path):
    obj = _official(set_a)
    key = "transformer.layers.1.self_attn.w_qs"
    sd = obj["state_dict"]
    w, a, b = sd[key + ".weight"], sd[key + ".lora_A"], sd[key + ".lora_B"]
    assert torch.allclose(coarse_a.layers[1].attn.q.weight, w + (b @ a) / a.shape[0])
    obj["state_dict"] = {k: v for k, v in sd.items() if "lora_" not in k}
    torch.save(obj, tmp_path / "nolora.pth")
    model = MaskedTransformer.load(tmp_path / "nolora.pth", codec_a)
    assert torch.equal(model.layers[1].attn.q.weight, w)


def test_missing_or_unexpected_official_keys_are_named(set_a, codec_a, tmp_path):
    obj = _official(set_a)
    del obj["state_dict"]["transformer.layers.1.feed_forward.w_2.weight"]
    torch.save(obj, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match=r"transformer\.layers\.1\.feed_forward\.w_2\.weight"):
        MaskedTransformer.load(tmp_path / "missing.pth", codec_a)
    obj = _official(set_a)
    obj["state_dict"]["transformer.layers.0.cross_attn.weight"] = torch.zeros(2)
    torch.save(obj, tmp_path / "extra.pth")
    with pytest.raises(CheckpointError, match="cross_attn"):
        MaskedTransformer.load(tmp_path / "extra.pth", codec_a)
    obj = _official(set_a)
    obj["state_dict"]["transformer.norm.weight"] = torch.zeros(3)
    torch.save(obj, tmp_path / "shape.pth")
    with pytest.raises(CheckpointError, match="shape"):
        MaskedTransformer.load(tmp_path / "shape.pth", codec_a)


def test_wrong_kind_and_missing_codec_are_errors(set_a, codec_a):
    with pytest.raises(CheckpointError, match="not a VampNet transformer"):
        MaskedTransformer.load(set_a / "codec.pth", codec_a)
    with pytest.raises(CheckpointError, match="needs the codec"):
        MaskedTransformer.load(set_a / "coarse.pth")


def test_our_format_round_trip_gives_identical_logits(coarse_a, c2f_a, tmp_path):
    codes = torch.randint(0, 1025, (1, 6, 30))
    for model, c in ((coarse_a, codes[:, :4]), (c2f_a, codes)):
        model.save(tmp_path / "m.safetensors")
        again = MaskedTransformer.load(tmp_path / "m.safetensors")  # self-contained: no codec needed
        with torch.inference_mode():
            assert torch.equal(again(c), model(c))


def test_converted_checkpoint_reproduces_fixture_logits(ours_dir, set_a):
    model = MaskedTransformer.load(ours_dir / "coarse.safetensors")
    codes = torch.from_numpy(np.load(set_a / "coarse_codes_in.npy"))
    ref = np.load(set_a / "coarse_logits.npy")
    with torch.inference_mode():
        logits = model(codes).numpy()
    B, V, TP = ref.shape
    ref = ref.reshape(B, V, TP // 4, 4).transpose(0, 3, 2, 1)
    assert np.abs(logits - ref).max() <= 1e-4


def test_model_paired_with_another_codec_is_refused(set_a, ours_dir, tmp_path):
    from vampnet import Codec

    codec = Codec.load(set_a / "codec.pth")
    with torch.no_grad():
        codec.quantizer.quantizers[1].codebook.weight.add_(0.5)
    with pytest.raises(CheckpointError, match="another codec"):
        MaskedTransformer.load(ours_dir / "coarse.safetensors", codec)


def test_token_tables_start_at_zero_round_trip_and_change_the_embedding_per_token(tmp_path):
    from vampnet import TransformerConfig

    torch.manual_seed(0)
    plain = MaskedTransformer(TransformerConfig(n_codebooks=4, embedding_dim=32, n_heads=2, n_layers=1)).eval()
    tabled = MaskedTransformer(TransformerConfig(n_codebooks=4, embedding_dim=32, n_heads=2, n_layers=1,
                                                 token_tables=True)).eval()
    missing, unexpected = tabled.load_state_dict(plain.state_dict(), strict=False)
    assert missing == ["embedding.tables.weight"] and not unexpected
    assert "token_tables" not in plain.config.to_dict() and tabled.config.to_dict()["token_tables"] is True
    codes = torch.randint(0, 1025, (2, 4, 12), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        assert torch.equal(tabled(codes), plain(codes))  # zero tables: the original model
    with torch.no_grad():
        tabled.embedding.tables.weight.normal_(generator=torch.Generator().manual_seed(2))
    tabled.save(tmp_path / "t.safetensors")
    loaded = MaskedTransformer.load(tmp_path / "t.safetensors").eval()
    with torch.inference_mode():
        assert torch.equal(loaded(codes), tabled(codes))
        # token v of codebook k reads row k * 1025 + v: changing one row moves only frames holding that token
        before = tabled.embedding(codes)
        k, v = 2, int(codes[0, 2, 5])
        tabled.embedding.tables.weight[k * 1025 + v] += 1.0
        moved = (tabled.embedding(codes) - before).abs().sum(-1) > 0
    assert torch.equal(moved, codes[:, k] == v)
