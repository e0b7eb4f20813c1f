"""Create fixture set B (tests/fixtures_b/) with ONLY the literal reference implementation
(tests/reference/literal_reference.py, validated bit-for-bit against fixture set A made by the
ORIGINAL code).  Same file layout / names as set A, different sizes and configuration.

Usage: python tests/reference/make_fixtures_b.py [OUT_DIR]      (deterministic; ~10 s on CPU)
"""
import json
import math
import pathlib
import sys

import numpy as np
import torch

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import literal_reference as L  # noqa: E402
import check_literal_on_set_a as CHK  # noqa: E402

OUT = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parent / "fixtures_b"
SET_A = HERE.parent / "fixtures_a"
SEED = 4321

CODEC_KW = {"encoder_dim": 6, "encoder_rates": [4, 4, 4, 8], "decoder_dim": 48, "decoder_rates": [8, 4, 4, 4],
            "n_codebooks": 5, "codebook_size": 256, "codebook_dim": 4, "quantizer_dropout": False,
            "sample_rate": 32000}
_VN_COMMON = {"r_cond_dim": 0, "latent_dim": 4, "vocab_size": 256, "flash_attn": False, "noise_mode": "mask",
              "dropout": 0.1, "ctrl_dims": None, "cfg_dropout_prob": 0.2, "cond_dim": 0}
COARSE_KW = {"n_heads": 3, "n_layers": 3, "r_cond_dim": 0, "n_codebooks": 3, "n_conditioning_codebooks": 0,
             "latent_dim": 4, "embedding_dim": 48, "vocab_size": 256, "flash_attn": False, "noise_mode": "mask",
             "dropout": 0.1, "ctrl_dims": None, "cfg_dropout_prob": 0.2, "cond_dim": 0}
C2F_KW = {"n_heads": 2, "n_layers": 1, "r_cond_dim": 0, "n_codebooks": 5, "n_conditioning_codebooks": 3,
          "latent_dim": 4, "embedding_dim": 32, "vocab_size": 256, "flash_attn": False, "noise_mode": "mask",
          "dropout": 0.1, "ctrl_dims": None, "cfg_dropout_prob": 0.2, "cond_dim": 0}
LORA_R = 8
DURATION_S = 1.7
T_LOGITS = 150
T_GEN = 48
GEN = {"coarse": {"steps": 6, "periodic": 3, "upper_codebook_mask": 2}, "c2f": {"steps": 3, "periodic": 0}}


# ------------------------------------------------------------------------------------------------ init
def _u(shape, bound, g):
    return (torch.rand(shape, generator=g) * 2 - 1) * bound


def init_wn(mod, g):
    """v ~ U(+-1/sqrt(fan_in)), g = ||v|| * U(0.7, 1.3) (randomised, != ||v||), bias ~ U(+-0.05/sqrt(fan_in))."""
    v = mod.weight_v
    fan_in = v.shape[1] * v.shape[2]
    with torch.no_grad():
        v.copy_(_u(v.shape, 1 / math.sqrt(fan_in), g))
        norm = torch.norm_except_dim(v, 2, 0)
        mod.weight_g.copy_(norm * (0.7 + 0.6 * torch.rand(norm.shape, generator=g)))
        mod.bias.copy_(_u(mod.bias.shape, 0.05 / math.sqrt(fan_in), g))


def build_codec(g):
    codec = L.LAC(**CODEC_KW)
    for m in codec.modules():
        if isinstance(m, (L.WNConv1d, L.WNConvTranspose1d)):
            init_wn(m, g)
        elif isinstance(m, L.Snake1d):
            with torch.no_grad():
                m.alpha.copy_(0.5 + torch.rand(m.alpha.shape, generator=g))  # alpha in [0.5, 1.5)
        elif isinstance(m, torch.nn.Embedding):
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=g))
    return codec.eval()


def build_vampnet(kw, lora_r, g):
    model = L.VampNet(**kw, lora_r=lora_r)
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, L.LoRALinear):
                fan_in = m.weight.shape[1]
                m.weight.copy_(_u(m.weight.shape, 1 / math.sqrt(fan_in), g))
                if hasattr(m, "lora_A"):
                    m.lora_A.copy_(_u(m.lora_A.shape, 1 / math.sqrt(fan_in), g))
                    m.lora_B.copy_(0.05 * torch.randn(m.lora_B.shape, generator=g))  # non-zero
            elif isinstance(m, L.RMSNorm):
                m.weight.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=g))
            elif isinstance(m, L.WNConv1d):
                init_wn(m, g)
            elif isinstance(m, torch.nn.Embedding):  # relative_attention_bias [32, H]
                m.weight.copy_(torch.randn(m.weight.shape, generator=g))
            elif isinstance(m, torch.nn.Conv1d):  # embedding.out_proj (plain conv)
                fan_in = m.weight.shape[1] * m.weight.shape[2]
                m.weight.copy_(_u(m.weight.shape, 1 / math.sqrt(fan_in), g))
                m.bias.copy_(_u(m.bias.shape, 1 / math.sqrt(fan_in), g))
        model.embedding.special["MASK"].copy_(torch.randn(model.embedding.special["MASK"].shape, generator=g))
    return model


# ------------------------------------------------------------------------------------------------ data
def make_audio(sr):
    n = int(round(DURATION_S * sr))  # 54400, NOT a multiple of hop 512
    t = np.arange(n, dtype=np.float64) / sr
    rng = np.random.RandomState(SEED)
    x = 0.30 * np.sin(2 * np.pi * 220.0 * t) + 0.15 * np.sin(2 * np.pi * 659.25 * t + 0.3)
    x *= 0.6 + 0.4 * np.sin(2 * np.pi * 1.3 * t)  # slow envelope
    f0, f1 = 150.0, 6000.0  # exponential chirp
    k = (f1 / f0) ** (1 / DURATION_S)
    x += 0.2 * np.sin(2 * np.pi * f0 * (k ** t - 1) / np.log(k))
    burst = (t >= 0.55) & (t < 0.85)  # noise burst with raised-cosine window
    win = np.zeros_like(t)
    win[burst] = np.sin(np.pi * (t[burst] - 0.55) / 0.30) ** 2
    x += 0.35 * win * rng.uniform(-1, 1, size=n)
    return torch.from_numpy(x.astype(np.float32))[None, None, :]


def make_codes_in(codes, K, C, V, T, rng):
    """codec codes tiled in time to T, MASK (=V) at random positions (p=0.5), never in conditioning
    codebooks or in timesteps 0..2, always in every non-conditioning codebook at t = T//2."""
    reps = int(math.ceil(T / codes.shape[-1]))
    z = codes[:, :K, :].repeat(1, 1, reps)[:, :, :T].clone()
    m = torch.from_numpy(rng.rand(1, K, T) < 0.5)
    m[:, :C, :] = False
    m[:, :, :3] = False
    m[:, C:, T // 2] = True
    return z.masked_fill(m, V)


def gen_mask(z, part, C):
    mask = torch.ones_like(z)
    p = GEN[part]["periodic"]
    if p > 0:  # periodic_mask(z, p, width 1, no roll)
        for t in range(z.shape[-1]):
            if t % p == 0:
                mask[:, :, t] = 0
    if "upper_codebook_mask" in GEN[part]:  # codebook_mask(mask, k): m[:, k:] = 1
        mask[:, GEN[part]["upper_codebook_mask"]:, :] = 1
    mask[:, :C, :] = 0  # codebook_unmask(mask, C)
    return mask


# --------------------------------------------------------------------------------------- diagnostics
def det_generate_margins(model, codec, start, mask, steps):
    """Re-run the deterministic generate loop while recording how close each decision was to a tie:
    argmax margin (top1 - top2 logit at still-masked positions) and the confidence gap at the
    re-masking cut (sorted[n] - sorted[n-1]).  Pure diagnostics (same ops as L.VampNet.generate)."""
    C, P, MASK = model.n_conditioning_codebooks, model.n_predict_codebooks, model.mask_token
    z = start
    z_masked = z.masked_fill(mask.bool(), MASK)
    n0 = (z_masked == MASK).sum()
    arg_m, cut_m, counts = [], [], []
    for i in range(steps):
        r = torch.tensor((i + 1) / steps).repeat(1)
        logits = model(model.embedding.from_codes(z_masked, codec)).permute(0, 2, 1)
        tok, p = L.sample_from_logits(logits, sample=False)
        zf = L.codebook_flatten(z_masked[:, C:])
        m = (zf == MASK)
        top2 = logits.topk(2, dim=-1).values
        arg_m.append(float((top2[..., 0] - top2[..., 1])[m].min()))
        sampled = torch.where(m, tok, zf)
        conf = torch.log(torch.where(m, p, torch.inf))
        n = torch.floor(L._gamma(r) * n0).unsqueeze(1).long()
        if i != steps - 1:
            n = torch.maximum(torch.tensor(1), torch.minimum(m.int().sum(-1, keepdim=True) - 1, n))
        s = conf.sort(dim=-1).values[0]
        k = int(n[0, 0])
        counts.append(k)
        if 1 <= k < s.numel() and torch.isfinite(s[k]):
            cut_m.append(float(s[k] - s[k - 1]))
        newm = conf < s[k]
        z_masked = torch.cat((z[:, :C], L.codebook_unflatten(torch.where(newm, MASK, sampled), P)), dim=1)
    return {"min_argmax_logit_margin": min(arg_m), "min_cut_confidence_gap": min(cut_m) if cut_m else None,
            "n_remasked_per_step": counts}


def sha_npy(a):
    import hashlib
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------------ main
def main():
    torch.set_grad_enabled(False)
    OUT.mkdir(parents=True, exist_ok=True)
    # 0. validate the literal implementation on set A first (refuse to write set B if it fails)
    res_a = CHK.run(SET_A)
    assert all(v["ok"] for v in res_a.values()), res_a
    val_a = {k: ({"max_abs_err": v["max_abs_err"], "bit_exact": v["bit_exact"]} if v["kind"] == "float"
                 else {"frac_equal": v["frac_equal"]}) for k, v in res_a.items()}

    torch.manual_seed(SEED)
    np.random.seed(SEED)
    g = torch.Generator().manual_seed(SEED)
    files = {}

    def save(name, arr, desc):
        arr = arr.detach().cpu().numpy() if torch.is_tensor(arr) else arr
        np.save(OUT / name, arr)
        files[name] = {"shape": list(arr.shape), "dtype": str(arr.dtype), "desc": desc}
        return arr

    # 1. codec
    codec = build_codec(g)
    L.save_container(codec, CODEC_KW, OUT / "codec.pth")
    codec = L.load_codec(OUT / "codec.pth")  # reload through the loader (round trip)
    sr = CODEC_KW["sample_rate"]
    audio = make_audio(sr)
    save("audio_in.npy", audio, f"input waveform [batch=1, channels=1, samples], {DURATION_S} s at {sr} Hz "
         f"({audio.shape[-1]} samples, not a multiple of hop {codec.hop_length} -> right-padded by encode)")
    enc = codec.encode(audio, sr)
    codes = enc["codes"]
    save("codes.npy", codes, "codec.encode(audio, sr)['codes']  [1, n_codebooks, T]")
    save("encoder_out.npy", codec.encoder(codec.preprocess(audio, sr)),
         "codec.encoder(codec.preprocess(audio, sr)) continuous encoder output [1, enc_dim, T]")
    save("z_q.npy", enc["z"], "codec.encode(...)['z'] quantized sum of out_proj(codebook vectors) [1, enc_dim, T] "
         "(straight-through expression z_e + (z_q - z_e) evaluated literally)")
    z_fc = codec.quantizer.from_codes(codes)[0]
    dec = codec.decode(z_fc)["audio"]
    save("audio_decoded.npy", dec, "codec.decode(codec.quantizer.from_codes(codes)[0])['audio'] (no length crop)")
    # VampNet-style decode path check: from_latents(raw codebook vectors) recovers the codes
    lat_raw = torch.cat([codec.quantizer.quantizers[i].decode_code(codes[:, i]) for i in range(codes.shape[1])], 1)
    zl, _, codes_l = codec.quantizer.from_latents(lat_raw)
    from_lat_ok = bool(torch.equal(codes_l, codes))
    from_lat_diff = float((zl - z_fc).abs().max())
    dec_paths_diff = float((codec.decode(zl)["audio"] - dec).abs().max())

    # 2. transformers
    rng = np.random.RandomState(SEED + 1)
    parts = {"coarse": (COARSE_KW, LORA_R), "c2f": (C2F_KW, None)}
    gen_summary, margins, lora_effect, params, gamma64_diff = {}, {}, {}, {}, {}
    for part, (kw, lora_r) in parts.items():
        model = build_vampnet(kw, lora_r, g)
        params[part] = sum(p.numel() for p in model.parameters())
        L.save_container(model, kw, OUT / f"{part}.pth")
        model = L.load_vampnet(OUT / f"{part}.pth")
        K, C, V = kw["n_codebooks"], kw["n_conditioning_codebooks"], kw["vocab_size"]
        P = K - C
        codes_in = make_codes_in(codes, K, C, V, T_LOGITS, rng)
        save(f"{part}_codes_in.npy", codes_in, f"input token ids [1, {K}, {T_LOGITS}]; value {V} (= vocab_size) is "
             f"MASK; codec codes tiled in time")
        lat = model.embedding.from_codes(codes_in, codec)
        save(f"{part}_latents.npy", lat, f"model.embedding.from_codes(codes_in, codec) [1, {K}*latent_dim, {T_LOGITS}]")
        logits = model(lat)
        save(f"{part}_logits.npy", logits, f"model(latents) in eval mode [1, vocab, {T_LOGITS}*{P}] layout b p (t c)")
        # sensitivity: what the logits would be if LoRA were ignored (only meaningful when present)
        if lora_r:
            sd = torch.load(OUT / f"{part}.pth", map_location="cpu", weights_only=True)["state_dict"]
            plain = L.VampNet(**kw, lora_r=None)
            plain.load_state_dict({k: v for k, v in sd.items() if "lora_" not in k}, strict=True)
            lora_effect[part] = float((plain.eval()(lat) - logits).abs().max())

        start = codes[:, :K, :T_GEN].clone()
        mask = gen_mask(start, part, C)
        save(f"gen_{part}_start_codes.npy", start, "see GENERATE in README.txt")
        save(f"gen_{part}_mask.npy", mask, "see GENERATE in README.txt")
        S = GEN[part]["steps"]
        common = dict(codec=codec, time_steps=T_GEN, _sampling_steps=S, start_tokens=start, mask=mask,
                      temperature=1.0, typical_filtering=True, typical_mass=0.15, typical_min_tokens=64,
                      top_p=None, return_signal=False)
        det = model.generate(mask_temperature=0.0, seed=None, sample_cutoff=-1.0, **common)
        sto = model.generate(mask_temperature=10.5, seed=42, sample_cutoff=1.0, **common)
        save(f"gen_{part}_deterministic_out.npy", det, "see GENERATE in README.txt")
        save(f"gen_{part}_seed42_out.npy", sto, "see GENERATE in README.txt")
        margins[part] = det_generate_margins(model, codec, start, mask, S)
        # mutation check: a python-float64 gamma must give a different deterministic output
        g32 = L._gamma
        # (r recomputed as the python float (i+1)/S, everything in float64)
        L._gamma = lambda r, S=S: torch.tensor(
            [min(max(math.cos(math.pi * (round(float(x) * S) / S) / 2), 1e-10), 1.0) for x in r], dtype=torch.float64)
        try:
            det64 = model.generate(mask_temperature=0.0, seed=None, sample_cutoff=-1.0, **common)
            sto64 = model.generate(mask_temperature=10.5, seed=42, sample_cutoff=1.0, **common)
        finally:
            L._gamma = g32
        gamma64_diff[part] = {"deterministic": int((det64 != det).sum()), "seed42": int((sto64 != sto).sum())}
        nm = int((start.masked_fill(mask.bool(), V) == V).sum())
        gen_summary[part] = {"steps": S, "T": T_GEN, "periodic": GEN[part]["periodic"], "n_masked_at_start": nm,
                             "det_changed_vs_start": int((det != start).sum()),
                             "sto_changed_vs_start": int((sto != start).sum()),
                             "det_has_mask_token": bool((det == V).any()), "sto_has_mask_token": bool((sto == V).any()),
                             "det_unmasked_preserved": bool(torch.equal(det[mask == 0], start[mask == 0])),
                             "sto_unmasked_preserved": bool(torch.equal(sto[mask == 0], start[mask == 0]))}

    # 3. metadata
    wo = {}
    for f in ("codec.pth", "coarse.pth", "c2f.pth"):
        ck = torch.load(OUT / f, map_location="cpu", weights_only=True)
        wo[f] = f"ok: top-level keys {sorted(ck)}, metadata keys {sorted(ck['metadata'])}"
    sizes = {p.name: p.stat().st_size for p in sorted(OUT.iterdir()) if p.name not in ("info.json", "README.txt")}
    info = {
        "torch": torch.__version__,
        "seed": SEED,
        "produced_by": "tests/reference/make_fixtures_b.py using ONLY tests/reference/literal_reference.py "
                       "(literal re-implementation of the original numerics)",
        "literal_reference_vs_set_a": val_a,
        "files": files,
        "from_latents_recovers_codes": from_lat_ok,
        "from_latents_zq_max_abs_diff_vs_from_codes": from_lat_diff,
        "decode_paths_max_abs_diff": dec_paths_diff,
        "codec_kwargs": CODEC_KW, "codec_hop_length": codec.hop_length, "codec_enc_dim": codec.enc_dim,
        "codec_params": sum(p.numel() for p in codec.parameters()),
        "codec_n_frames": int(codes.shape[-1]), "codec_n_distinct_codes_per_codebook":
            [int(codes[0, i].unique().numel()) for i in range(codes.shape[1])],
        "coarse_kwargs": COARSE_KW, "coarse_params": params["coarse"], "coarse_mask_token": COARSE_KW["vocab_size"],
        "coarse_has_lora_keys": True, "coarse_lora_rank": LORA_R,
        "coarse_logits_max_abs_change_if_lora_ignored": lora_effect["coarse"],
        "c2f_kwargs": C2F_KW, "c2f_params": params["c2f"], "c2f_mask_token": C2F_KW["vocab_size"],
        "c2f_has_lora_keys": False,
        "weights_only_load": wo,
        "generate": gen_summary,
        "deterministic_generate_tie_margins": margins,
        "gamma_float64_mutation_n_tokens_diff": gamma64_diff,
        "file_sizes_bytes": sizes,
        "sha256_16": {n: sha_npy(np.load(OUT / n)) for n in files},
    }
    (OUT / "info.json").write_text(json.dumps(info, indent=1))
    write_readme(info, sizes)
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(json.dumps({"margins": margins, "generate": gen_summary, "lora_effect": lora_effect,
                      "distinct_codes": info["codec_n_distinct_codes_per_codebook"],
                      "audio_decoded_max": float(np.abs(np.load(OUT / 'audio_decoded.npy')).max()),
                      "total_bytes": total}, indent=1))


def write_readme(info, sizes):
    lines = [
        "VampNet / LAC fixtures: fixtures_b",
        "=" * 60,
        "Produced by tests/reference/make_fixtures_b.py using ONLY our literal re-implementation",
        "tests/reference/literal_reference.py (structured like the original code:",
        "weight norm recomputed with torch._weight_norm at every forward, literal straight-through VQ",
        "expression, relative bias computed by layer 0 in float32, explicit softmax / np.sqrt(d), GEGLU with",
        "torch.pow(g, 3.0), LoRA merged as W + (lora_B @ lora_A) * (1/r), float32 gamma in generate).",
        "NOT produced by the original code. Before writing, the script re-validates the literal",
        "implementation against fixture set A (made by the ORIGINAL code) and aborts on any mismatch.",
        f"Measured on set A with torch {info['torch']} (CPU):",
    ]
    for k, v in info["literal_reference_vs_set_a"].items():
        lines.append(f"  {k:32s} " + (f"max abs err {v['max_abs_err']:.1e} (bit-exact: {v['bit_exact']})"
                                       if "max_abs_err" in v else f"fraction equal {v['frac_equal']:.4f}"))
    lines += [
        "i.e. set A is reproduced bit-for-bit (every float array identical, every token identical).",
        "",
        "Purpose: a second fixture folder with a DIFFERENT configuration (sizes, rates, sample rate,",
        "heads, codebook counts, vocab 256, hop 512, LoRA present in coarse / absent in c2f, randomised",
        "weight_g / Snake alpha / biases / RMSNorm / relative-bias) so nothing can depend on set A's sizes.",
        f"Seeds: torch.manual_seed({SEED}), numpy seed {SEED}; all weights drawn from torch.Generator seeded {SEED};",
        f"codes_in masks from numpy RandomState({SEED + 1}); audio noise from numpy RandomState({SEED}).",
        "",
        "CONFIGS (these are also in each .pth under metadata['kwargs'])",
        f"  codec (LAC): {json.dumps(info['codec_kwargs'])}",
        f"     -> hop_length = prod(decoder_rates) = {info['codec_hop_length']}, enc_dim = {info['codec_enc_dim']}, "
        f"params = {info['codec_params']}",
        f"  coarse: {json.dumps(info['coarse_kwargs'])}",
        f"     -> params = {info['coarse_params']} (incl. LoRA A/B, rank {LORA_R}), MASK token id = "
        f"{info['coarse_mask_token']}",
        f"  c2f: {json.dumps(info['c2f_kwargs'])}",
        f"     -> params = {info['c2f_params']} (no LoRA keys in the file), MASK token id = {info['c2f_mask_token']}",
        "",
        "WEIGHTS (random; all float32)",
        "  every weight-normed conv: weight_v ~ U(+-1/sqrt(fan_in)), weight_g = ||v|| * U(0.7, 1.3) (so g != ||v||),",
        "    bias ~ U(+-0.05/sqrt(fan_in)); Snake alpha ~ U(0.5, 1.5); codebooks ~ N(0, 1).",
        "  VampNet: Linear weights ~ U(+-1/sqrt(fan_in)); coarse lora_A ~ U(+-1/sqrt(fan_in)), lora_B ~ N(0, 0.05^2)",
        "    for w_qs, w_vs, fc, w_1, w_2 of every layer (w_ks has none); RMSNorm weights 1 + 0.1*N(0,1);",
        "    relative_attention_bias (layer 0 only) ~ N(0,1); special MASK ~ N(0,1); classifier as WN conv above.",
        "  coarse.pth stores the UN-merged weight plus lora_A/lora_B; a correct loader uses W + (B@A)/8.",
        f"    (ignoring LoRA changes coarse_logits by up to {info['coarse_logits_max_abs_change_if_lora_ignored']:.2e})",
        "  c2f.pth has NO lora keys at all: effective weight = stored weight.",
        "",
        "FILES",
    ]
    for name in sorted(list(info["files"]) + ["codec.pth", "coarse.pth", "c2f.pth", "info.json"]):
        if name in info["files"]:
            f = info["files"][name]
            lines.append(f"{name:34s} {str(f['shape']):18s} {f['dtype']:7s}  {f['desc']}")
        elif name == "codec.pth":
            lines.append(f"{name:34s} {'':18s} {'':7s}  LAC checkpoint: torch.save({{'state_dict': ..., 'metadata': "
                         f"{{'kwargs': {{...}}}}}}) (official container)")
        elif name == "info.json":
            lines.append(f"{name:34s} {'':18s} {'':7s}  machine-readable summary of everything here")
        else:
            lines.append(f"{name:34s} {'':18s} {'':7s}  VampNet {name[:-4]} checkpoint, same container")
    lines += [
        "",
        "weights_only check: torch.load(path, map_location='cpu', weights_only=True)",
    ] + [f"  {k}: {v}" for k, v in info["weights_only_load"].items()] + [
        "",
        "HOW THE OUTPUTS WERE PRODUCED",
        "1. Codec: build, save, reload with the literal loader, eval. audio_in: deterministic 1.7 s mix at 32 kHz",
        "   (220 Hz + 659.25 Hz sines with a 1.3 Hz amplitude envelope, exponential chirp 150 Hz -> 6 kHz, raised-",
        "   cosine-windowed uniform noise burst 0.55-0.85 s); 54400 samples = 106.25 hops -> encode right-pads to",
        "   107*512 = 54784. codes / z_q = encode(audio, 32000) ['codes'] / ['z']; encoder_out = encoder(padded audio);",
        "   audio_decoded = decode(quantizer.from_codes(codes)[0])['audio'] (no crop; 107*512 samples).",
        f"   from_latents(raw codebook vectors) recovers the codes: {info['from_latents_recovers_codes']}; "
        f"audio via that path differs by max {info['decode_paths_max_abs_diff']}.",
        "2. Transformers: build, save, reload (LoRA merged where present), eval.",
        f"   <part>_codes_in: codec codes' first n_codebooks rows tiled in time to T = {T_LOGITS} (relative distances",
        "   up to 149, so the +-91..+-149 buckets 15/31 are used), then MASK (= vocab_size) at random positions (p=0.5),",
        "   never in conditioning codebooks, never in timesteps 0..2, and in every non-conditioning codebook at T//2.",
        "   <part>_latents = embedding.from_codes(codes_in, codec); <part>_logits = model(latents); layout",
        "   [1, vocab, T*P], last-axis index j = t*P + c (c-th predicted codebook).",
        "GENERATE",
        f"   gen_<part>_start_codes: codes[:, :n_codebooks, :{T_GEN}]. gen_<part>_mask: coarse = periodic_mask(z, 3,",
        "   width 1, no roll) then codebook_mask(mask, 2) (codebook 2 fully masked); c2f = full mask with",
        "   codebook_unmask(mask, 3).",
        "   gen_<part>_deterministic_out = generate(codec, time_steps=48, _sampling_steps=S, start_tokens=z, mask=mask,",
        "   temperature=1.0, mask_temperature=0.0, typical_filtering=True, typical_mass=0.15, typical_min_tokens=64,",
        "   top_p=None, seed=None, sample_cutoff=-1.0): argmax at every step, zero gumbel weight (S = 6 coarse, 3 c2f).",
        "   gen_<part>_seed42_out: same but mask_temperature=10.5, seed=42, sample_cutoff=1.0 (multinomial sampling),",
        "   torch's GLOBAL CPU RNG consumed per step as: multinomial over [T*P, vocab] rows, then uniform_(1e-20, 1) of",
        "   shape [1, T*P]; float32 gamma; N0 summed over the batch; typical filtering is a no-op (as the original).",
        f"   summary: {json.dumps(info['generate'])}",
        f"   tie margins of the deterministic runs (min top1-top2 logit gap at masked positions; min confidence gap",
        f"   at the re-mask cut): {json.dumps(info['deterministic_generate_tie_margins'])}",
        "   NB float32 gamma matters: coarse N0 = 112, step 3 (r = 4/6): float32 gives floor(55.99999) = 55 re-masked",
        "   tokens, python-float64 cos would give 56; c2f N0 = 96, step 1 (r = 2/3): float32 47, float64 48.",
        "   Number of output tokens that change when gamma is computed in python float64 instead:",
        f"   {json.dumps(info['gamma_float64_mutation_n_tokens_diff'])}",
    ]
    (OUT / "README.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
