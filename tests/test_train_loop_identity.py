"""The training loop's results are pinned: tiny seeded runs of the masked-token trainer (full and LoRA) and the codec
trainer, a few steps on CPU, must log the same per-step numbers and save the same checkpoint tensors, in the same
files and under the same names, as recorded below. The recorded values came from the trainers before they shared one
run loop; a change to either trainer's step, validation, checkpoint or log would show here.

Values are compared to 1e-4 relative: rounding differences between CPUs stay far below, while a change of data
order, mask, learning rate or loss moves them by more. `PYTHONPATH=src:tests python tests/test_train_loop_identity.py`
prints the values of the current code (to record them after an intended change of behaviour)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from safetensors.torch import load_file

from conftest import SET_A
from test_train import tiny, write_tones

from vampnet.train.codec_trainer import CodecTrainConfig, train_codec
from vampnet.train.data import TokenizeConfig, tokenize
from vampnet.train.masked import train

CODEC_SR = 16000


def make_token_dataset(root: Path) -> Path:
    from vampnet import Codec

    write_tones(root / "audio" / "tones", n=3, seconds=2.0)
    tokenize([root / "audio"], root / "ds", Codec.load(SET_A / "codec.pth"),
             TokenizeConfig(excerpt_s=1.5, val_fraction=0.3), codec_path=str(SET_A / "codec.pth"), progress=False)
    return root


def make_audio(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(CODEC_SR * 1.5)) / CODEC_SR
    for i, f0 in enumerate((220.0, 330.0, 495.0)):
        x = 0.3 * np.sin(2 * np.pi * f0 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * (1 + i) * t))
        sf.write(folder / f"tone{i}.wav", x.astype(np.float32), CODEC_SR)
    return folder


def coarse_config(root: Path, out: Path, **kw):
    return tiny(root, out, max_steps=4, val_every=2, save_every=3, val_windows=4, n_layers=1, dropout=0.1, **kw)


def codec_config(audio: Path, out: Path) -> CodecTrainConfig:
    return CodecTrainConfig(audio=(str(audio),), output=str(out), encoder_dim=4, encoder_rates=(2, 4, 8), decoder_dim=16,
                            decoder_rates=(8, 4, 2), n_codebooks=3, codebook_size=32, codebook_dim=4,
                            sample_rate=CODEC_SR, excerpt_s=0.1, batch_size=2, max_steps=4, lr=3e-3, lr_decay=0.999,
                            val_excerpts=2, val_excerpt_s=0.2, val_every=2, save_every=3, disc_start=1,
                            mel_windows=(64, 256), mel_bands=(10, 40), disc_periods=(2, 3), disc_stft_windows=(256, 128),
                            disc_width=2, bf16=False)


def fingerprint(run: Path) -> dict:
    """What a run leaves: its files, its log (minus wall-clock seconds), each checkpoint folder's files with their
    tensor names and two sums per file, and the trainer state."""
    with open(run / "log.csv", newline="") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames)
        rows = [{k: float(v) for k, v in r.items() if v and k != "seconds"} for r in reader]
    out = {"files": sorted(p.name for p in run.iterdir()), "log_header": header, "log": rows, "checkpoints": {}}
    for folder in sorted(p for p in run.iterdir() if p.is_dir()):
        files = {}
        for path in sorted(folder.iterdir()):
            if path.suffix == ".safetensors":
                tensors = load_file(path)
                total = sum(float(t.double().sum()) for t in tensors.values())
                squares = sum(float(t.double().square().sum()) for t in tensors.values())
                files[path.name] = {"keys": len(tensors), "sum": total, "sum_sq": squares}
            else:
                state = json.loads(path.read_text())
                logged = next(r for r in rows if r["step"] == state["step"])
                metrics = {k: float(v) for k, v in state["metrics"].items() if k != "seconds"}
                files[path.name] = {"keys": sorted(state), "step": state["step"], "metrics_are_the_log_row": metrics == logged,
                                    "best": next(v for k, v in state.items() if k.startswith("best_"))}
        out["checkpoints"][folder.name] = files
    final = json.loads((run / "final.json").read_text())
    out["final"] = {k: v for k, v in final.items() if k != "seconds"}
    return out


def assert_matches(actual, expected, where="run"):
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and sorted(actual) == sorted(expected), where
        for key in expected:
            assert_matches(actual[key], expected[key], f"{where}/{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), where
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_matches(a, e, f"{where}[{i}]")
    elif isinstance(expected, float):
        assert actual == pytest.approx(expected, rel=1e-4, abs=1e-6), where
    else:
        assert actual == expected, where


def run_all(root: Path) -> dict:
    make_token_dataset(root)
    train(coarse_config(root, root / "coarse"), progress=False)
    train(coarse_config(root, root / "lora", lora_rank=2), progress=False)
    train_codec(codec_config(make_audio(root / "codec_audio"), root / "codec"), progress=False)
    return {name: fingerprint(root / name) for name in ("coarse", "lora", "codec")}


# recorded from the trainers before they shared one run loop (see the module docstring); val_near32_lo added later
EXPECTED: dict = {'coarse': {'files': ['best', 'config.yaml', 'final.json', 'latest', 'log.csv', 'step-0000003'],
                             'log_header': ['step', 'lr', 'train_loss', 'grad_norm', 'val_loss', 'val_acc1', 'val_acc1_lo',
                                            'val_acc25_lo', 'val_acc1_hi', 'val_acc25_hi', 'val_near32_lo', 'val_tokens', 'seconds'],
                             'log': [{'step': 1.0,
                                      'lr': 0.0158113883008419,
                                      'train_loss': 7.423958778381348,
                                      'grad_norm': 1.3971104621887207},
                                     {'step': 2.0,
                                      'lr': 0.0316227766016838,
                                      'train_loss': 7.143668174743652,
                                      'grad_norm': 0.7472498416900635,
                                      'val_loss': 7.0636396408081055,
                                      'val_acc1': 0.005571030545979738,
                                      'val_acc1_lo': 0.007751937955617905,
                                      'val_acc25_lo': 0.11240310221910477,
                                      'val_acc1_hi': 0.0,
                                      'val_acc25_hi': 0.059405941516160965,
                                      'val_near32_lo': 0.03679286688566208,
                                      'val_tokens': 359.0},
                                     {'step': 3.0,
                                      'lr': 0.047434164902525694,
                                      'train_loss': 5.9759626388549805,
                                      'grad_norm': 0.622748613357544},
                                     {'step': 4.0,
                                      'lr': 0.0632455532033676,
                                      'train_loss': 5.196797847747803,
                                      'grad_norm': 0.41439950466156006,
                                      'val_loss': 7.730937957763672,
                                      'val_acc1': 0.008356546051800251,
                                      'val_acc1_lo': 0.011627906933426857,
                                      'val_acc25_lo': 0.151162788271904,
                                      'val_acc1_hi': 0.0,
                                      'val_acc25_hi': 0.14851485192775726,
                                      'val_near32_lo': 0.06780955940485,
                                      'val_tokens': 359.0}],
                             'checkpoints': {'best': {'model.safetensors': {'keys': 17,
                                                                            'sum': 3462.846552462561,
                                                                            'sum_sq': 41428.73327593934},
                                                      'optimizer.safetensors': {'keys': 48,
                                                                                'sum': 32.287071291081,
                                                                                'sum_sq': 64.0213446023024},
                                                      'trainer.json': {'keys': ['best_val_loss', 'bf16_autocast', 'config', 'metrics',
                                                                                'step', 'world_size'],
                                                                       'step': 2,
                                                                       'metrics_are_the_log_row': True,
                                                                       'best': 7.0636396408081055}},
                                             'latest': {'model.safetensors': {'keys': 17,
                                                                              'sum': 3520.561425725591,
                                                                              'sum_sq': 42820.47131190857},
                                                        'optimizer.safetensors': {'keys': 48,
                                                                                  'sum': 64.1507696202325,
                                                                                  'sum_sq': 256.02237742787224},
                                                        'trainer.json': {'keys': ['best_val_loss', 'bf16_autocast', 'config',
                                                                                  'metrics', 'step', 'world_size'],
                                                                         'step': 4,
                                                                         'metrics_are_the_log_row': True,
                                                                         'best': 7.0636396408081055}},
                                             'step-0000003': {'model.safetensors': {'keys': 17,
                                                                                    'sum': 3453.3949705641753,
                                                                                    'sum_sq': 41864.59783452904},
                                                              'optimizer.safetensors': {'keys': 48,
                                                                                        'sum': 48.1936867163921,
                                                                                        'sum_sq': 144.0240293911236},
                                                              'trainer.json': {'keys': ['best_val_loss', 'bf16_autocast', 'config',
                                                                                        'metrics', 'step', 'world_size'],
                                                                               'step': 3,
                                                                               'metrics_are_the_log_row': True,
                                                                               'best': 7.0636396408081055}}},
                             'final': {'step': 4,
                                       'lr': 0.0632455532033676,
                                       'train_loss': 5.196797847747803,
                                       'grad_norm': 0.41439950466156006,
                                       'val_loss': 7.730937957763672,
                                       'val_acc1': 0.008356546051800251,
                                       'val_acc1_lo': 0.011627906933426857,
                                       'val_acc25_lo': 0.151162788271904,
                                       'val_acc1_hi': 0.0,
                                       'val_acc25_hi': 0.14851485192775726,
                                       'val_near32_lo': 0.06780955940485,
                                       'val_tokens': 359,
                                       'max_rank_divergence': 0.0}},
                  'lora': {'files': ['best', 'config.yaml', 'final.json', 'latest', 'log.csv', 'step-0000003'],
                           'log_header': ['step', 'lr', 'train_loss', 'grad_norm', 'val_loss', 'val_acc1', 'val_acc1_lo',
                                          'val_acc25_lo', 'val_acc1_hi', 'val_acc25_hi', 'val_near32_lo', 'val_tokens', 'seconds'],
                           'log': [{'step': 1.0,
                                    'lr': 0.0158113883008419,
                                    'train_loss': 7.423958778381348,
                                    'grad_norm': 0.685603678226471},
                                   {'step': 2.0,
                                    'lr': 0.0316227766016838,
                                    'train_loss': 7.493291854858398,
                                    'grad_norm': 0.41124823689460754,
                                    'val_loss': 7.3820881843566895,
                                    'val_acc1': 0.0,
                                    'val_acc1_lo': 0.0,
                                    'val_acc25_lo': 0.03100775182247162,
                                    'val_acc1_hi': 0.0,
                                    'val_acc25_hi': 0.039603959769010544,
                                    'val_near32_lo': 0.030656838789582253,
                                    'val_tokens': 359.0},
                                   {'step': 3.0,
                                    'lr': 0.047434164902525694,
                                    'train_loss': 7.1955485343933105,
                                    'grad_norm': 0.9497966766357422},
                                   {'step': 4.0,
                                    'lr': 0.0632455532033676,
                                    'train_loss': 7.15508508682251,
                                    'grad_norm': 0.40828895568847656,
                                    'val_loss': 7.232482433319092,
                                    'val_acc1': 0.016713092103600502,
                                    'val_acc1_lo': 0.023255813866853714,
                                    'val_acc25_lo': 0.07364340871572495,
                                    'val_acc1_hi': 0.0,
                                    'val_acc25_hi': 0.06930693238973618,
                                    'val_near32_lo': 0.030346905812621117,
                                    'val_tokens': 359.0}],
                           'checkpoints': {'best': {'lora.safetensors': {'keys': 10,
                                                                         'sum': -4.2717004276346415,
                                                                         'sum_sq': 9.843105306120371},
                                                    'optimizer.safetensors': {'keys': 30,
                                                                              'sum': 39.75296911746017,
                                                                              'sum_sq': 160.01780898071272},
                                                    'trainer.json': {'keys': ['best_val_loss', 'bf16_autocast', 'config', 'metrics',
                                                                              'step', 'world_size'],
                                                                     'step': 4,
                                                                     'metrics_are_the_log_row': True,
                                                                     'best': 7.232482433319092}},
                                           'latest': {'lora.safetensors': {'keys': 10,
                                                                           'sum': -4.2717004276346415,
                                                                           'sum_sq': 9.843105306120371},
                                                      'optimizer.safetensors': {'keys': 30,
                                                                                'sum': 39.75296911746017,
                                                                                'sum_sq': 160.01780898071272},
                                                      'trainer.json': {'keys': ['best_val_loss', 'bf16_autocast', 'config', 'metrics',
                                                                                'step', 'world_size'],
                                                                       'step': 4,
                                                                       'metrics_are_the_log_row': True,
                                                                       'best': 7.232482433319092}},
                                           'step-0000003': {'lora.safetensors': {'keys': 10,
                                                                                 'sum': -4.288139555603266,
                                                                                 'sum_sq': 6.047226891040615},
                                                            'optimizer.safetensors': {'keys': 30,
                                                                                      'sum': 29.778694406301152,
                                                                                      'sum_sq': 90.01780551374007},
                                                            'trainer.json': {'keys': ['best_val_loss', 'bf16_autocast', 'config',
                                                                                      'metrics', 'step', 'world_size'],
                                                                             'step': 3,
                                                                             'metrics_are_the_log_row': True,
                                                                             'best': 7.3820881843566895}}},
                           'final': {'step': 4,
                                     'lr': 0.0632455532033676,
                                     'train_loss': 7.15508508682251,
                                     'grad_norm': 0.40828895568847656,
                                     'val_loss': 7.232482433319092,
                                     'val_acc1': 0.016713092103600502,
                                     'val_acc1_lo': 0.023255813866853714,
                                     'val_acc25_lo': 0.07364340871572495,
                                     'val_acc1_hi': 0.0,
                                     'val_acc25_hi': 0.06930693238973618,
                                     'val_near32_lo': 0.030346905812621117,
                                     'val_tokens': 359,
                                     'max_rank_divergence': 0.0}},
                  'codec': {'files': ['best', 'config.yaml', 'final.json', 'latest', 'log.csv', 'step-0000003'],
                            'log_header': ['step', 'lr', 'loss', 'mel', 'waveform', 'adv', 'feature', 'commitment', 'codebook',
                                           'disc_loss', 'grad_norm', 'disc_grad_norm', 'val_mel_distance', 'seconds'],
                            'log': [{'step': 0.0, 'val_mel_distance': 7.306375503540039},
                                    {'step': 1.0,
                                     'lr': 0.003,
                                     'loss': 44.337493896484375,
                                     'mel': 2.8286051750183105,
                                     'waveform': 0.06318094581365585,
                                     'adv': 0.0,
                                     'feature': 0.0,
                                     'commitment': 1.4761879444122314,
                                     'codebook': 1.4761879444122314,
                                     'disc_loss': 0.0,
                                     'grad_norm': 74.16053009033203,
                                     'disc_grad_norm': 0.0},
                                    {'step': 2.0,
                                     'lr': 0.002997,
                                     'loss': 44.94802474975586,
                                     'mel': 2.403066396713257,
                                     'waveform': 0.0645877942442894,
                                     'adv': 3.046751022338867,
                                     'feature': 1.6579070091247559,
                                     'commitment': 1.9799003601074219,
                                     'codebook': 1.9799003601074219,
                                     'disc_loss': 3.483912706375122,
                                     'grad_norm': 87.52323150634766,
                                     'disc_grad_norm': 3.926744222640991,
                                     'val_mel_distance': 5.335035800933838},
                                    {'step': 3.0,
                                     'lr': 0.0029940030000000003,
                                     'loss': 46.79054641723633,
                                     'mel': 2.463371515274048,
                                     'waveform': 0.06615140289068222,
                                     'adv': 2.598356246948242,
                                     'feature': 1.8838512897491455,
                                     'commitment': 2.726210594177246,
                                     'codebook': 2.726210594177246,
                                     'disc_loss': 3.1309444904327393,
                                     'grad_norm': 99.60261535644531,
                                     'disc_grad_norm': 3.539827823638916},
                                    {'step': 4.0,
                                     'lr': 0.002991008997,
                                     'loss': 37.88505172729492,
                                     'mel': 2.04145884513855,
                                     'waveform': 0.06856858730316162,
                                     'adv': 2.0208194255828857,
                                     'feature': 1.674371600151062,
                                     'commitment': 1.460026502609253,
                                     'codebook': 1.460026502609253,
                                     'disc_loss': 2.7678420543670654,
                                     'grad_norm': 79.84404754638672,
                                     'disc_grad_norm': 3.1435656547546387,
                                     'val_mel_distance': 5.078739166259766}],
                            'checkpoints': {'best': {'discriminator.safetensors': {'keys': 72,
                                                                                   'sum': 204.87423653170845,
                                                                                   'sum_sq': 244.80829638683073},
                                                     'discriminator_optimizer.safetensors': {'keys': 216,
                                                                                             'sum': 182.39290346414845,
                                                                                             'sum_sq': 650.7031516726184},
                                                     'model.safetensors': {'keys': 347,
                                                                           'sum': 925.8337912426578,
                                                                           'sum_sq': 1323.6208233997606},
                                                     'optimizer.safetensors': {'keys': 1041,
                                                                               'sum': 1751.2465187399819,
                                                                               'sum_sq': 7315.819144411555},
                                                     'trainer.json': {'keys': ['best_val_mel_distance', 'bf16_autocast', 'config',
                                                                               'metrics', 'step', 'world_size'],
                                                                      'step': 4,
                                                                      'metrics_are_the_log_row': True,
                                                                      'best': 5.078739166259766}},
                                            'latest': {'discriminator.safetensors': {'keys': 72,
                                                                                     'sum': 204.87423653170845,
                                                                                     'sum_sq': 244.80829638683073},
                                                       'discriminator_optimizer.safetensors': {'keys': 216,
                                                                                               'sum': 182.39290346414845,
                                                                                               'sum_sq': 650.7031516726184},
                                                       'model.safetensors': {'keys': 347,
                                                                             'sum': 925.8337912426578,
                                                                             'sum_sq': 1323.6208233997606},
                                                       'optimizer.safetensors': {'keys': 1041,
                                                                                 'sum': 1751.2465187399819,
                                                                                 'sum_sq': 7315.819144411555},
                                                       'trainer.json': {'keys': ['best_val_mel_distance', 'bf16_autocast', 'config',
                                                                                 'metrics', 'step', 'world_size'],
                                                                        'step': 4,
                                                                        'metrics_are_the_log_row': True,
                                                                        'best': 5.078739166259766}},
                                            'step-0000003': {'discriminator.safetensors': {'keys': 72,
                                                                                           'sum': 201.26023885178438,
                                                                                           'sum_sq': 244.40416758866954},
                                                             'discriminator_optimizer.safetensors': {'keys': 216,
                                                                                                     'sum': 126.08194992802771,
                                                                                                     'sum_sq': 289.72737491115333},
                                                             'model.safetensors': {'keys': 347,
                                                                                   'sum': 926.4328585389521,
                                                                                   'sum_sq': 1323.7418849486917},
                                                             'optimizer.safetensors': {'keys': 1041,
                                                                                       'sum': 1373.9956861318526,
                                                                                       'sum_sq': 4685.432284137401},
                                                             'trainer.json': {'keys': ['best_val_mel_distance', 'bf16_autocast',
                                                                                       'config', 'metrics', 'step', 'world_size'],
                                                                              'step': 3,
                                                                              'metrics_are_the_log_row': True,
                                                                              'best': 5.335035800933838}}},
                            'final': {'step': 4,
                                      'lr': 0.002991008997,
                                      'loss': 37.88505172729492,
                                      'mel': 2.04145884513855,
                                      'waveform': 0.06856858730316162,
                                      'adv': 2.0208194255828857,
                                      'feature': 1.674371600151062,
                                      'commitment': 1.460026502609253,
                                      'codebook': 1.460026502609253,
                                      'disc_loss': 2.7678420543670654,
                                      'grad_norm': 79.84404754638672,
                                      'disc_grad_norm': 3.1435656547546387,
                                      'val_mel_distance': 5.078739166259766,
                                      'max_rank_divergence': 0.0,
                                      'max_rank_divergence_disc': 0.0}}}


@pytest.fixture(scope="module")
def fingerprints(tmp_path_factory) -> dict:
    return run_all(tmp_path_factory.mktemp("identity"))


@pytest.mark.parametrize("name", ["coarse", "lora", "codec"])
def test_training_run_logs_and_checkpoints_match_the_recorded_values(fingerprints, name):
    assert_matches(fingerprints[name], EXPECTED[name], name)


if __name__ == "__main__":
    import pprint
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        pprint.pprint(run_all(Path(tmp)), width=118, compact=True, sort_dicts=False)
