"""Literal, slow re-implementation of the ORIGINAL VampNet / LAC numerics, written from a written
specification of the official checkpoint formats and numerics only (no code from other projects), and
checked bit-for-bit against fixture set A (tests/fixtures_a), which the original code produced.

Purpose: an independent oracle for tests.  It is deliberately structured like the original code
(modules named like the checkpoint keys, weight norm recomputed at every forward, straight-through
expression evaluated literally, relative bias computed once by layer 0, ...) and is NOT optimised.
Nothing in the `vampnet` package may import this file.

Public entry points
    load_codec(path)                 -> LAC (eval)
    load_vampnet(path)               -> VampNet (eval, LoRA merged W + (B@A)/r when present)
    LAC.encode(audio, sr)            -> {"z", "codes", "latents"}
    LAC.encoder(x), LAC.preprocess(audio, sr), LAC.quantizer.from_codes(codes), LAC.decode(z)
    VampNet.embedding.from_codes(codes, codec), VampNet.forward(latents)
    VampNet.generate(codec, start_tokens, mask, _sampling_steps, ...)   (the paper's sampler)
    build helpers used to create fixture set B: LAC(**kw), VampNet(**kw), save_container(...)
"""
from __future__ import annotations

import math
import random
from collections import OrderedDict

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

# =============================================================================================
# LAC codec
# =============================================================================================


class WNConv1d(nn.Module):
    """Conv1d with legacy weight norm: parameters weight_g [out,1,1], weight_v [out,in,k], bias."""

    def __init__(self, in_ch, out_ch, kernel_size, stride=1, padding=0, dilation=1):
        super().__init__()
        self.weight_g = nn.Parameter(torch.ones(out_ch, 1, 1))
        self.weight_v = nn.Parameter(torch.zeros(out_ch, in_ch, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.stride, self.padding, self.dilation = stride, padding, dilation

    def forward(self, x):
        weight = torch._weight_norm(self.weight_v, self.weight_g, 0)
        return F.conv1d(x, weight, self.bias, self.stride, self.padding, self.dilation)


class WNConvTranspose1d(nn.Module):
    """ConvTranspose1d with legacy weight norm over dim 0 (= INPUT channels for a transposed conv)."""

    def __init__(self, in_ch, out_ch, kernel_size, stride=1, padding=0):
        super().__init__()
        self.weight_g = nn.Parameter(torch.ones(in_ch, 1, 1))
        self.weight_v = nn.Parameter(torch.zeros(in_ch, out_ch, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.stride, self.padding = stride, padding

    def forward(self, x):
        weight = torch._weight_norm(self.weight_v, self.weight_g, 0)
        return F.conv_transpose1d(x, weight, self.bias, self.stride, self.padding)


class Snake1d(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x):
        shape = x.shape
        x = x.reshape(shape[0], shape[1], -1)
        x = x + (self.alpha + 1e-9).reciprocal() * torch.sin(self.alpha * x).pow(2)
        return x.reshape(shape)


class Tanh(nn.Module):
    def forward(self, x):
        return torch.tanh(x)


class EncResidualUnit(nn.Module):
    def __init__(self, dim, dilation):
        super().__init__()
        pad = ((7 - 1) * dilation) // 2
        self.block = nn.Sequential(
            Snake1d(dim),
            WNConv1d(dim, dim, kernel_size=7, dilation=dilation, padding=pad),
            Snake1d(dim),
            WNConv1d(dim, dim, kernel_size=1),
        )

    def forward(self, x):
        y = self.block(x)
        return x + y  # LAC never crops


class EncoderBlock(nn.Module):
    def __init__(self, dim, stride):
        super().__init__()
        self.block = nn.Sequential(
            EncResidualUnit(dim // 2, dilation=1),
            EncResidualUnit(dim // 2, dilation=3),
            EncResidualUnit(dim // 2, dilation=9),
            Snake1d(dim // 2),
            WNConv1d(dim // 2, dim, kernel_size=2 * stride, stride=stride, padding=stride // 2),
        )

    def forward(self, x):
        return self.block(x)


class Encoder(nn.Module):
    def __init__(self, d_model, strides):
        super().__init__()
        layers = [WNConv1d(1, d_model, kernel_size=7, padding=3)]
        for stride in strides:
            d_model *= 2
            layers.append(EncoderBlock(d_model, stride=stride))
        layers += [Snake1d(d_model), WNConv1d(d_model, d_model, kernel_size=3, padding=1)]
        self.block = nn.Sequential(*layers)
        self.enc_dim = d_model

    def forward(self, x):
        return self.block(x)


class VectorQuantize(nn.Module):
    def __init__(self, input_dim, codebook_size, codebook_dim):
        super().__init__()
        self.codebook_size, self.codebook_dim = codebook_size, codebook_dim
        self.in_proj = WNConv1d(input_dim, codebook_dim, kernel_size=1)
        self.out_proj = WNConv1d(codebook_dim, input_dim, kernel_size=1)
        self.codebook = nn.Embedding(codebook_size, codebook_dim)

    def embed_code(self, embed_id):
        return F.embedding(embed_id, self.codebook.weight)

    def decode_code(self, embed_id):
        return self.embed_code(embed_id).transpose(1, 2)

    def decode_latents(self, latents):
        encodings = rearrange(latents, "b d t -> (b t) d")
        codebook = self.codebook.weight
        encodings = F.normalize(encodings)  # p=2, dim=1, eps=1e-12
        codebook = F.normalize(codebook)
        dist = (
            encodings.pow(2).sum(1, keepdim=True)
            - 2 * encodings @ codebook.t()
            + codebook.pow(2).sum(1, keepdim=True).t()
        )
        indices = rearrange((-dist).max(1)[1], "(b t) -> b t", b=latents.size(0))
        z_q = self.decode_code(indices)
        return z_q, indices

    def forward(self, z):
        z_e = self.in_proj(z)
        z_q, indices = self.decode_latents(z_e)
        z_q = z_e + (z_q - z_e).detach()  # straight-through, evaluated literally
        z_q = self.out_proj(z_q)
        return z_q, indices, z_e


class ResidualVectorQuantize(nn.Module):
    def __init__(self, input_dim, n_codebooks, codebook_size, codebook_dim, quantizer_dropout=False):
        super().__init__()
        self.n_codebooks = n_codebooks
        self.quantizers = nn.ModuleList(
            [VectorQuantize(input_dim, codebook_size, codebook_dim) for _ in range(n_codebooks)]
        )

    def forward(self, z, n_quantizers=None):
        z_q = 0
        residual = z
        codes, latents = [], []
        if n_quantizers is None:
            n_quantizers = self.n_codebooks
        for i, quantizer in enumerate(self.quantizers):
            z_q_i, indices_i, z_e_i = quantizer(residual)
            mask = torch.full((z.shape[0],), fill_value=i, device=z.device) < n_quantizers
            z_q = z_q + z_q_i * mask[:, None, None]
            residual = residual - z_q_i
            codes.append(indices_i)
            latents.append(z_e_i)
        return z_q, torch.stack(codes, dim=1), torch.cat(latents, dim=1)

    def from_codes(self, codes):
        z_q = 0.0
        z_p = []
        n_codebooks = codes.shape[1]
        for i in range(n_codebooks):
            z_p_i = self.quantizers[i].decode_code(codes[:, i, :])
            z_p.append(z_p_i)
            z_q = z_q + self.quantizers[i].out_proj(z_p_i)
        return z_q, torch.cat(z_p, dim=1), codes

    def from_latents(self, latents):
        z_q = 0
        z_p, codes = [], []
        dims = np.cumsum([0] + [q.codebook_dim for q in self.quantizers])
        n_codebooks = np.where(dims <= latents.shape[1])[0].max(axis=0, keepdims=True)[0]
        for i in range(n_codebooks):
            j, k = dims[i], dims[i + 1]
            z_p_i, codes_i = self.quantizers[i].decode_latents(latents[:, j:k, :])
            z_p.append(z_p_i)
            codes.append(codes_i)
            z_q = z_q + self.quantizers[i].out_proj(z_p_i)
        return z_q, torch.cat(z_p, dim=1), torch.stack(codes, dim=1)


class MRFResLayer(nn.Module):
    """x + (Snake -> conv k dil d -> Snake -> conv k dil 1)(x)"""

    def __init__(self, dim, kernel, dilation):
        super().__init__()
        self.layer = nn.Sequential(
            Snake1d(dim),
            WNConv1d(dim, dim, kernel_size=kernel, dilation=dilation, padding=(kernel - 1) * dilation // 2),
            Snake1d(dim),
            WNConv1d(dim, dim, kernel_size=kernel, dilation=1, padding=(kernel - 1) // 2),
        )

    def forward(self, x):
        return x + self.layer(x)


class MRFChain(nn.Module):
    def __init__(self, dim, kernel, dilations=(1, 3, 5)):
        super().__init__()
        self.block = nn.ModuleList([MRFResLayer(dim, kernel, d) for d in dilations])

    def forward(self, x):
        for layer in self.block:
            x = layer(x)
        return x


class MRF(nn.Module):
    def __init__(self, dim, kernels=(3, 7, 11)):
        super().__init__()
        self.mrf_blocks = nn.ModuleList([MRFChain(dim, k) for k in kernels])

    def forward(self, x):
        out = None
        for chain in self.mrf_blocks:
            y = chain(x)  # every chain starts from the same input
            out = y if out is None else out + y
        return out / len(self.mrf_blocks)


class DecoderBlock(nn.Module):
    def __init__(self, input_dim, output_dim, stride):
        super().__init__()
        self.block = nn.Sequential(
            Snake1d(input_dim),
            WNConvTranspose1d(input_dim, output_dim, kernel_size=2 * stride, stride=stride, padding=stride // 2),
            MRF(output_dim),
        )

    def forward(self, x):
        return self.block(x)


class Decoder(nn.Module):
    def __init__(self, input_channel, channels, rates, d_out=1):
        super().__init__()
        layers = [WNConv1d(input_channel, channels, kernel_size=7, padding=3)]
        output_dim = channels
        for i, stride in enumerate(rates):
            input_dim = channels // 2**i
            output_dim = channels // 2 ** (i + 1)
            layers.append(DecoderBlock(input_dim, output_dim, stride))
        layers += [Snake1d(output_dim), WNConv1d(output_dim, d_out, kernel_size=7, padding=3), Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


class LAC(nn.Module):
    def __init__(self, encoder_dim=64, encoder_rates=(2, 4, 8, 8), decoder_dim=512,
                 decoder_rates=(4, 4, 4, 2, 2, 2), n_codebooks=9, codebook_size=1024, codebook_dim=8,
                 quantizer_dropout=False, sample_rate=44100):
        super().__init__()
        self.encoder_dim, self.encoder_rates = encoder_dim, list(encoder_rates)
        self.decoder_dim, self.decoder_rates = decoder_dim, list(decoder_rates)
        self.n_codebooks, self.codebook_size, self.codebook_dim = n_codebooks, codebook_size, codebook_dim
        self.quantizer_dropout, self.sample_rate = quantizer_dropout, sample_rate
        self.hop_length = int(np.prod(decoder_rates))  # LAC: DECODER rates
        self.encoder = Encoder(encoder_dim, encoder_rates)
        self.enc_dim = self.encoder.enc_dim
        self.quantizer = ResidualVectorQuantize(self.enc_dim, n_codebooks, codebook_size, codebook_dim,
                                                quantizer_dropout)
        self.decoder = Decoder(self.enc_dim, decoder_dim, decoder_rates)

    def kwargs(self):
        return dict(encoder_dim=self.encoder_dim, encoder_rates=list(self.encoder_rates),
                    decoder_dim=self.decoder_dim, decoder_rates=list(self.decoder_rates),
                    n_codebooks=self.n_codebooks, codebook_size=self.codebook_size,
                    codebook_dim=self.codebook_dim, quantizer_dropout=self.quantizer_dropout,
                    sample_rate=self.sample_rate)

    def preprocess(self, audio_data, sample_rate):
        assert sample_rate == self.sample_rate
        length = audio_data.shape[-1]
        right_pad = math.ceil(length / self.hop_length) * self.hop_length - length
        return F.pad(audio_data, (0, right_pad))

    def encode(self, audio_data, sample_rate, n_quantizers=None):
        audio_data = self.preprocess(audio_data, sample_rate)
        z = self.encoder(audio_data)
        z_q, codes, latents = self.quantizer(z, n_quantizers)
        return {"z": z_q, "codes": codes, "latents": latents}

    def decode(self, z, length=None):
        audio = self.decoder(z)
        return {"audio": audio[..., :length]}


# =============================================================================================
# VampNet transformer
# =============================================================================================


class LoRALinear(nn.Module):
    """Linear (no bias) whose optional lora_A [r,in] / lora_B [out,r] are merged at load time."""

    def __init__(self, in_f, out_f, lora_r=None):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(out_f, in_f))
        if lora_r:
            self.lora_A = nn.Parameter(torch.zeros(lora_r, in_f))
            self.lora_B = nn.Parameter(torch.zeros(out_f, lora_r))

    def forward(self, x):
        return F.linear(x, self.weight)


class RMSNorm(nn.Module):
    def __init__(self, hidden_size, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.var_eps = eps

    def forward(self, x):
        x = x.float()
        var = x.pow(2).mean(-1, keepdim=True)
        x = x * torch.rsqrt(var + self.var_eps)
        return self.weight * x


def new_gelu(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class FeedForward(nn.Module):
    def __init__(self, d_model, lora_r=None):
        super().__init__()
        self.w_1 = LoRALinear(d_model, d_model * 4, lora_r)
        self.w_2 = LoRALinear(d_model * 2, d_model, lora_r)

    def forward(self, x):
        x = self.w_1(x)
        p1, p2 = x.chunk(2, dim=-1)  # first half = value, second half = gate
        x = p1 * new_gelu(p2)
        # dropout: identity in eval
        return self.w_2(x)


class MultiHeadRelativeAttention(nn.Module):
    def __init__(self, n_head, d_model, has_relative_attention_bias, lora_r=None,
                 num_buckets=32, max_distance=128):
        super().__init__()
        self.n_head, self.d_model = n_head, d_model
        self.w_qs = LoRALinear(d_model, d_model, lora_r)
        self.w_ks = LoRALinear(d_model, d_model, None)
        self.w_vs = LoRALinear(d_model, d_model, lora_r)
        self.fc = LoRALinear(d_model, d_model, lora_r)
        self.has_relative_attention_bias = has_relative_attention_bias
        self.num_buckets, self.max_distance = num_buckets, max_distance
        if has_relative_attention_bias:
            self.relative_attention_bias = nn.Embedding(num_buckets, n_head)

    @staticmethod
    def _relative_position_bucket(relative_position, num_buckets=32, max_distance=128):
        relative_buckets = 0
        num_buckets //= 2  # bidirectional
        relative_buckets += (relative_position > 0).to(torch.long) * num_buckets
        relative_position = torch.abs(relative_position)
        max_exact = num_buckets // 2
        is_small = relative_position < max_exact
        rp_if_large = max_exact + (
            torch.log(relative_position.float() / max_exact)
            / math.log(max_distance / max_exact)
            * (num_buckets - max_exact)
        ).to(torch.long)
        rp_if_large = torch.min(rp_if_large, torch.full_like(rp_if_large, num_buckets - 1))
        relative_buckets += torch.where(is_small, relative_position, rp_if_large)
        return relative_buckets

    def compute_bias(self, query_length, key_length):
        context_position = torch.arange(query_length, dtype=torch.long)[:, None]
        memory_position = torch.arange(key_length, dtype=torch.long)[None, :]
        relative_position = memory_position - context_position  # key - query
        bucket = self._relative_position_bucket(relative_position, self.num_buckets, self.max_distance)
        values = self.relative_attention_bias(bucket)  # [q, k, h]
        values = values.permute([2, 0, 1]).unsqueeze(1)  # [h, 1, q, k]
        return values

    def forward(self, q, k, v, mask, position_bias=None):
        q = rearrange(self.w_qs(q), "b l (head k) -> head b l k", head=self.n_head)
        k = rearrange(self.w_ks(k), "b t (head k) -> head b t k", head=self.n_head)
        v = rearrange(self.w_vs(v), "b t (head k) -> head b t k", head=self.n_head)
        attn = torch.einsum("hblk,hbtk->hblt", q, k) / np.sqrt(q.shape[-1])
        if position_bias is None:
            if self.has_relative_attention_bias:
                position_bias = self.compute_bias(q.size(-2), k.size(-2))
            else:
                position_bias = torch.zeros_like(attn)
        attn = attn + position_bias
        attn = attn.masked_fill(mask[None, :, None, :] == 0, -1e9)
        attn = torch.softmax(attn, dim=3)
        # attention dropout: identity in eval
        out = torch.einsum("hblt,hbtv->hblv", attn, v)
        out = rearrange(out, "head b l v -> b l (head v)")
        out = self.fc(out)
        return out, position_bias


class TransformerLayer(nn.Module):
    def __init__(self, d_model, n_heads, has_relative_attention_bias, lora_r=None):
        super().__init__()
        self.norm_1 = RMSNorm(d_model)
        self.self_attn = MultiHeadRelativeAttention(n_heads, d_model, has_relative_attention_bias, lora_r)
        self.norm_3 = RMSNorm(d_model)
        self.feed_forward = FeedForward(d_model, lora_r)

    def forward(self, x, x_mask, position_bias=None):
        y = self.norm_1(x)
        # FiLM with d_cond == 0: identity
        y, position_bias = self.self_attn(y, y, y, x_mask, position_bias)
        x = x + y  # dropout identity
        y = self.norm_3(x)
        y = self.feed_forward(y)
        x = x + y
        return x, position_bias


class TransformerStack(nn.Module):
    def __init__(self, d_model, n_heads, n_layers, lora_r=None):
        super().__init__()
        self.layers = nn.ModuleList(
            [TransformerLayer(d_model, n_heads, has_relative_attention_bias=(i == 0), lora_r=lora_r)
             for i in range(n_layers)]
        )
        self.norm = RMSNorm(d_model)

    def forward(self, x, x_mask):
        x = x * x_mask.unsqueeze(-1)
        position_bias = None
        for layer in self.layers:
            x, position_bias = layer(x, x_mask, position_bias)
        return self.norm(x)


class CodebookEmbedding(nn.Module):
    def __init__(self, vocab_size, latent_dim, n_codebooks, emb_dim):
        super().__init__()
        self.vocab_size, self.latent_dim, self.n_codebooks = vocab_size, latent_dim, n_codebooks
        self.special = nn.ParameterDict({"MASK": nn.Parameter(torch.zeros(n_codebooks, latent_dim))})
        self.out_proj = nn.Conv1d(n_codebooks * latent_dim, emb_dim, 1)

    def from_codes(self, codes, codec):
        latent = []
        for i in range(codes.shape[1]):
            c = codes[:, i, :]
            lookup_table = codec.quantizer.quantizers[i].codebook.weight
            lookup_table = torch.cat([lookup_table, self.special["MASK"][i:i + 1]], dim=0)
            latent.append(F.embedding(c, lookup_table).transpose(1, 2))
        return torch.cat(latent, dim=1)

    def forward(self, latents):
        return self.out_proj(latents)


class Classifier(nn.Module):
    def __init__(self, d_model, out_ch):
        super().__init__()
        self.layers = nn.ModuleList([WNConv1d(d_model, out_ch, kernel_size=1)])

    def forward(self, x):
        conv = self.layers[0]
        weight = torch._weight_norm(conv.weight_v, conv.weight_g, 0)
        return F.conv1d(x, weight, conv.bias, 1, "same", 1)


def _gamma(r):
    return (r * torch.pi / 2).cos().clamp(1e-10, 1.0)


def codebook_flatten(tokens):
    return rearrange(tokens, "b c t -> b (t c)")


def codebook_unflatten(flat, n_c):
    return rearrange(flat, "b (t c) -> b c t", c=n_c)


def gumbel_noise_like(t):
    noise = torch.zeros_like(t).uniform_(1e-20, 1)
    return -torch.log(-torch.log(noise))


def mask_by_random_topk(num_to_mask, probs, temperature):
    noise = gumbel_noise_like(probs)
    temperature = temperature.unsqueeze(-1)
    confidence = torch.log(probs) + temperature * noise
    sorted_confidence, _ = confidence.sort(dim=-1)
    cut_off = torch.take_along_dim(sorted_confidence, num_to_mask, dim=-1)
    return confidence < cut_off


def sample_from_logits(logits, sample=True, temperature=1.0, top_p=None, typical_filtering=False,
                       typical_mass=0.15, typical_min_tokens=64):
    shp = logits.shape[:-1]
    # typical filtering: the original computes it and DISCARDS the result -> no effect at all.
    if top_p is not None and top_p < 1.0:
        sorted_logits, idx = logits.sort(descending=True)
        cum_probs = F.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        sorted_remove = cum_probs > top_p
        sorted_remove[..., 1:] = sorted_remove[..., :-1].clone()
        sorted_remove[..., 0] = False
        remove = sorted_remove.scatter(-1, idx, sorted_remove)
        logits = logits.masked_fill(remove, -float("inf"))
    probs = F.softmax(logits / temperature, dim=-1) if temperature > 0 else logits.softmax(dim=-1)
    if sample:
        token = torch.multinomial(probs.reshape(-1, probs.size(-1)), 1).reshape(*shp)
    else:
        token = logits.argmax(dim=-1)
    token_probs = probs.take_along_dim(token.unsqueeze(-1), dim=-1).squeeze(-1)
    return token, token_probs


class VampNet(nn.Module):
    KWARG_DEFAULTS = dict(n_heads=20, n_layers=16, r_cond_dim=0, n_codebooks=9, n_conditioning_codebooks=0,
                          latent_dim=8, embedding_dim=1280, vocab_size=1024, flash_attn=True,
                          noise_mode="mask", dropout=0.1, ctrl_dims=None, cfg_dropout_prob=0.2, cond_dim=0)

    def __init__(self, n_heads=20, n_layers=16, r_cond_dim=0, n_codebooks=9, n_conditioning_codebooks=0,
                 latent_dim=8, embedding_dim=1280, vocab_size=1024, flash_attn=True, noise_mode="mask",
                 dropout=0.1, lora_r=8, **unused):
        super().__init__()
        assert r_cond_dim == 0 and noise_mode == "mask" and not flash_attn
        self.n_heads, self.n_layers, self.r_cond_dim = n_heads, n_layers, r_cond_dim
        self.n_codebooks, self.n_conditioning_codebooks = n_codebooks, n_conditioning_codebooks
        self.n_predict_codebooks = n_codebooks - n_conditioning_codebooks
        self.latent_dim, self.embedding_dim, self.vocab_size = latent_dim, embedding_dim, vocab_size
        self.flash_attn, self.noise_mode, self.dropout = flash_attn, noise_mode, dropout
        self.mask_token = vocab_size
        self.embedding = CodebookEmbedding(vocab_size, latent_dim, n_codebooks, embedding_dim)
        self.transformer = TransformerStack(embedding_dim, n_heads, n_layers, lora_r)
        self.classifier = Classifier(embedding_dim, vocab_size * self.n_predict_codebooks)

    def forward(self, latents):
        x = self.embedding(latents)
        x_mask = torch.ones_like(x, dtype=torch.bool)[:, :1, :].squeeze(1)
        x = rearrange(x, "b d n -> b n d")
        out = self.transformer(x, x_mask)
        out = rearrange(out, "b n d -> b d n")
        out = self.classifier(out)
        return rearrange(out, "b (p c) t -> b p (t c)", c=self.n_predict_codebooks)

    @torch.no_grad()
    def generate(self, codec, time_steps=300, _sampling_steps=12, start_tokens=None, mask=None,
                 temperature=1.0, mask_temperature=10.5, typical_filtering=True, typical_mass=0.15,
                 typical_min_tokens=64, top_p=None, seed=None, sample_cutoff=1.0, return_signal=False):
        if seed is not None:
            torch.manual_seed(seed)
            np.random.seed(seed)
            random.seed(seed)
        sampling_steps = _sampling_steps
        z = start_tokens
        if z is None:
            z = torch.full((1, self.n_codebooks, time_steps), self.mask_token)
        if mask is None:
            mask = torch.ones_like(z).int()
            mask[:, : self.n_conditioning_codebooks, :] = 0
        if mask.ndim == 2:
            mask = mask[:, None, :].repeat(1, z.shape[1], 1)
        z_masked = z.masked_fill(mask.bool(), self.mask_token)
        num_mask_tokens_at_start = (z_masked == self.mask_token).sum()  # summed over the batch
        C = self.n_conditioning_codebooks
        n_infer = self.n_codebooks - C
        sampled_z = None
        for i in range(sampling_steps):
            r = torch.tensor((i + 1) / sampling_steps).repeat(z.shape[0])  # float32
            latents = self.embedding.from_codes(z_masked, codec)
            logits = self.forward(latents).permute(0, 2, 1)  # [B, T*P, V]
            sampled_z, selected_probs = sample_from_logits(
                logits, sample=((i / sampling_steps) <= sample_cutoff), temperature=temperature,
                top_p=top_p, typical_filtering=typical_filtering, typical_mass=typical_mass,
                typical_min_tokens=typical_min_tokens)
            z_masked = codebook_flatten(z_masked[:, C:, :])
            mask = (z_masked == self.mask_token).int()
            sampled_z = torch.where(mask.bool(), sampled_z, z_masked)
            selected_probs = torch.where(mask.bool(), selected_probs, torch.inf)
            num_to_mask = torch.floor(_gamma(r) * num_mask_tokens_at_start).unsqueeze(1).long()
            if i != (sampling_steps - 1):
                num_to_mask = torch.maximum(
                    torch.tensor(1), torch.minimum(mask.sum(dim=-1, keepdim=True) - 1, num_to_mask))
            mask = mask_by_random_topk(num_to_mask, selected_probs, mask_temperature * (1 - r))
            z_masked = torch.where(mask.bool(), self.mask_token, sampled_z)
            z_masked = codebook_unflatten(z_masked, n_infer)
            z_masked = torch.cat((z[:, :C, :], z_masked), dim=1)
        return torch.cat((z[:, :C, :], codebook_unflatten(sampled_z, n_infer)), dim=1)


# =============================================================================================
# loading / saving (official container)
# =============================================================================================

LORA_LINEARS = ("self_attn.w_qs", "self_attn.w_vs", "self_attn.fc", "feed_forward.w_1", "feed_forward.w_2")


def _load_container(path):
    ck = torch.load(path, map_location="cpu", weights_only=True)
    sd = {k[len("_orig_mod."):] if k.startswith("_orig_mod.") else k: v for k, v in ck["state_dict"].items()}
    return sd, dict(ck["metadata"]["kwargs"])


def load_codec(path):
    sd, kw = _load_container(path)
    names = ("encoder_dim", "encoder_rates", "decoder_dim", "decoder_rates", "n_codebooks",
             "codebook_size", "codebook_dim", "quantizer_dropout", "sample_rate")
    model = LAC(**{k: kw[k] for k in names if k in kw})
    model.load_state_dict(sd, strict=True)
    return model.eval()


def load_vampnet(path):
    """Build from metadata kwargs; merge W <- W + (lora_B @ lora_A) * (1/r) where lora keys exist."""
    sd, kw = _load_container(path)
    model = VampNet(**kw, lora_r=None)
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    assert not missing, f"missing keys: {missing[:5]}"
    merged = {}
    for k, v in sd.items():
        if k.endswith(".lora_A") or k.endswith(".lora_B"):
            continue
        if k not in own:
            continue  # non-strict for unknown extras (as the original)
        if k.endswith(".weight") and (k[:-len(".weight")] + ".lora_A") in sd:
            base = k[:-len(".weight")]
            A, B = sd[base + ".lora_A"], sd[base + ".lora_B"]
            r = A.shape[0]
            v = v.clone()
            v += (B @ A) * (1.0 / r)  # loralib: weight.data += (B @ A) * scaling (in place)
        merged[k] = v
    model.load_state_dict(merged, strict=True)
    return model.eval()


def save_container(model, kwargs, path, state_dict=None):
    sd = model.state_dict() if state_dict is None else state_dict
    sd = OrderedDict((k, v.detach().clone().contiguous()) for k, v in sd.items())  # like module.state_dict()
    torch.save({"state_dict": sd, "metadata": {"kwargs": dict(kwargs)}}, path)
