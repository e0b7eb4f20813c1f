"""The static-shape sampler (vampnet.capture) against the eager one: same tokens for a seed (static, compiled;
CUDA graphs where CUDA is present), the sampling plan's counts and random streams, and batched variations equal to
the same variations made one at a time."""
from __future__ import annotations

import copy
import os
import shutil

import pytest
import torch

from conftest import sine_mix
from vampnet import OptionError, Pipeline, PromptConfig, SamplingConfig
from vampnet import precision
from vampnet.capture import CapturedSampler
from vampnet.sampling import SamplingPlan, generate_with_config, remask_counts, seeded_generator

SETTINGS = [dict(), dict(top_k=5), dict(top_p=0.8, temperature=0.7), dict(typical_filtering=True),
            dict(sample_cutoff=0.4), dict(steps=1), dict(mask_temperature=0.0), dict(temperature=0.0)]


def case(model, batch, frames, seed, p=0.6):
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, model.vocab_size, (batch, model.n_codebooks, frames), generator=g)
    return codes, torch.rand(codes.shape, generator=g) < p


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "default")
@pytest.mark.parametrize("part", ["coarse", "c2f"])
def test_static_sampler_gives_the_eager_tokens(part, settings, coarse_a, c2f_a):
    model = coarse_a if part == "coarse" else c2f_a
    captured = CapturedSampler(model, "static")
    cfg = SamplingConfig(**{"steps": 6, **settings})
    for batch, frames, seed in ((1, 7, 0), (3, 30, 1)):
        codes, mask = case(model, batch, frames, seed)
        expected = generate_with_config(model, codes, mask, cfg, seed=seed)
        assert torch.equal(captured.generate(codes, mask, cfg, seed=seed), expected)


class TiedModel(torch.nn.Module):
    """Every position gets the same two equally likely tokens: all confidences tie without Gumbel noise."""

    n_codebooks, n_conditioning_codebooks, n_predict_codebooks, vocab_size, mask_token = 2, 0, 2, 4, 4

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[list[int]] = []

    def hidden(self, codes):
        self.seen.append((codes == self.mask_token).flatten(1).sum(1).tolist())
        return torch.zeros(codes.shape[0], codes.shape[-1], 1) + self.w

    def classify(self, h):
        return torch.tensor([0.0, 0.0, -1e9, -1e9]).expand(*h.shape[:-1], 2, 4) + h.unsqueeze(-1)


@pytest.mark.parametrize("mode", ["eager", "static"])
def test_counts_follow_the_plan_even_when_confidences_tie(mode):
    model = TiedModel()
    codes = torch.zeros(2, 2, 20, dtype=torch.long)
    mask = torch.zeros_like(codes, dtype=torch.bool)
    mask[0, :, :15] = True
    mask[1, :, 5:8] = True
    cfg = SamplingConfig(steps=5, mask_temperature=0.0)
    if mode == "eager":
        out = generate_with_config(model, codes, mask, cfg, seed=0)
    else:
        out = CapturedSampler(model, "static").generate(codes, mask, cfg, seed=0)
    _, still = remask_counts(torch.tensor([30, 6]), 5, 40)
    assert still[:, 0].tolist() == [30, 28, 24, 17, 9] and still[:, 1].tolist() == [6, 5, 4, 3, 1]  # cos schedule
    assert model.seen == still.tolist()
    assert (out[mask] < 2).all() and torch.equal(out[~mask], codes[~mask])


def test_plan_draws_per_stream_as_one_job_would(coarse_a):
    """Rows with their own generators get the tokens they get alone; a stream with nothing masked draws nothing."""
    codes, mask = case(coarse_a, 3, 20, seed=5)
    mask[1] = False
    cfg = SamplingConfig(steps=4)
    streams = [(seeded_generator(10 + i), 1) for i in range(3)]
    together = generate_with_config(coarse_a, codes, mask, cfg, generator=streams)
    for i in (0, 2):
        alone = generate_with_config(coarse_a, codes[i:i + 1], mask[i:i + 1], cfg, seed=10 + i)
        assert torch.equal(together[i:i + 1], alone)
    assert torch.equal(together[1], codes[1])
    assert torch.equal(streams[1][0].get_state(), seeded_generator(11).get_state())
    with pytest.raises(OptionError):
        SamplingPlan.make(cfg, torch.tensor([3, 3, 3]), 10, streams[:2], "cpu")
    with pytest.raises(OptionError):
        generate_with_config(coarse_a, codes, mask, SamplingConfig(draw="original"), generator=streams)


@pytest.mark.parametrize("chunk_s, batch", [(1.0, 5), (0.4, 3)], ids=["blocks-share-calls", "rows-split-in-blocks"])
def test_variations_in_one_batch_equal_vamps_one_at_a_time(codec_a, coarse_a, c2f_a, chunk_s, batch):
    pipe = Pipeline(codec_a, coarse_a, c2f_a, coarse_window_s=1.0, window_overlap_s=0.3, c2f_chunk_s=chunk_s,
                    c2f_batch_size=batch)
    x = torch.from_numpy(sine_mix(2.0, 44100)).view(1, 1, -1)
    prompt = PromptConfig(periodic_prompt=5, random_roll=True, upper_codebook_mask=2, dropout=0.3)
    kw = dict(prompt=prompt, sampling=SamplingConfig(steps=3), c2f_sampling=SamplingConfig(steps=2, top_k=20))
    batched = pipe.variations(x, 44100, 3, seed=40, **kw)
    for i, result in enumerate(batched):
        alone = pipe.vamp(x, 44100, seed=40 + i, **kw)
        assert torch.equal(result.codes, alone.codes) and torch.equal(result.mask, alone.mask)
        assert torch.allclose(result.audio, alone.audio, atol=1e-6) and result.settings["seed"] == 40 + i
    assert not torch.equal(batched[0].codes, batched[1].codes)
    with pytest.raises(OptionError):
        pipe.variations(x, 44100, 0)


def test_captured_pipeline_gives_the_eager_tokens(codec_a, coarse_a, c2f_a):
    x = torch.from_numpy(sine_mix(1.5, 44100)).view(1, 1, -1)
    kw = dict(sampling=SamplingConfig(steps=4, top_p=0.9), seed=3)
    eager = Pipeline(codec_a, coarse_a, c2f_a, c2f_chunk_s=0.5).vamp(x, 44100, **kw)
    static = Pipeline(codec_a, coarse_a, c2f_a, c2f_chunk_s=0.5, capture="static").vamp(x, 44100, **kw)
    assert torch.equal(eager.codes, static.codes)
    with pytest.raises(OptionError):
        Pipeline(codec_a, coarse_a, c2f_a, capture="fastest")
    if not torch.cuda.is_available():
        with pytest.raises(OptionError):
            Pipeline(codec_a, coarse_a, c2f_a, capture="graph")


@pytest.mark.skipif(not (shutil.which("g++") or shutil.which("c++")), reason="torch.compile's CPU code needs a C++ compiler")
def test_compiled_pass_gives_the_eager_tokens_with_one_graph_per_shape(tiny_pipeline):
    """torch.compile (inductor's CPU code here) of the static pass: the eager sampler's tokens; each pass is one
    graph (fullgraph: a graph break would raise), each new shape compiles its own graph even when dynamo allows a
    function only one (its recompile limit), and a repeated shape compiles nothing (the model's caches are filled
    outside the pass)."""
    model = tiny_pipeline.coarse
    cfg = SamplingConfig(steps=2, top_p=0.9)
    compiled = CapturedSampler(model, "compile")
    graphs = lambda: torch._dynamo.utils.counters["stats"]["unique_graphs"]
    for frames, seed, new_graphs in ((40, 2, 1), (24, 3, 1), (40, 4, 0)):
        codes, mask = case(model, 2, frames, seed)
        before = graphs()
        with torch._dynamo.config.patch(recompile_limit=1):  # (monkeypatch's undo would delete the option)
            tokens = compiled.generate(codes, mask, cfg, seed=9)
        assert torch.equal(tokens, generate_with_config(model, codes, mask, cfg, seed=9))
        assert graphs() - before == new_graphs


def test_compiled_kernels_are_kept_in_vampnets_folder_unless_the_user_chose_one(coarse_a, tmp_path, monkeypatch):
    monkeypatch.setenv("VAMPNET_HOME", str(tmp_path))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    CapturedSampler(coarse_a, "static")
    assert "TORCHINDUCTOR_CACHE_DIR" not in os.environ
    CapturedSampler(coarse_a, "compile")
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "compiled")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    CapturedSampler(coarse_a, "compile")
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "mine")
    # importing torch._dynamo writes inductor's default into the environment: that is not the user's choice
    # (vampnet knows the default without importing torch's module; the two must agree)
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    from vampnet.pretrained import _inductor_default_cache
    assert _inductor_default_cache() == default_cache_dir()
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())
    CapturedSampler(coarse_a, "compile")
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "compiled")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
@pytest.mark.parametrize("mode", ["static", "graph"])
def test_cuda_graph_replays_give_the_eager_tokens(coarse_a, mode):
    model = coarse_a.to("cuda")
    try:
        cfg = SamplingConfig(steps=5)
        captured = CapturedSampler(model, mode)
        for seed in range(3):  # replays after the first recording
            codes, mask = case(model, 2, 30, seed)
            expected = generate_with_config(model, codes, mask, cfg, seed=seed)
            assert torch.equal(captured.generate(codes, mask, cfg, seed=seed), expected)
    finally:
        coarse_a.to("cpu")


class ReplayedGraph:
    """What a CUDA graph does, on the CPU: replay re-runs the recorded work and writes into the same output memory."""

    def __init__(self, run):
        self.run, self.outputs = run, run()

    def replay(self):
        for dst, src in zip(self.outputs, self.run()):
            dst.copy_(src)


def test_graph_mode_feeds_and_reads_its_recorded_buffers(coarse_a, monkeypatch):
    """The graph mode's bookkeeping with CUDA's recording replaced by a CPU stand-in: new inputs are copied into the
    recorded buffers before each replay and results copied out, across passes, jobs and shapes (eager tokens)."""
    import vampnet.capture as capture

    recorded = []

    def record(run, pool):
        graph = ReplayedGraph(run)
        recorded.append(graph)
        return graph, graph.outputs

    monkeypatch.setattr(capture, "record_cuda_graph", record)
    monkeypatch.setattr(torch.cuda, "graph_pool_handle", lambda: None)
    sampler = CapturedSampler.__new__(CapturedSampler)
    sampler.model, sampler.mode, sampler.device, sampler._passes, sampler._pool = coarse_a, "graph", torch.device("cpu"), {}, None
    cfg = SamplingConfig(steps=4, top_k=8)
    for batch, frames, seed in ((1, 20, 0), (2, 20, 1), (1, 20, 2), (2, 33, 3)):
        codes, mask = case(coarse_a, batch, frames, seed)
        assert torch.equal(sampler.generate(codes, mask, cfg, seed=seed), generate_with_config(coarse_a, codes, mask, cfg, seed=seed))
    assert len(recorded) == 3  # one recording per shape, replayed by later jobs of that shape


@pytest.mark.skipif(not (shutil.which("g++") or shutil.which("c++")), reason="torch.compile's CPU code needs a C++ compiler")
@pytest.mark.skipif(not precision.fused_int8_available(), reason="needs torch's fused x86 int8 kernels")
def test_int8_model_compiles_into_one_graph_as_close_to_fp32_as_eager(coarse_a):
    """fbgemm's packed weights cannot be traced; the compiled graph calls them through an opaque op. Its logits are
    as close to float32 as the eager int8 ones (the activations' per-tensor scale makes int8 react to the last bit
    of its input, so compiled and eager int8 differ by about int8's own error, not by a fixed amount)."""
    int8 = precision.apply_to_transformer(copy.deepcopy(coarse_a), "int8")
    codes, mask = case(coarse_a, 2, 40, seed=5)
    codes = torch.where(mask, coarse_a.mask_token, codes)
    with torch.inference_mode():
        ref, eager = coarse_a(codes), int8(codes)
        compiled = torch.compile(lambda c: int8(c), fullgraph=True, dynamic=False)(codes)
    err = lambda x: float((x - ref).norm() / ref.norm())
    assert 0 < err(eager) < 0.1 and err(compiled) < 1.5 * err(eager)


@pytest.mark.skipif(not precision.fused_int8_available(), reason="needs torch's fused x86 int8 kernels")
def test_the_opaque_int8_op_reaches_each_layer_and_its_copies():
    layer = precision.Int8Linear(torch.nn.Linear(16, 8))
    copied = copy.deepcopy(layer)
    x = torch.randn(3, 16)
    expected = layer(x)
    del layer  # the copy must not depend on the original
    assert torch.equal(torch.ops.vampnet.int8_linear(x, copied._number), expected)
