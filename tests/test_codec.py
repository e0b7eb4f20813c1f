"""Codec behaviour beyond the fixtures: shapes and padding, round trips through our format, clear load errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from vampnet import CheckpointError, Codec, OptionError
from vampnet.codec import CodecConfig


def test_encode_right_pads_to_a_hop_multiple_and_decode_gives_frames_times_hop(codec_a):
    wav = torch.randn(2, 1, 5 * codec_a.hop_length + 17) * 0.1
    with torch.inference_mode():
        codes = codec_a.encode(wav)
        audio = codec_a.decode(codes)
    assert codes.dtype == torch.long and codes.shape == (2, codec_a.n_codebooks, 6)
    assert audio.shape == (2, 1, 6 * codec_a.hop_length)
    assert codec_a.sample_rate == 44100 and codec_a.hop_length == 768 and codec_a.codebook_size == 1024


def test_decoding_fewer_codebooks_uses_only_those(codec_a):
    wav = torch.randn(1, 1, 4 * 768) * 0.1
    with torch.inference_mode():
        codes = codec_a.encode(wav)
        z_two = codec_a.quantizer.from_codes(codes[:, :2])
        z_manual = sum(q.out_proj(q.lookup(codes[:, i])) for i, q in enumerate(codec_a.quantizer.quantizers[:2]))
        assert codec_a.decode(codes[:, :2]).shape == (1, 1, 4 * 768)
    assert torch.allclose(z_two, z_manual)


def test_our_format_round_trip_is_exact(codec_a, tmp_path):
    codec_a.save(tmp_path / "codec.safetensors")
    again = Codec.load(tmp_path / "codec.safetensors")
    assert again.config == codec_a.config
    wav = torch.randn(1, 1, 3000) * 0.1
    with torch.inference_mode():
        assert torch.equal(again.encode(wav), codec_a.encode(wav))
        codes = codec_a.encode(wav)
        assert torch.equal(again.decode(codes), codec_a.decode(codes))


def test_architecture_comes_from_the_checkpoint(tmp_path):
    cfg = CodecConfig(encoder_dim=4, encoder_rates=(2, 3), decoder_dim=16, decoder_rates=(3, 2), n_codebooks=3,
                      codebook_size=32, codebook_dim=2, sample_rate=16000)
    Codec(cfg).save(tmp_path / "c.safetensors")
    codec = Codec.load(tmp_path / "c.safetensors")
    assert codec.hop_length == 6 and codec.n_codebooks == 3 and codec.sample_rate == 16000


def test_bad_inputs_raise_typed_errors(codec_a):
    with pytest.raises(OptionError):
        codec_a.encode(torch.zeros(1, 2, 100))
    with pytest.raises(OptionError):
        codec_a.encode(torch.zeros(1, 1, 0))
    with pytest.raises(OptionError):
        codec_a.decode(torch.full((1, 2, 3), 1024))
    with pytest.raises(OptionError):
        codec_a.decode(torch.zeros(1, 7, 3, dtype=torch.long))


def test_load_errors_name_the_problem(set_a, tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        Codec.load(tmp_path / "nope.pth")
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        Codec.load(tmp_path / "empty.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="cannot read"):
        Codec.load(tmp_path / "junk.pth")
    with pytest.raises(CheckpointError, match="not a codec"):
        Codec.load(set_a / "coarse.pth")
    obj = torch.load(set_a / "codec.pth", weights_only=True)
    del obj["state_dict"]["quantizer.quantizers.2.codebook.weight"]
    torch.save(obj, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="quantizer.quantizers.2.codebook.weight"):
        Codec.load(tmp_path / "missing.pth")
    obj = torch.load(set_a / "codec.pth", weights_only=True)
    obj["state_dict"]["extra.weight"] = torch.zeros(1)
    torch.save(obj, tmp_path / "extra.pth")
    with pytest.raises(CheckpointError, match="extra.weight"):
        Codec.load(tmp_path / "extra.pth")


def test_truncated_safetensors_is_a_checkpoint_error(codec_a, tmp_path):
    codec_a.save(tmp_path / "c.safetensors")
    data = (tmp_path / "c.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        Codec.load(tmp_path / "cut.safetensors")


def test_official_leading_orig_mod_prefix_is_accepted(set_a, tmp_path):
    obj = torch.load(set_a / "codec.pth", weights_only=True)
    obj["state_dict"] = {"_orig_mod." + k: v for k, v in obj["state_dict"].items()}
    torch.save(obj, tmp_path / "compiled.pth")
    codes = np.load(set_a / "codes.npy")
    with torch.inference_mode():
        out = Codec.load(tmp_path / "compiled.pth").encode(torch.from_numpy(np.load(set_a / "audio_in.npy")))
    assert np.array_equal(out.numpy(), codes)


@pytest.mark.parametrize("chunk", [16, 40])
def test_chunked_encode_and_decode_equal_whole_signal_processing(set_a, chunk):
    """Long audio is processed in chunks with receptive-field context: the same codes and (to float rounding) audio."""
    whole = Codec.load(set_a / "codec.pth")
    chunked = Codec.load(set_a / "codec.pth")
    chunked.chunk_frames = chunk
    wav = torch.from_numpy(np.load(set_a / "audio_in.npy"))
    with torch.inference_mode():
        codes = whole.encode(wav)
        assert codes.shape[-1] > chunk + 2 * whole.config.encoder_context_frames()  # the chunked path really runs
        assert torch.equal(chunked.encode(wav), codes)
        assert (whole.decode(codes) - chunked.decode(codes)).abs().max() < 1e-5


def test_inference_decode_layout_matches_the_training_layout_to_float_rounding():
    """Inference runs the decoder channels-last on (B, C, 1, N) with cached weights; with gradients on it runs the
    plain (B, C, N) layout. Both give the same audio to float rounding (the convolution algorithm differs)."""
    torch.manual_seed(0)
    codec = Codec(CodecConfig(encoder_dim=4, encoder_rates=(2, 4), decoder_dim=32, decoder_rates=(4, 2), n_codebooks=3,
                              codebook_size=16, codebook_dim=4, sample_rate=8000)).eval()
    codes = torch.randint(0, 16, (2, 3, 25))
    reference = codec.decode(codes.clone()).detach()  # grad enabled: the training layout
    with torch.inference_mode():
        fast = codec.decode(codes)
    assert fast.shape == reference.shape == (2, 1, 25 * 8) and fast.is_contiguous()
    assert (fast - reference).abs().max() < 1e-5 * reference.abs().max()


def test_reduced_precision_encoder_runs_channels_last_and_float32_keeps_the_plain_layout():
    """In bfloat16 inference the encoder runs on (B, C, 1, N) channels-last (what oneDNN's bf16 convolutions use);
    its latents agree with the plain (B, C, N) layout's to bf16 rounding. float32 keeps the plain layout: the same
    bits as running the layers directly (the original's numbers, and BulkEncoder's)."""
    torch.manual_seed(0)
    codec = Codec(CodecConfig(encoder_dim=4, encoder_rates=(2, 4), decoder_dim=32, decoder_rates=(4, 2), n_codebooks=3,
                              codebook_size=16, codebook_dim=4, sample_rate=8000)).eval()
    wav = torch.randn(2, 1, 8 * 40) * 0.3
    seen = []
    hook = codec.encoder.block[0].register_forward_pre_hook(lambda _m, args: seen.append(args[0].dim()))
    with torch.inference_mode():
        assert torch.equal(codec.encoder(wav), codec.encoder.block(wav))
        codec.encoder.to(torch.bfloat16)
        x = wav.to(torch.bfloat16)
        fast, plain = codec.encoder(x), codec.encoder.block(x)
    hook.remove()
    assert seen == [3, 3, 4, 3]  # float32: plain; bf16: channels-last through the encoder, plain when run directly
    assert fast.shape == plain.shape and fast.dtype == torch.bfloat16 and fast.is_contiguous()
    torch.testing.assert_close(fast.float(), plain.float(), atol=0.02 * plain.abs().max().item(), rtol=0.02)


def test_cached_inference_weights_follow_changed_parameters():
    """The weight-normalised weight is computed once per parameter state in inference; an in-place change of the
    parameters (an optimiser step, a load) is seen by the next inference."""
    from vampnet.codec.layers import WNConv1d

    conv = WNConv1d(3, 5, 3, padding=1)
    x = torch.randn(1, 3, 10)
    with torch.no_grad():
        first = conv(x)
        assert torch.equal(conv(x), first)
        conv.weight_g.mul_(2)
        assert torch.allclose(conv(x) - conv.bias[:, None], 2 * (first - conv.bias[:, None]), atol=1e-6)
        conv.load_state_dict({**conv.state_dict(), "weight_v": torch.randn(5, 3, 3)})
        expected = torch.nn.functional.conv1d(x, torch._weight_norm(conv.weight_v, conv.weight_g, 0), conv.bias, padding=1)
        assert torch.equal(conv(x), expected)
