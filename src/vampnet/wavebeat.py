"""WaveBeat (Steinmetz & Reiss 2021) as the "wavebeat" beat tracker: its downsampling TCN (dsTCN) in PyTorch,
built from a PyTorch Lightning checkpoint the user supplies (read without running code), and the peak picking
VampNet's WaveBeat fork applies to its beat and downbeat activations."""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
import torch

from .errors import CheckpointError, TrackerUnavailable
from .serialization import read_lightning_checkpoint


class _DsTCNBlock(torch.nn.Module):
    """Strided dilated conv -> BatchNorm -> PReLU, plus a strided 1x1 residual conv -> BatchNorm."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int, dilation: int, norm: bool):
        super().__init__()
        self.conv1 = torch.nn.Conv1d(in_ch, out_ch, kernel_size, stride=stride, dilation=dilation,
                                     padding=(kernel_size - 1) * dilation // 2)
        self.norm1 = torch.nn.BatchNorm1d(out_ch) if norm else torch.nn.Identity()
        self.act1 = torch.nn.PReLU(out_ch)
        self.res_conv = torch.nn.Conv1d(in_ch, out_ch, 1, stride=stride)
        self.res_norm = torch.nn.BatchNorm1d(out_ch) if norm else torch.nn.Identity()

    def forward(self, x):                               # (B, in_ch, L) -> (B, out_ch, ceil(L / stride))
        return self.act1(self.norm1(self.conv1(x))) + self.res_norm(self.res_conv(x))


class WaveBeat(torch.nn.Module):
    """WaveBeat's downsampling TCN: raw audio at `sample_rate` -> beat and downbeat logits at `frame_rate`.

    Built from a checkpoint's hyper-parameters (`from_checkpoint`); `track` adds the inference of VampNet's WaveBeat
    fork: peak-normalised input, sigmoid activations, peak picking (no DBN)."""

    def __init__(self, nblocks: int = 8, kernel_size: int = 15, stride: int = 2, dilation_growth: int = 8,
                 channel_growth: int = 32, channel_width: int = 32, stack_size: int = 4, ninputs: int = 1,
                 noutputs: int = 2, norm: bool = True, sample_rate: int = 22050, frame_rate: float | None = None):
        super().__init__()
        blocks, in_ch = [], ninputs
        for n in range(nblocks):
            out_ch = channel_width if n == 0 else in_ch + channel_growth
            blocks.append(_DsTCNBlock(in_ch, out_ch, kernel_size, stride, dilation_growth ** (n % stack_size), norm))
            in_ch = out_ch
        self.blocks = torch.nn.ModuleList(blocks)
        self.output = torch.nn.Conv1d(in_ch, noutputs, 1)
        self.sample_rate = int(sample_rate)
        self.frame_rate = float(frame_rate or sample_rate / stride ** nblocks)

    def forward(self, x):                               # (B, 1, N) -> (B, 2, ~N / stride**nblocks) logits
        for block in self.blocks:
            x = block(x)
        return self.output(x)

    @classmethod
    def from_checkpoint(cls, path) -> "WaveBeat":
        """A WaveBeat PyTorch-Lightning checkpoint (.ckpt, or VampNet's wavebeat.pth), read without running code."""
        ckpt = read_lightning_checkpoint(path, "WaveBeat")
        state = ckpt.get("state_dict", ckpt)
        hp = dict(ckpt.get("hyper_parameters") or {})
        if not isinstance(state, dict) or "output.weight" not in state:
            raise CheckpointError(f"{path} is not a WaveBeat checkpoint (no 'output.weight' in its state_dict)")
        state = {k: v for k, v in state.items() if k.startswith(("blocks.", "output."))}  # drop loss buffers
        nblocks = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
        first = state["blocks.0.conv1.weight"]           # (channel_width, ninputs, kernel)
        growth = hp.get("channel_growth")
        if growth is None:
            growth = state["blocks.1.conv1.weight"].shape[0] - first.shape[0] if nblocks > 1 else 0
        if hp.get("norm_type", "BatchNorm") not in ("BatchNorm", None) or hp.get("act_type", "PReLU") != "PReLU" \
                or hp.get("causal") or hp.get("grouped") or hp.get("skip_connections"):
            raise CheckpointError(f"{path}: only the non-causal BatchNorm/PReLU dsTCN of WaveBeat is supported")
        sample_rate = int(hp.get("audio_sample_rate", 22050))
        frame_rate = hp.get("target_sample_rate") or (
            sample_rate / hp["target_factor"] if hp.get("target_factor") else None)
        model = cls(nblocks=nblocks, kernel_size=first.shape[-1], stride=int(hp.get("stride", 2)),
                    dilation_growth=int(hp.get("dilation_growth", 8)), channel_growth=int(growth),
                    channel_width=first.shape[0], stack_size=int(hp.get("stack_size", 4)), ninputs=first.shape[1],
                    noutputs=state["output.weight"].shape[0], norm="blocks.0.norm1.weight" in state,
                    sample_rate=sample_rate, frame_rate=frame_rate)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise CheckpointError(f"{path} does not match the WaveBeat dsTCN: missing {missing[:3]}, "
                                  f"unexpected {unexpected[:3]}")
        return model.eval()

    @torch.inference_mode()
    def activations(self, x: np.ndarray) -> np.ndarray:
        """Mono audio at `sample_rate` -> (2, frames) beat and downbeat probabilities at `frame_rate`."""
        wav = torch.from_numpy(np.asarray(x, dtype=np.float32)).view(1, 1, -1)
        peak = wav.abs().max()
        if peak > 0:
            wav = wav / peak                            # peak-normalised, as WaveBeat's inference
        return torch.sigmoid(self(wav))[0].numpy()

    def track(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mono audio at `sample_rate` -> (beat times, downbeat times), peaks as the VampNet fork picks them."""
        act = self.activations(x)
        return (pick_peaks(act[0], self.frame_rate, min_interval_s=0.25),
                pick_peaks(act[1], self.frame_rate, min_interval_s=0.5))


def pick_peaks(activation: np.ndarray, frame_rate: float, min_interval_s: float, height: float = 0.5) -> np.ndarray:
    """Times (s) of the peaks of an activation normalised to its maximum that reach `height`, at least
    `min_interval_s` apart (scipy.signal.find_peaks with distance = frame_rate * min_interval_s)."""
    from scipy.signal import find_peaks  # optional: only the wavebeat tracker needs scipy (the `beats` extra)

    activation = np.asarray(activation, dtype=np.float64)
    top = np.abs(activation).max() if activation.size else 0.0
    if top == 0:
        return np.zeros(0)
    peaks, _ = find_peaks(activation / top, height=height, distance=max(1, int(frame_rate * min_interval_s)))
    return peaks / frame_rate


@functools.lru_cache(maxsize=4)
def _cached_wavebeat(path: str, mtime: float) -> WaveBeat:
    return WaveBeat.from_checkpoint(path)


def load_wavebeat(checkpoint) -> WaveBeat:
    """The WaveBeat model of a checkpoint file (cached per path and modification time)."""
    path = Path(checkpoint)
    if not path.is_file():
        raise CheckpointError(f"WaveBeat checkpoint not found: {path}")
    if importlib.util.find_spec("scipy") is None:
        raise TrackerUnavailable("the wavebeat tracker needs scipy for peak picking: pip install scipy")
    return _cached_wavebeat(str(path.resolve()), path.stat().st_mtime)
