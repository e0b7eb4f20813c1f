"""CPU threads on a shared machine (vampnet.threads): idle OpenMP threads sleep instead of spinning, chosen before
torch loads; the count comes from --threads or $VAMPNET_THREADS; bad values are one-line errors; and the count
changes results only within float rounding. (The speed this buys is measured by benchmarks/bench_threads.py.)"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT


def run_python(code: str, **env_changes) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "VAMPNET_THREADS")}
    env.update(env_changes)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                          cwd=ROOT)


def test_import_vampnet_makes_idle_threads_sleep_before_torch_loads():
    done = run_python("import os, sys, vampnet; print('torch' in sys.modules, os.environ.get('OMP_WAIT_POLICY')); "
                      "import torch; print(vampnet.threads.thread_report())")
    assert done.returncode == 0, done.stderr
    first, report = done.stdout.strip().splitlines()
    assert first == "False PASSIVE"  # set while torch (and so the OpenMP runtime) was not loaded yet
    assert "PASSIVE (chosen by vampnet)" in report


def test_a_wait_policy_the_user_set_is_kept():
    done = run_python("import os, vampnet, torch; print(os.environ['OMP_WAIT_POLICY']); "
                      "print(vampnet.threads.thread_report())", OMP_WAIT_POLICY="ACTIVE")
    policy, report = done.stdout.strip().splitlines()
    assert policy == "ACTIVE" and report.endswith("CPU threads; OpenMP wait policy ACTIVE (set by the user)")


def test_torch_loaded_before_vampnet_is_reported_not_hidden():
    done = run_python("import os, torch, vampnet; print(os.environ.get('OMP_WAIT_POLICY')); "
                      "print(vampnet.threads.thread_report())")
    policy, report = done.stdout.strip().splitlines()
    assert policy == "None" and "could not choose it" in report


def test_vampnet_threads_variable_sets_the_thread_count():
    done = run_python("import vampnet, torch; print(torch.get_num_threads())", VAMPNET_THREADS="1")
    assert done.stdout.strip() == "1"


def test_cli_threads_option_sets_the_thread_count_for_the_command():
    code = ("import torch; from vampnet.cli import main; torch.set_num_threads(2); "
            "rc = main(['--threads', '1', 'info', '--help']); print(rc, torch.get_num_threads())")
    done = run_python(code)
    assert done.stdout.strip().splitlines()[-1] == "0 1", done.stderr


def test_bad_thread_counts_are_one_line_errors():
    bad_env = run_python("from vampnet.cli import main; raise SystemExit(main(['info', 'x.safetensors']))",
                         VAMPNET_THREADS="many")
    assert bad_env.returncode == 1
    assert bad_env.stderr.strip() == "error: VAMPNET_THREADS must be a positive whole number of threads, got 'many'"
    zero = run_python("from vampnet.cli import main; raise SystemExit(main(['--threads', '0', 'info', 'x']))")
    assert zero.returncode == 2 and "--threads" in zero.stderr and "Traceback" not in zero.stderr
    from vampnet import OptionError, set_threads

    with pytest.raises(OptionError, match="positive whole number"):
        set_threads(-3)


def test_thread_count_changes_logits_only_within_float_rounding():
    from vampnet import MaskedTransformer
    from vampnet.model.transformer import TransformerConfig

    torch.manual_seed(0)
    model = MaskedTransformer(TransformerConfig(n_codebooks=4, vocab_size=1024, latent_dim=8, embedding_dim=256,
                                                n_heads=4, n_layers=2)).eval()
    codes = torch.randint(0, 1024, (1, 4, 400))
    before = torch.get_num_threads()
    try:
        with torch.inference_mode():
            torch.set_num_threads(1)
            one = model(codes)
            torch.set_num_threads(2)
            two = model(codes)
    finally:
        torch.set_num_threads(before)
    scale = one.abs().max()
    assert ((one - two).abs().max() / scale) < 1e-5
