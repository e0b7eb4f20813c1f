"""Residual vector quantiser with factorised codes: each stage projects to a low-dimensional space, picks the
nearest codebook row by cosine similarity, and projects back; stages quantise what earlier stages left."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import WNConv1d, embedding


class VectorQuantizer(nn.Module):
    """One stage: in_proj (dim -> codebook_dim), cosine nearest neighbour in the codebook, out_proj back."""

    def __init__(self, input_dim: int, codebook_size: int, codebook_dim: int):
        super().__init__()
        self.in_proj = WNConv1d(input_dim, codebook_dim, 1)
        self.out_proj = WNConv1d(codebook_dim, input_dim, 1)
        self.codebook = embedding(codebook_size, codebook_dim)

    def nearest_codes(self, z_e: torch.Tensor) -> torch.Tensor:
        """z_e (B, L, T) -> codes (B, T): argmin of squared distance between L2-normalised vectors."""
        B, L, T = z_e.shape
        e = F.normalize(z_e.transpose(1, 2).reshape(B * T, L))
        c = F.normalize(self.codebook.weight)
        dist = e.pow(2).sum(1, keepdim=True) - 2 * e @ c.t() + c.pow(2).sum(1, keepdim=True).t()
        return (-dist).max(1)[1].view(B, T)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, T) -> raw codebook vectors (B, L, T)."""
        return self.codebook(codes).transpose(1, 2)

    def forward(self, residual: torch.Tensor):
        """residual (B, D, T) -> (projected quantised vector (B, D, T), codes (B, T), z_e (B, L, T), vec (B, L, T))."""
        z_e = self.in_proj(residual)
        codes = self.nearest_codes(z_e)
        vec = self.lookup(codes)
        # straight-through estimator: the value equals vec, gradients flow to z_e
        z_st = z_e + (vec - z_e).detach() if torch.is_grad_enabled() else z_e + (vec - z_e)
        return self.out_proj(z_st), codes, z_e, vec


class ResidualVectorQuantizer(nn.Module):
    """K stages of VectorQuantizer applied to successive residuals."""

    def __init__(self, input_dim: int, n_codebooks: int, codebook_size: int, codebook_dim: int):
        super().__init__()
        self.quantizers = nn.ModuleList(
            VectorQuantizer(input_dim, codebook_size, codebook_dim) for _ in range(n_codebooks)
        )

    def forward(self, z: torch.Tensor, n_quantizers: int | torch.Tensor | None = None):
        """z (B, D, T) -> dict(z=quantised sum, codes (B, k, T), latents (B, k*L, T), vecs (B, k*L, T)) of the first
        k = n_quantizers stages (default all K). A (B,) tensor of counts gives each item its own: every stage then
        runs for every item (so every parameter takes part in training, as DDP needs; k = K) and stage i adds to
        item b's sum only when i < n_quantizers[b]."""
        per_item = isinstance(n_quantizers, torch.Tensor)
        n = len(self.quantizers) if n_quantizers is None or per_item else n_quantizers
        residual, z_q = z, 0.0
        codes, z_es, vecs = [], [], []
        for i, quantizer in enumerate(self.quantizers[:n]):
            q, c, z_e, vec = quantizer(residual)
            z_q = z_q + (q * (n_quantizers > i).to(q.dtype)[:, None, None] if per_item else q)
            residual = residual - q
            codes.append(c)
            z_es.append(z_e)
            vecs.append(vec)
        return {"z": z_q, "codes": torch.stack(codes, 1), "latents": torch.cat(z_es, 1), "vecs": torch.cat(vecs, 1)}

    def from_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, k, T), k <= K -> quantised sum (B, D, T) of the first k stages."""
        z_q = 0.0
        for i in range(codes.shape[1]):
            z_q = z_q + self.quantizers[i].out_proj(self.quantizers[i].lookup(codes[:, i]))
        return z_q
