"""Training on tiny synthetic data: tokenizer behaviour, loss going down, overfitting one excerpt, exact resume,
and two-process DDP equal to one process with the same global batch."""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import SET_A

from vampnet.errors import OptionError
from vampnet.splits import split_of
from vampnet.train.config import MODEL_KEYS, TrainConfig, load_config
from vampnet.train.data import TokenDataset, TokenizeConfig, read_index, tokenize
from vampnet.train.masked import noam_lr, train

SR = 44100


def write_tones(folder: Path, n: int = 6, seconds: float = 3.2):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    t = np.arange(int(SR * seconds)) / SR
    for i in range(n):
        x = 0.3 * np.sin(2 * np.pi * 110 * 2 ** (i / 4) * t) * (0.5 + 0.5 * np.sin(2 * np.pi * (1 + i) * t))
        sf.write(folder / f"tone{i}.wav", (x + 0.02 * rng.standard_normal(len(t))).astype(np.float32), SR)


@pytest.fixture(scope="module")
def codec():
    from vampnet import Codec

    return Codec.load(SET_A / "codec.pth")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, codec):
    root = tmp_path_factory.mktemp("data")
    write_tones(root / "audio" / "tones")
    sf.write(root / "audio" / "tones" / "silence.wav", np.zeros(SR * 2, dtype=np.float32), SR)
    (root / "audio" / "tones" / "broken.wav").write_bytes(b"RIFFjunk")
    tokenize([root / "audio"], root / "ds", codec, TokenizeConfig(excerpt_s=1.5, val_fraction=0.3),
             codec_path=str(SET_A / "codec.pth"), progress=False)
    return root


def tiny(dataset, out, **kw) -> TrainConfig:
    """A tiny run; keyword arguments are TrainConfig's, or the model's (n_layers=1) to change the architecture."""
    model = dict(embedding_dim=32, n_heads=2, n_layers=2, dropout=0.0)
    model.update({k: kw.pop(k) for k in list(kw) if k in MODEL_KEYS})
    base = dict(dataset=str(dataset / "ds"), output=str(out), model=model, window_s=0.6, batch_size=4, max_steps=20,
                warmup_steps=5, lr_factor=1.0, val_every=10, val_windows=8, save_every=0,
                bf16=False)  # float32 on every CPU: the exactness checks compare runs bit for bit

    base.update(kw)
    return TrainConfig(**base)


def test_tokenizer_skips_silence_and_unreadable_files_and_splits_by_file(dataset):
    rows = read_index(dataset / "ds")
    sources = {r["source"] for r in rows}
    assert sources == {f"audio/tones/tone{i}.wav" for i in range(6)}
    skipped = (dataset / "ds" / "skipped.csv").read_text()
    assert "silence.wav,silent" in skipped and "broken.wav" in skipped
    for r in rows:
        assert r["split"] == split_of(r["source"], 0.3)
        assert r["loudness"] > -40
    assert {r["split"] for r in rows} == {"train", "val"}
    tokens = np.load(dataset / "ds" / rows[0]["tokens_file"], mmap_mode="r")
    assert tokens.dtype == np.int16 and tokens.shape[0] == 6


def test_tokenizer_is_deterministic_and_resumes(dataset, codec, tmp_path):
    again = tmp_path / "ds"
    tokenize([dataset / "audio"], again, codec, TokenizeConfig(excerpt_s=1.5, val_fraction=0.3), progress=False)
    a, b = read_index(dataset / "ds"), read_index(again)
    assert a == b
    for r in a:
        assert np.array_equal(np.load(dataset / "ds" / r["tokens_file"]), np.load(again / r["tokens_file"]))
    stats = tokenize([dataset / "audio"], again, codec, TokenizeConfig(excerpt_s=1.5, val_fraction=0.3), progress=False)
    assert stats["encoded"] == 0 and stats["already_done"] == stats["files"]


def test_dataset_windows_are_slices_of_the_stored_tokens(dataset):
    ds = TokenDataset(dataset / "ds", "train", 20, 4)
    row = ds.rows[0]
    stored = np.load(dataset / "ds" / row["tokens_file"])
    assert np.array_equal(ds.batch([3]).numpy()[0], stored[:4, row["offset"] + 3: row["offset"] + 23])
    g = torch.Generator().manual_seed(0)
    assert ds.batch(ds.sample_indices(g, 5)).shape == (5, 4, 20)


def test_noam_schedule_peaks_at_warmup():
    assert noam_lr(10000, 1280, 2.0, 10000) == pytest.approx(5.59e-4, rel=1e-3)
    assert noam_lr(5000, 1280, 2.0, 10000) < noam_lr(10000, 1280, 2.0, 10000) > noam_lr(20000, 1280, 2.0, 10000)


def _log(out: Path):
    import csv
    with open(out / "log.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("kind", ["coarse", "c2f"])
def test_loss_decreases(dataset, tmp_path, kind):
    extra = {} if kind == "coarse" else dict(n_codebooks=6, n_conditioning_codebooks=4)
    train(tiny(dataset, tmp_path / kind, max_steps=30, **extra), progress=False)
    losses = [float(r["train_loss"]) for r in _log(tmp_path / kind)]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5


def test_a_run_with_the_loudness_control_learns_to_use_it(dataset, tmp_path):
    from vampnet import MaskedTransformer

    cfg = tiny(dataset, tmp_path / "ctl", max_steps=30, controls=["loudness"])
    assert cfg.model.n_controls == 1 and TrainConfig(**cfg.to_dict()) == cfg
    train(cfg, progress=False)
    losses = [float(r["train_loss"]) for r in _log(tmp_path / "ctl")]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5
    model = MaskedTransformer.load(tmp_path / "ctl" / "latest" / "model.safetensors")
    assert model.n_controls == 1
    assert model.control.proj.weight.abs().max() > 1e-3  # started at zero: the gradient reached it
    with pytest.raises(OptionError, match="n_controls"):
        tiny(dataset, tmp_path / "x", n_controls=1)


def test_control_dropout_drops_whole_examples_and_spans_at_the_set_rates():
    from vampnet.train.masked import control_dropout_mask

    present = control_dropout_mask(4000, 50, 0.3, 0.5, torch.Generator().manual_seed(0))
    none = ~present.any(-1)
    assert abs(none.float().mean() - 0.3) < 0.03
    kept = present[~none]
    partial = ~kept.all(-1)
    assert abs(partial.float().mean() - 0.5) < 0.04
    gaps = (~kept[partial]).sum(-1)
    assert gaps.min() >= 1 and gaps.max() <= 25
    runs = (kept[partial].int().diff(dim=-1) != 0).sum(-1)  # one span: at most two edges
    assert runs.max() <= 2


def test_resume_equals_uninterrupted_run(dataset, tmp_path):
    from vampnet import MaskedTransformer

    cfg = tiny(dataset, tmp_path / "full", max_steps=12, val_every=6, dropout=0.1)
    train(cfg, progress=False)
    half = cfg.replace(output=str(tmp_path / "half"), max_steps=6)
    train(half, progress=False)
    train(half.replace(max_steps=12), resume=True, progress=False)
    a = MaskedTransformer.load(tmp_path / "full" / "latest" / "model.safetensors").state_dict()
    b = MaskedTransformer.load(tmp_path / "half" / "latest" / "model.safetensors").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "half" / "latest" / "trainer.json").read_text())["step"] == 12


def test_time_limit_stops_early_saves_latest_and_resumes(dataset, tmp_path):
    final = train(tiny(dataset, tmp_path / "run", max_steps=500, val_every=200, time_limit_s=1e-9), progress=False)
    assert final["step"] == 1 and "val_loss" in final
    assert json.loads((tmp_path / "run" / "latest" / "trainer.json").read_text())["step"] == 1
    final = train(tiny(dataset, tmp_path / "run", max_steps=3), resume=True, progress=False)
    assert final["step"] == 3


def test_save_every_s_saves_latest_on_a_clock_without_validating(dataset, tmp_path, monkeypatch):
    from vampnet.train.loop import RunLoop

    saved, original = [], RunLoop._save
    monkeypatch.setattr(RunLoop, "_save", lambda self, row: (saved.append((self.step, "val_loss" in row)), original(self, row)))
    train(tiny(dataset, tmp_path / "plain", max_steps=3, val_every=1000, save_every=0), progress=False)
    assert saved == [(3, True)]  # without a clock: only the last step's validation saves
    saved.clear()
    train(tiny(dataset, tmp_path / "timed", max_steps=3, val_every=1000, save_every=0, save_every_s=1e-9), progress=False)
    assert saved == [(1, False), (2, False), (3, True)]  # every step is past the (tiny) interval; no extra validation
    assert json.loads((tmp_path / "timed" / "latest" / "trainer.json").read_text())["step"] == 3
    with pytest.raises(OptionError, match="save_every_s"):
        tiny(dataset, tmp_path / "bad", save_every_s=-1)


def test_neighbour_targets_spread_over_the_nearest_codes_by_cosine():
    from vampnet.train.masked import nearest_neighbours, neighbour_targets

    angles = torch.arange(12) * (2 * math.pi / 12)  # 12 codes on a circle, 30 degrees apart, of different lengths
    book = (torch.stack([angles.cos(), angles.sin()], -1) * torch.linspace(0.5, 2, 12)[:, None])[None]
    q = neighbour_targets(book, 0.1)[0]
    assert torch.allclose(q.sum(-1), torch.ones(12))
    cos = torch.cos(torch.tensor([0.0, 30.0, 60.0]) * math.pi / 180)
    expected = torch.exp(cos / 0.1) / torch.exp(torch.cos(angles) / 0.1).sum()  # lengths do not count
    assert torch.allclose(q[3, [3, 4, 5]], expected, atol=1e-6) and torch.allclose(q[3, 2], q[3, 4])
    assert torch.equal(neighbour_targets(book, 1e-3)[0].argmax(-1), torch.arange(12))
    near = nearest_neighbours(book, 3)[0]
    assert torch.equal(near[:, 0], torch.arange(12)) and set(near[0, 1:].tolist()) == {1, 11}


def test_neighbour_smoothing_makes_a_near_miss_cheaper_than_a_far_one():
    from vampnet.train.masked import masked_token_loss, neighbour_targets

    angles = torch.arange(16) * (2 * math.pi / 16)
    book = torch.stack([angles.cos(), angles.sin()], -1)[None]  # one codebook of 16 codes on a circle
    neighbours = neighbour_targets(book, 0.1)

    class Fixed(torch.nn.Module):  # predicts token `guess` with confidence, whatever the input
        n_predict_codebooks, mask_token = 1, 16

        def __init__(self, guess):
            super().__init__()
            self.guess = guess

        def forward(self, codes):
            return torch.nn.functional.one_hot(torch.full(codes.shape, self.guess), 16).float() * 5

    codes, mask = torch.zeros(1, 1, 4, dtype=torch.long), torch.ones(1, 1, 4, dtype=torch.bool)  # truth: code 0
    cost = lambda guess, share: float(masked_token_loss(Fixed(guess), codes, mask, 0.0, neighbours=neighbours,
                                                        neighbour_smoothing=share)[0])
    assert cost(1, 0.0) == pytest.approx(cost(8, 0.0))  # plain cross-entropy: every miss costs the same
    assert cost(1, 0.5) < cost(2, 0.5) < cost(8, 0.5)  # the nearer the code, the cheaper the miss
    assert cost(0, 0.5) < cost(1, 0.5)  # and the true code is still the best answer
    plain = float(masked_token_loss(Fixed(1), codes, mask, 0.0)[0])
    assert cost(1, 0.0) == plain


def test_a_run_with_neighbour_smoothing_learns_and_logs_the_mass_near_the_truth(dataset, tmp_path):
    train(tiny(dataset, tmp_path / "n", max_steps=30, neighbour_smoothing=0.5), progress=False)
    rows = _log(tmp_path / "n")
    losses = [float(r["train_loss"]) for r in rows]
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.5
    near = [float(r["val_near32_lo"]) for r in rows if r["val_near32_lo"]]
    assert len(near) == 3 and near[-1] > near[0]  # validated at steps 10, 20 and 30
    with pytest.raises(OptionError, match="neighbour_smoothing"):
        tiny(dataset, tmp_path / "x", neighbour_smoothing=1.0)
    with pytest.raises(OptionError, match="neighbour_temperature"):
        tiny(dataset, tmp_path / "x", neighbour_temperature=0.0)


def test_a_resumed_run_upgrades_an_older_logs_columns_keeping_its_values(tmp_path):
    from vampnet.train.state import truncate_log

    log = tmp_path / "log.csv"
    log.write_text("step,loss,seconds\n1,5.0,0.5\n2,4.5,1.0\n3,4.0,1.5\n4,3.")  # step 4 was half written
    truncate_log(log, 2, ["step", "loss", "near", "seconds"])
    assert log.read_text() == "step,loss,near,seconds\n1,5.0,,0.5\n2,4.5,,1.0\n"
    truncate_log(log, 1, ["step", "loss", "near", "seconds"])  # same columns: rows dropped, header kept
    assert log.read_text() == "step,loss,near,seconds\n1,5.0,,0.5\n"


def test_masked_accuracy_is_perfect_for_an_oracle_and_repeatable(dataset, codec):
    from vampnet.train.data import TokenDataset
    from vampnet.train.masked import masked_accuracy

    data = TokenDataset(dataset / "ds", "train", 20, 4)

    class Oracle(torch.nn.Module):  # puts all its mass on the true token of each fixed window
        config = type("C", (), {"n_codebooks": 4, "n_conditioning_codebooks": 0})()
        n_predict_codebooks, mask_token = 4, 1024

        def __init__(self):
            super().__init__()
            self.truth = None
            self.embedding = type("E", (), {"codebooks": torch.randn(4, 1024, 8)})()

        def forward(self, codes):
            return torch.nn.functional.one_hot(self.truth, 1024).float() * 50

    oracle = Oracle()
    batch = data.batch
    data.batch = lambda idx: (setattr(oracle, "truth", batch(idx)) or oracle.truth)
    out = masked_accuracy(oracle, data, n_windows=8)
    assert out["val_acc1"] == 1.0 and out["val_acc25_hi"] == 1.0 and out["val_loss"] < 1e-6
    assert out["val_near32_lo"] == pytest.approx(1.0)  # the truth is the first of its own nearest codes
    assert out["val_tokens"] > 0
    assert masked_accuracy(oracle, data, n_windows=8) == out


@pytest.mark.slow
def test_coarse_overfits_one_excerpt(tmp_path, codec):
    """Memorising one excerpt: >= 90 % masked-token accuracy whenever some context is visible (r >= 0.5, i.e. up
    to 71 % masked). With nearly every token masked a model whose only position signal is relative cannot tell
    where in the excerpt a token sits, so the all-r figure is lower; it must still clearly beat chance."""
    audio_dir = tmp_path / "one"
    write_tones(audio_dir, n=1, seconds=0.25)
    tokenize([audio_dir], tmp_path / "ds", codec, TokenizeConfig(excerpt_s=0.25, min_excerpt_s=0.1, val_fraction=0.0),
             codec_path=str(SET_A / "codec.pth"), progress=False)
    # validate on the training excerpt itself: overfitting is the point
    index = (tmp_path / "ds" / "index.csv").read_text()
    (tmp_path / "ds" / "index.csv").write_text(index + index.splitlines()[1].replace(",train,", ",val,") + "\n")
    cfg = TrainConfig(dataset=str(tmp_path / "ds"), output=str(tmp_path / "run"),
                      model=dict(embedding_dim=64, n_heads=4, n_layers=2, dropout=0.0), window_s=0.25, batch_size=8,
                      max_steps=300, warmup_steps=20, lr_factor=0.3, val_every=100, val_windows=32, save_every=0,
                      label_smoothing=0.0)
    metrics = train(cfg, progress=False)
    assert metrics["val_acc1_hi"] >= 0.9, metrics
    assert metrics["val_acc1"] >= 0.6, metrics


@pytest.mark.slow
def test_two_process_ddp_matches_one_process_with_the_same_global_batch(dataset, tmp_path):
    from vampnet import MaskedTransformer

    cfg = tiny(dataset, tmp_path / "single", max_steps=6, val_every=3)
    train(cfg, progress=False)
    (tmp_path / "run.yaml").write_text(json.dumps({**cfg.to_dict(), "output": str(tmp_path / "ddp")}))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
                           "-m", "vampnet.cli", "train", "coarse", "--config", str(tmp_path / "run.yaml"), "-q"],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    final = json.loads((tmp_path / "ddp" / "final.json").read_text())
    assert final["max_rank_divergence"] == 0.0
    a = MaskedTransformer.load(tmp_path / "single" / "latest" / "model.safetensors").state_dict()
    b = MaskedTransformer.load(tmp_path / "ddp" / "latest" / "model.safetensors").state_dict()
    from vampnet import Codec
    from vampnet.train.masked import build_model, codec_codebooks
    init = build_model(cfg, codec_codebooks(Codec.load(SET_A / "codec.pth"))).state_dict()
    moved = max((a[k] - init[k]).abs().max().item() for k in a)
    differ = max((a[k] - b[k]).abs().max().item() for k in a)
    # gradients summed in another order differ by float rounding, which Adam's normalisation can enlarge a little
    assert moved > 1e-2 and differ < 1e-3 * moved, (moved, differ)


def test_config_file_errors_name_the_key(tmp_path):
    from vampnet import OptionError

    (tmp_path / "bad.yaml").write_text("dataset: x\noutput: y\nlearning_rate: 3\n")
    with pytest.raises(OptionError, match="learning_rate"):
        load_config(tmp_path / "bad.yaml")
    cfg = load_config(None, ["dataset=d", "output=o", "n_layers=3"], n_codebooks=4)
    assert cfg.model.n_layers == 3 and cfg.model.n_codebooks == 4 and cfg.dataset == "d"


def test_a_run_nests_the_model_config_and_reads_the_older_flat_spelling(tmp_path):
    from vampnet import OptionError, TransformerConfig

    (tmp_path / "run.yaml").write_text("model:\n  n_layers: 6\n  embedding_dim: 512\n  n_heads: 8\nbatch_size: 4\n")
    cfg = load_config(tmp_path / "run.yaml", ["model.dropout=0.2", "n_heads=16"], model={"n_codebooks": 4})
    assert isinstance(cfg.model, TransformerConfig)
    assert (cfg.model.n_layers, cfg.model.embedding_dim, cfg.model.n_heads, cfg.model.dropout, cfg.model.n_codebooks) \
        == (6, 512, 16, 0.2, 4)  # file, dotted and flat overrides merged key by key over the command's defaults
    assert cfg.to_dict()["model"]["n_layers"] == 6 and "n_layers" not in cfg.to_dict()
    assert TrainConfig(**cfg.to_dict()) == cfg  # what a run folder's config holds builds the same run
    with pytest.raises(OptionError, match="unknown model option 'depth'"):
        load_config(None, ["model.depth=3"])
    with pytest.raises(OptionError, match="model: embedding_dim 100 is not divisible by n_heads 3"):
        load_config(None, ["model.embedding_dim=100", "model.n_heads=3"])


def test_bf16_autocast_gradient_accumulation_and_previews(dataset, tmp_path):
    """The optional paths run: bf16 autocast, accumulation over micro-batches, audio previews of validation
    excerpts (input and vamp side by side), step-N checkpoints."""
    cfg = tiny(dataset, tmp_path / "opts", max_steps=4, val_every=2, bf16=True, grad_accum=2, preview_every=4,
               preview_steps=2, save_every=2)
    metrics = train(cfg, progress=False)
    assert np.isfinite(metrics["train_loss"]) and np.isfinite(metrics["val_loss"])
    previews = sorted(p.name for p in (tmp_path / "opts" / "previews" / "step-0000004").iterdir())
    assert previews == ["0-input.wav", "0-vamp.wav", "1-input.wav", "1-vamp.wav"]
    y, sr = sf.read(tmp_path / "opts" / "previews" / "step-0000004" / "0-vamp.wav")
    assert sr == 44100 and len(y) > 0 and np.isfinite(y).all()
    assert (tmp_path / "opts" / "step-0000002" / "model.safetensors").is_file()
    assert (tmp_path / "opts" / "best" / "trainer.json").is_file()


def test_gradient_accumulation_uses_every_micro_batch(dataset, tmp_path):
    """With grad_accum=2 the step's update also carries the second micro-batch's gradient, so it differs from
    the update of the first micro-batch alone (same seed, so the first micro-batch is the same items)."""
    from vampnet import MaskedTransformer

    one = tiny(dataset, tmp_path / "one", max_steps=1, val_every=1, batch_size=2, dropout=0.0)
    two = one.replace(output=str(tmp_path / "two"), grad_accum=2)
    train(one, progress=False)
    train(two, progress=False)
    a = MaskedTransformer.load(tmp_path / "one" / "latest" / "model.safetensors").state_dict()
    b = MaskedTransformer.load(tmp_path / "two" / "latest" / "model.safetensors").state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a)


@pytest.mark.skipif(not (shutil.which("g++") or shutil.which("c++")), reason="torch.compile's CPU code needs a C++ compiler")
def test_torch_compile_option_trains_as_the_eager_run(dataset, tmp_path, monkeypatch):
    """`compile` runs the model's training pass through torch.compile: the eager run's losses, validation and
    weights, to fused kernels' rounding (a small lr: Adam's first updates are about lr * sign(gradient))."""
    monkeypatch.setenv("VAMPNET_HOME", str(tmp_path / "home"))
    cfg = tiny(dataset, tmp_path / "eager", max_steps=4, val_every=2, lr_factor=0.01)
    train(cfg, progress=False)
    train(cfg.replace(output=str(tmp_path / "compiled"), compile=True), progress=False)
    eager, compiled = _log(tmp_path / "eager"), _log(tmp_path / "compiled")
    for key in ("train_loss", "val_loss", "val_acc1"):
        a = [float(r[key]) for r in eager if r[key]]
        b = [float(r[key]) for r in compiled if r[key]]
        assert len(a) == len(b) > 0 and np.allclose(a, b, rtol=1e-4, atol=1e-6), (key, a, b)
    from safetensors.torch import load_file
    a = load_file(tmp_path / "eager" / "latest" / "model.safetensors")
    b = load_file(tmp_path / "compiled" / "latest" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-5) for k in a)


def test_full_finetune_writes_full_weights(tmp_path, ours_dir):
    from vampnet import MaskedTransformer
    from vampnet.train.finetune import finetune

    write_tones(tmp_path / "audio", n=3, seconds=1.5)
    written = finetune([tmp_path / "audio"], ours_dir, tmp_path / "out", steps=2, full=True, batch_size=2,
                       excerpt_s=1.0, progress=False)
    base = MaskedTransformer.load(ours_dir / "coarse.safetensors").state_dict()
    tuned = MaskedTransformer.load(written["coarse"]).state_dict()
    assert written["coarse"].name == "coarse.safetensors"
    assert not torch.equal(base["layers.0.attn.k.weight"], tuned["layers.0.attn.k.weight"])  # not a LoRA target


def test_bf16_auto_autocasts_only_where_the_cpu_has_bf16_arithmetic(monkeypatch):
    from vampnet.train import loop
    from vampnet.train.codec_trainer import CodecTrainConfig

    assert TrainConfig().bf16 == "auto" and CodecTrainConfig().bf16 == "auto"
    for native in (True, False):
        monkeypatch.setattr(loop, "cpu_has_bf16", lambda native=native: native)
        assert loop.bf16_autocast_wanted("auto", "cpu") is native  # emulated bf16 (AVX2) would be slower than fp32
        assert loop.bf16_autocast_wanted(True, "cpu") is True and loop.bf16_autocast_wanted(False, "cpu") is False
    with pytest.raises(OptionError, match="bf16 must be true, false or auto"):
        TrainConfig(bf16="sometimes")
    with pytest.raises(OptionError, match="bf16 must be true, false or auto"):
        CodecTrainConfig(bf16=1)


def test_an_init_model_of_a_fine_tuned_codec_takes_the_new_codebooks_only_when_asked(tmp_path):
    """As a training run calls it: with the run's codec loaded too (the trainer passes the dataset's codec)."""
    from vampnet import Codec
    from vampnet.train.masked import build_model, codec_codebooks

    codec = Codec.load(SET_A / "codec.pth")
    codebooks = codec_codebooks(codec)
    small = dict(model=dict(n_codebooks=4, embedding_dim=32, n_heads=2, n_layers=1), dataset="unused", output="unused")
    base = build_model(TrainConfig(**small), codebooks, codec)
    base.save(tmp_path / "base.safetensors")
    with torch.no_grad():  # the codec fine-tuned: its codebook vectors moved 3 %
        for q in codec.quantizer.quantizers:
            q.codebook.weight.mul_(1 + 0.03 * torch.randn(q.codebook.weight.shape, generator=torch.Generator().manual_seed(0)))
    moved = codec_codebooks(codec)
    assert not torch.allclose(moved, codebooks)
    with pytest.raises(OptionError, match="init_new_codec"):
        build_model(TrainConfig(**small, init=str(tmp_path / "base.safetensors")), moved, codec)
    model = build_model(TrainConfig(**small, init=str(tmp_path / "base.safetensors"), init_new_codec=True), moved, codec)
    assert torch.equal(model.embedding.codebooks, moved[:4])
    kept = {k: v for k, v in base.state_dict().items() if k != "embedding.codebooks"}
    assert all(torch.equal(model.state_dict()[k], v) for k, v in kept.items())


def test_a_runs_dropout_replaces_its_init_models(tmp_path):
    """Dropout is a training setting: a run started from a model trained with dropout 0.1 trains with the run's 0,
    so two training-mode forwards agree, and the model it saves records 0."""
    from vampnet import Codec, MaskedTransformer
    from vampnet.train.masked import build_model, codec_codebooks

    codebooks = codec_codebooks(Codec.load(SET_A / "codec.pth"))
    arch = dict(n_codebooks=4, embedding_dim=32, n_heads=2, n_layers=1)
    build_model(TrainConfig(model={**arch, "dropout": 0.1}), codebooks).save(tmp_path / "base.safetensors")
    codes = torch.randint(0, codebooks.shape[1], (2, 4, 50), generator=torch.Generator().manual_seed(0))
    for p, same in ((0.1, False), (0.0, True)):
        model = build_model(TrainConfig(model={**arch, "dropout": p}, init=str(tmp_path / "base.safetensors")),
                            codebooks).train()
        assert model.config.dropout == p
        assert torch.equal(model(codes), model(codes)) is same
    model.save(tmp_path / "tuned.safetensors")
    assert MaskedTransformer.load(tmp_path / "tuned.safetensors").config.dropout == 0.0


def test_a_fine_tune_resumes_without_its_init_file(dataset, tmp_path):
    from vampnet import MaskedTransformer

    train(tiny(dataset, tmp_path / "base", max_steps=4), progress=False)
    init = tmp_path / "init.safetensors"
    (tmp_path / "base" / "latest" / "model.safetensors").rename(init)
    cfg = tiny(dataset, tmp_path / "tune", max_steps=6, val_every=3, init=str(init))
    train(cfg.replace(output=str(tmp_path / "whole")), progress=False)
    train(cfg.replace(max_steps=3), progress=False)
    init.unlink()  # gone (or relative to another folder) when the run is resumed
    final = train(cfg.replace(init=None), resume=True, progress=False)
    assert final["step"] == 6
    import yaml  # the resumed run, started without it, still records where the run began
    assert yaml.safe_load((tmp_path / "tune" / "config.yaml").read_text())["init"] == str(init)
    a = MaskedTransformer.load(tmp_path / "whole" / "latest" / "model.safetensors").state_dict()
    b = MaskedTransformer.load(tmp_path / "tune" / "latest" / "model.safetensors").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same run as one without the interruption


def test_the_readmes_training_configs_are_valid_and_list_every_field(tmp_path):
    """The README's worked `coarse.yaml` reads as a run configuration and names every field a run has."""
    import dataclasses

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = text.split("A worked example, `coarse.yaml`", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "coarse.yaml").write_text(block)
    cfg = load_config(tmp_path / "coarse.yaml")
    import yaml
    named, fields = set(yaml.safe_load(block)), {f.name for f in dataclasses.fields(TrainConfig)}
    assert named == fields, named ^ fields
    assert cfg.structured_masks == 0.0 and cfg.init_new_codec is False
