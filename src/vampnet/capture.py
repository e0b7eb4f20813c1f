"""The fast sampler with static shapes and nothing for the host inside its loop, so that a pass can be compiled
(`torch.compile`) or recorded once and replayed (CUDA graphs).

On a GPU the eager sampler spends most of a pass launching kernels one by one from Python and waiting for the
host (boolean indexing needs the number of selected rows); the arithmetic of 36 passes of the full-size model is
~20 ms on an H200. Here a pass is a pure function of fixed-shape tensors: the classifier runs on every frame
(as the eager sampler does on a GPU; on a CPU it skips decided frames, which is cheaper there), the draw uniforms
are spread over the positions by a cumulative sum instead of a boolean index, and the counts and random numbers
come from the job's SamplingPlan. The arithmetic per position is the eager fast sampler's, so a seed gives the
same tokens (tested in float32; torch.compile's fused kernels may round differently, most visibly in bf16).

Modes: "static" runs the pass as it is (the reference for the other two, and what the tests check on CPU),
"compile" runs it through `torch.compile`, "graph" records it as a CUDA graph per (batch, frames, settings) and
replays it (CUDA only). Compiled kernels are kept between processes in $VAMPNET_HOME/compiled (unless
$TORCHINDUCTOR_CACHE_DIR says otherwise; inductor's own default is a folder in /tmp, emptied at reboot): a shape
is compiled from scratch once per machine, a later process only traces it again. A recorded graph reads the
model's weights where they were when it was recorded: call `reset()` after changing them."""
from __future__ import annotations

import torch

from .errors import OptionError
from .pretrained import use_compile_cache
from .sampling import (SamplingConfig, SamplingPlan, check_inputs, draw_fast, flatten_codebooks,
                       position_uniforms, remask_step, seeded_generator)

MODES = ("static", "compile", "graph")
MAX_RECORDED = 8  # recorded shapes kept per model; each holds its activations' memory


def static_pass(model, cfg: SamplingConfig, draw: bool, cond, z, u_draw, u_gumbel, r, n_mask):
    """One pass over (B, N) current tokens (N = frames x predicted codebooks, MASK where unknown) ->
    (tokens for the next pass, this pass's complete draw). Only tensor arithmetic of fixed shapes."""
    B, N = z.shape
    P, MASK = model.n_predict_codebooks, model.mask_token
    still_masked = z == MASK
    x = torch.cat([cond, z.view(B, N // P, P).transpose(1, 2)], 1)
    logits = model.classify(model.hidden(x)).float().view(B * N, -1)
    u = position_uniforms(u_draw, still_masked).view(B * N, 1) if draw else None
    token, p_token = draw_fast(logits, cfg, u)
    return remask_step(z, token.view(B, N), p_token.view(B, N), u_gumbel, r, n_mask, cfg.mask_temperature, MASK)


class CapturedSampler:
    """Generation for one model through static passes, compiled or recorded per shape (see the module's doc)."""

    def __init__(self, model, mode: str = "static"):
        if mode not in MODES:
            raise OptionError(f"capture mode must be one of {', '.join(MODES)}, got {mode!r}")
        device = next(model.parameters()).device
        if mode == "graph" and device.type != "cuda":
            raise OptionError(f"CUDA graphs need the model on a CUDA device, it is on {device}")
        self.model, self.mode, self.device = model, mode, device
        self._passes: dict = {}
        self._compiled = 0
        self._pool = torch.cuda.graph_pool_handle() if mode == "graph" else None
        if mode == "compile":
            use_compile_cache()

    def reset(self) -> None:
        """Forget compiled and recorded passes (after the model's weights changed)."""
        self._passes.clear()

    @torch.inference_mode()
    def generate(self, codes: torch.Tensor, mask: torch.Tensor, cfg: SamplingConfig, *, seed=None, generator=None,
                 progress=None) -> torch.Tensor:
        """As `sampling.generate_with_config` with draw="fast": same arguments, same tokens for a seed."""
        if cfg.draw != "fast":
            raise OptionError('the captured sampler implements draw="fast" only')
        model = self.model
        codes, mask = check_inputs(model, codes, mask)
        if not mask.any():
            if progress is not None:
                progress(cfg.steps, cfg.steps)
            return codes.clone()
        generator = seeded_generator(seed) if generator is None else generator
        was_training = model.training
        model.eval()
        try:
            return self._decode(codes.to(self.device), mask.to(self.device), cfg, generator, progress)
        finally:
            model.train(was_training)

    def _decode(self, codes, mask, cfg, generator, progress):
        model = self.model
        B, K, T = codes.shape
        if self.mode != "static":
            fill_caches(model, T)
        C, P, MASK = model.n_conditioning_codebooks, model.n_predict_codebooks, model.mask_token
        cond = codes[:, :C].contiguous()
        z = flatten_codebooks(torch.where(mask, MASK, codes)[:, C:])
        plan = SamplingPlan.make(cfg, (z == MASK).sum(-1).cpu(), T * P, generator, z.device)
        sampled = z
        for i in range(cfg.steps):
            z, sampled = self._run_pass(cfg, plan.draws[i], cond, z, plan.u_draw[i], plan.u_gumbel[i], plan.r[i],
                                        plan.n_mask[i])
            if progress is not None:
                progress(i + 1, cfg.steps)
        return torch.cat([cond, sampled.view(B, T, P).transpose(1, 2)], 1)

    def _run_pass(self, cfg, draw, *inputs):
        if self.mode == "static":
            return static_pass(self.model, cfg, draw, *inputs)
        key = (cfg, draw, tuple(inputs[1].shape), inputs[0].shape[1])
        entry = self._passes.get(key)
        if entry is None:
            if len(self._passes) >= MAX_RECORDED:
                self._passes.pop(next(iter(self._passes)))
            entry = self._passes[key] = (self._compile if self.mode == "compile" else self._record)(cfg, draw, inputs)
        return entry(*inputs)

    def _compile(self, cfg, draw, inputs):
        model = self.model

        def one_pass(*tensors):
            return static_pass(model, cfg, draw, *tensors)

        # dynamo keeps at most `recompile_limit` (8) compiled variants per code object and then silently runs
        # the function uncompiled: each entry gets a code object of its own, freed with the entry
        self._compiled += 1
        one_pass.__code__ = one_pass.__code__.replace(co_name=f"vampnet_pass_{self._compiled}")
        # one graph per pass or an error: a graph break would split the pass and bring the host back in
        return torch.compile(one_pass, dynamic=False, fullgraph=True)

    def _record(self, cfg, draw, inputs):
        """Record one pass on copies of `inputs`; replaying copies the new inputs in, replays, copies results out."""
        model = self.model
        static_inputs = [t.clone() for t in inputs]
        graph, outputs = record_cuda_graph(lambda: static_pass(model, cfg, draw, *static_inputs), self._pool)
        # the graph reads tensors the model caches (relative-position bias, folded weights): keep them alive
        kept = [model.rel_bias(inputs[1].shape[1] // model.n_predict_codebooks),
                getattr(getattr(model, "classifier", None), "_cached_weight", None)]

        def replay(*tensors):
            for dst, src in zip(static_inputs, tensors):
                if dst.data_ptr() != src.data_ptr():
                    dst.copy_(src)
            graph.replay()
            return tuple(o.clone() for o in outputs)

        replay.kept = kept
        return replay


def fill_caches(model, frames: int) -> None:
    """Compute, outside any compiled or recorded pass, what the model caches and a pass reads: the relative-position
    bias for `frames` and the weight-normalised weights. Filled inside a compiled pass, a cache would make the next
    call fail the pass's guards and compile again."""
    model.rel_bias(frames)
    for module in model.modules():
        if hasattr(module, "weight_v") and callable(getattr(module, "weight", None)):
            module.weight()


def record_cuda_graph(run, pool):
    """Record what `run()` launches as a CUDA graph (after two warm-up runs on a side stream, which set up the
    allocator, library workspaces and the model's cached tensors) -> (graph, the outputs it writes on replay)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):
            run()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool):
        outputs = run()
    return graph, outputs
