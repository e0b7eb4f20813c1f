"""Run the literal reference (literal_reference.py) on a fixture folder (default: fixture set A,
produced by the ORIGINAL code) and report max abs error / equality for every array.

Usage: python tests/reference/check_literal_on_set_a.py [FIXTURE_DIR] [--json OUT.json]
Exit 0 iff codes / generated tokens are identical and every float array is within 1e-5 abs.
"""
import json
import pathlib
import sys

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import literal_reference as L  # noqa: E402

GEN_STEPS = {"coarse": 6, "c2f": 3}


def run(d):
    d = pathlib.Path(d)
    info = json.loads((d / "info.json").read_text())
    res = {}

    def cmp(name, got, ref_file=None):
        ref = np.load(d / (ref_file or f"{name}.npy"))
        got = got.detach().cpu().numpy() if torch.is_tensor(got) else np.asarray(got)
        if got.shape != ref.shape:
            res[name] = {"shape_mismatch": [list(got.shape), list(ref.shape)], "ok": False}
            return
        if np.issubdtype(ref.dtype, np.integer):
            eq = float((got == ref).mean())
            res[name] = {"kind": "int", "frac_equal": eq, "n_diff": int((got != ref).sum()), "ok": eq == 1.0}
        else:
            err = float(np.abs(got.astype(np.float64) - ref.astype(np.float64)).max())
            res[name] = {"kind": "float", "max_abs_err": err, "bit_exact": bool(np.array_equal(got, ref)),
                         "ref_max_abs": float(np.abs(ref).max()), "ok": err <= 1e-5}

    torch.set_grad_enabled(False)
    codec = L.load_codec(d / "codec.pth")
    sr = int(info["codec_kwargs"]["sample_rate"]) if "codec_kwargs" in info else codec.sample_rate
    audio = torch.from_numpy(np.load(d / "audio_in.npy"))
    x = codec.preprocess(audio, sr)
    cmp("encoder_out", codec.encoder(x))
    enc = codec.encode(audio, sr)
    cmp("z_q", enc["z"])
    cmp("codes", enc["codes"])
    ref_codes = torch.from_numpy(np.load(d / "codes.npy"))
    z = codec.quantizer.from_codes(ref_codes)[0]
    cmp("audio_decoded", codec.decode(z)["audio"])

    for part in ("coarse", "c2f"):
        model = L.load_vampnet(d / f"{part}.pth")
        codes_in = torch.from_numpy(np.load(d / f"{part}_codes_in.npy"))
        lat = model.embedding.from_codes(codes_in, codec)
        cmp(f"{part}_latents", lat)
        cmp(f"{part}_logits", model(lat))
        start = torch.from_numpy(np.load(d / f"gen_{part}_start_codes.npy"))
        mask = torch.from_numpy(np.load(d / f"gen_{part}_mask.npy"))
        common = dict(codec=codec, time_steps=start.shape[-1], _sampling_steps=GEN_STEPS[part],
                      start_tokens=start, mask=mask, temperature=1.0, typical_filtering=True,
                      typical_mass=0.15, typical_min_tokens=64, top_p=None, return_signal=False)
        out = model.generate(mask_temperature=0.0, seed=None, sample_cutoff=-1.0, **common)
        cmp(f"gen_{part}_deterministic_out", out)
        out = model.generate(mask_temperature=10.5, seed=42, sample_cutoff=1.0, **common)
        cmp(f"gen_{part}_seed42_out", out)
    return res


if __name__ == "__main__":
    args = [a for a in sys.argv[1:]]
    out_json = None
    if "--json" in args:
        i = args.index("--json"); out_json = args[i + 1]; del args[i:i + 2]
    d = args[0] if args else str(pathlib.Path(__file__).resolve().parents[1] / "fixtures_a")
    res = run(d)
    for k, v in res.items():
        if v.get("kind") == "int":
            s = f"frac_equal={v['frac_equal']:.6f} n_diff={v['n_diff']}"
        elif v.get("kind") == "float":
            s = f"max_abs_err={v['max_abs_err']:.3e} bit_exact={v['bit_exact']} (ref max |x| {v['ref_max_abs']:.3g})"
        else:
            s = str(v)
        print(f"{'ok  ' if v['ok'] else 'FAIL'} {k:32s} {s}")
    print(f"torch {torch.__version__}; {sum(v['ok'] for v in res.values())}/{len(res)} arrays within tolerance")
    if out_json:
        pathlib.Path(out_json).write_text(json.dumps(res, indent=1))
    sys.exit(0 if all(v["ok"] for v in res.values()) else 1)
