"""Translation of the original VampNet state dict (coarse.pth / c2f.pth) into this package's parameter layout.

What the original files hold and how they map: LoRA deltas (loralib, scaling 1/r) are merged as W + (B @ A) * (1/r) whenever both
factors are present (even if the file was saved merged, as the original does); the relative-position table
lives in layer 0 only; the classifier is a weight-normed Conv1d whose channel ch is token ch // P of
predicted codebook ch % P, which we reorder to codebook-major rows (exact: weight norm is per row)."""
from __future__ import annotations

import torch

from ..errors import CheckpointError

LORA_PROJECTIONS = ("self_attn.w_qs", "self_attn.w_vs", "self_attn.fc", "feed_forward.w_1", "feed_forward.w_2")

LAYER_MAP = {
    "norm_1.weight": "attn_norm.weight",
    "self_attn.w_qs.weight": "attn.q.weight",
    "self_attn.w_ks.weight": "attn.k.weight",
    "self_attn.w_vs.weight": "attn.v.weight",
    "self_attn.fc.weight": "attn.out.weight",
    "norm_3.weight": "ff_norm.weight",
    "feed_forward.w_1.weight": "ff.w_in.weight",
    "feed_forward.w_2.weight": "ff.w_out.weight",
}


def official_keys(config) -> set[str]:
    """Every key an official file must hold for this config (LoRA factors excluded: they are optional)."""
    keys = {"embedding.special.MASK", "embedding.out_proj.weight", "embedding.out_proj.bias", "transformer.norm.weight",
            "classifier.layers.0.weight_v", "classifier.layers.0.weight_g", "classifier.layers.0.bias",
            "transformer.layers.0.self_attn.relative_attention_bias.weight"}
    for layer in range(config.n_layers):
        keys |= {f"transformer.layers.{layer}.{k}" for k in LAYER_MAP}
    return keys


def merge_lora(weight: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor, *, in_place: bool = False) -> torch.Tensor:
    """loralib's eval-time merge with lora_alpha = 1: W + (B @ A) * (1 / r), in float32, matmul then scale then add.

    `in_place` writes the sum into `weight` (the same operations, so the same values): loading a memory-mapped
    file, a new tensor would leave the file's pages of the unmerged weight in memory beside it."""
    scaling = 1.0 / lora_a.shape[0]
    delta = (lora_b @ lora_a).mul_(scaling)
    return weight.add_(delta) if in_place else weight + delta


def convert_official_state(state: dict, config, codec, source) -> dict[str, torch.Tensor]:
    """Official key/value layout -> ours, validating that no key is missing or unknown.

    It consumes `state`: LoRA merges and the classifier's reordering are written into its tensors (for a
    memory-mapped file, into private copy-on-write pages), so loading never holds a weight twice."""
    required = official_keys(config)
    lora = {f"transformer.layers.{i}.{p}.lora_{ab}" for i in range(config.n_layers) for p in LORA_PROJECTIONS for ab in "AB"}
    missing = sorted(required - state.keys(), key=_natural)
    if missing:
        raise CheckpointError(f"{source}: missing key '{missing[0]}'" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    unexpected = sorted(state.keys() - required - lora, key=_natural)
    if unexpected:
        raise CheckpointError(f"{source}: unexpected key '{unexpected[0]}' (not part of a VampNet checkpoint of this config)")

    K, C, V = config.n_codebooks, config.n_conditioning_codebooks, config.vocab_size
    P = K - C
    f32 = lambda k: state[k].float()
    out: dict[str, torch.Tensor] = {}
    out["embedding.codebooks"] = torch.stack([codec.quantizer.quantizers[i].codebook.weight.detach().float()
                                              for i in range(min(K, codec.n_codebooks))])
    out["embedding.mask_latent"] = f32("embedding.special.MASK")
    w = f32("embedding.out_proj.weight")
    out["embedding.proj.weight"] = w.reshape(w.shape[0], -1) if w.dim() == 3 else w
    out["embedding.proj.bias"] = f32("embedding.out_proj.bias")
    out["rel_bias.table.weight"] = f32("transformer.layers.0.self_attn.relative_attention_bias.weight")
    for i in range(config.n_layers):
        pre = f"transformer.layers.{i}."
        for theirs, ours in LAYER_MAP.items():
            weight = f32(pre + theirs)
            proj = theirs.removesuffix(".weight")
            a, b = state.get(f"{pre}{proj}.lora_A"), state.get(f"{pre}{proj}.lora_B")
            if (a is None) != (b is None):
                raise CheckpointError(f"{source}: '{pre}{proj}' has only one of lora_A / lora_B")
            if a is not None:
                if a.shape[1] != weight.shape[1] or b.shape[0] != weight.shape[0] or a.shape[0] != b.shape[1]:
                    raise CheckpointError(f"{source}: LoRA factors of '{pre}{proj}' have shapes {tuple(a.shape)} / {tuple(b.shape)} "
                                          f"that do not fit the weight {tuple(weight.shape)}")
                weight = merge_lora(weight, a.float(), b.float(), in_place=True)
            out[f"layers.{i}.{ours}"] = weight
    out["norm.weight"] = f32("transformer.norm.weight")
    # classifier channel ch = token * P + codebook  ->  our row codebook * V + token
    v, g, bias = f32("classifier.layers.0.weight_v"), f32("classifier.layers.0.weight_g"), f32("classifier.layers.0.bias")
    if v.shape[0] != V * P:
        raise CheckpointError(f"{source}: key 'classifier.layers.0.weight_v' has {v.shape[0]} outputs, the config needs {V * P}")
    order = torch.arange(V * P).view(V, P).t().reshape(-1)
    for ours, t in (("weight_v", v.reshape(V * P, -1)), ("weight_g", g.reshape(V * P, 1)), ("bias", bias)):
        out[f"classifier.{ours}"] = t.copy_(t[order])  # in place, as the merges above
    return out


def _natural(key: str):
    return [int(t) if t.isdigit() else t for t in key.replace(".", " . ").split()]
