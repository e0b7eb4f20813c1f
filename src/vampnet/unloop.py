"""unloop's protocol (`vampnet osc --unloop`): upstream VampNet's live looper, a Max patch, served directly, in
place of upstream's `unloop/client.py` and the gradio app behind it. This module only translates unloop's
messages into a loop job (`vampnet.modes.loop`) and its results into unloop's files and replies.

Messages in (UDP, default 127.0.0.1:8001), as the patch sends them:
  /process QUERY_ID CLIENT_TYPE AUDIO_PATH MODEL_CHOICE PERIODIC DROPOUT SEED LOOPLENGTH_MS TYPICAL_FILTER
           TYPICAL_MASS TYPICAL_MIN_TOKENS UPPER_CODEBOOK_MASK ONSET_MASK_WIDTH SAMPLING_STEPS TEMPERATURE TOP_P
           BEAT_MASK_MS NUM_FEEDBACK_STEPS
  /heartbeat                 answered with /heartbeat "pong"
  /cleanup PATH              delete a result file this bridge wrote (any other path is refused)
Messages out (to the sender's host at the reply port, default 8003):
  /progress QUERY_ID STAGE   while a query runs ("queued", "coarse 3/36", ...)
  /log MESSAGE               what happened ("query 7 has been processed")
  /error MESSAGE             one line: a bad path, bad arguments, an unknown model
  /process-result QUERY_ID FILE1 FILE2   two variations (seeds SEED and SEED + 1), written as WAV
unloop's conventions, kept: the first LOOPLENGTH_MS of the recording is the loop and is vamped (here it comes back
seamless and exactly as long); whatever the recording holds past it is appended back unchanged; files are 48 kHz
mono, at the loop's loudness. Unlike upstream, the recording itself is never rewritten."""
from __future__ import annotations

import math
import queue
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from . import audio, modes, options
from .errors import OptionError, VampNetError
from .osc import run_bridge, udp_server
from .pretrained import home
from .prompts import PromptConfig
from .studio import Studio

RATE = 48_000           # unloop's files are 48 kHz
N_VARIATIONS = 2        # the patch takes two files per query
BEAT_BEFORE_S = modes.UPSTREAM_BEAT_BEFORE_S  # upstream's beat mask starts 0.1 s before each beat
LISTEN_PORT, REPLY_PORT = 8001, 8003
FIXED = ("query_id", "client_type", "audio_path")


@dataclass(frozen=True)
class Param:
    """One of /process's arguments: our option it sets (`section.field`: prompt, sampling or job), how its value
    converts to ours (units, what means "off"), and the range it is checked against first."""

    name: str
    option: str
    kind: type
    low: float | None = None
    high: float | None = None
    convert: Callable = lambda v: v
    low_open: bool = False  # low itself is outside the range


# unloop's arguments after query_id, client_type and audio_path, in the order the patch sends them. This one
# table is the mapping (a later option schema can take its place).
PARAMS = (
    Param("model_choice", "job.model", str, convert=lambda v: None if v in ("default", "") else v),
    Param("periodic", "prompt.periodic_prompt", int, 0),                        # keep every P-th frame (0: none)
    Param("dropout", "prompt.dropout", float, 0, 1),
    Param("seed", "job.seed", int, convert=lambda v: v if v > 0 else None),    # 0 (or less): a fresh seed
    Param("looplength_ms", "job.loop_seconds", float, 0, convert=lambda v: v / 1000, low_open=True),
    Param("typical_filter", "sampling.typical_filtering", int, 0, 1, convert=bool),
    Param("typical_mass", "sampling.typical_mass", float, 0, 1, low_open=True),
    Param("typical_min_tokens", "sampling.typical_min_tokens", int, 1),
    Param("upper_codebook_mask", "prompt.upper_codebook_mask", int, 0),         # generate from this codebook up
    Param("onset_mask_width", "job.onset_width", int, 0),                       # frames kept each side of onsets
    Param("sampling_steps", "sampling.steps", int, 1),
    Param("temperature", "sampling.temperature", float, 0),
    Param("top_p", "sampling.top_p", float, 0, 1, convert=lambda v: v if v > 0 else None),  # 0: off
    Param("beat_mask_ms", "job.beat_after_s", float, 0, convert=lambda v: v / 1000),  # 0: off
    Param("num_feedback_steps", "job.feedback", int, 0, 16, convert=lambda v: max(0, v - 1)),  # vamps in all
)
N_ARGS = len(FIXED) + len(PARAMS)
# what unloop's requests leave to upstream's defaults: a periodic prompt one frame wide, rolled at random
UNLOOP_PROMPT = PromptConfig(random_roll=True)


@dataclass(frozen=True)
class Query:
    """One /process request in our terms."""

    query_id: object
    path: Path
    prompt: dict
    sampling: dict
    job: dict


def check_param(p: Param, value):
    """`value` as `p`'s kind, checked against its range (before `p.convert`); an OptionError naming `p` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise OptionError(f"{p.name} must be a number, got {value!r}") from None
    if not math.isfinite(value) or (p.kind is int and value != int(value)):
        raise OptionError(f"{p.name} must be a whole number, got {value!r}" if p.kind is int
                          else f"{p.name} must be a finite number, got {value!r}")
    value = p.kind(value)
    if (p.low is not None and (value < p.low or (p.low_open and value == p.low))) or (
            p.high is not None and value > p.high):
        low = f"above {p.low:g}" if p.low_open else f"at least {p.low:g}"
        bound = f"{low} and at most {p.high:g}" if p.high is not None else low
        raise OptionError(f"{p.name} must be {bound}, got {value:g}")
    return value


def parse_process(args) -> Query:
    """/process's arguments -> a Query; anything out of place is an OptionError naming the argument."""
    args = list(args)
    if len(args) != N_ARGS:
        raise OptionError(f"/process takes {N_ARGS} arguments ({', '.join(FIXED + tuple(p.name for p in PARAMS))}), "
                          f"got {len(args)}")
    query_id, client_type, path = args[:3]
    if client_type != "vampnet":
        raise OptionError(f"client_type {client_type!r} is not served here; this bridge is vampnet")
    sections: dict[str, dict] = {"prompt": {}, "sampling": {}, "job": {}}
    for p, value in zip(PARAMS, args[3:]):
        if p.kind is str:
            value = str(value)
        else:
            value = check_param(p, value)
        section, name = p.option.split(".")
        sections[section][name] = p.convert(value)
    if not str(path).strip():
        raise OptionError("audio_path is empty")
    return Query(query_id, Path(str(path)).expanduser(), sections["prompt"], sections["sampling"], sections["job"])


class UnloopBridge:
    """unloop's queries, one at a time in a worker thread (heartbeats are answered meanwhile), each made into two
    loop variations with the tail appended; the files it wrote, which /cleanup may delete."""

    def __init__(self, studio: Studio, out_dir, reply: Callable[[tuple, str, list], None]):
        self.studio, self.reply = studio, reply
        self.out_dir = Path(out_dir)
        self.written: set[Path] = set()
        self._count = 0
        self._lock = threading.Lock()
        self._queries: queue.Queue = queue.Queue()
        self._worker = threading.Thread(target=self._work, name="vampnet-unloop-worker", daemon=True)
        self._worker.start()

    def process(self, sender: tuple, *args) -> None:
        query = parse_process(args)  # bad arguments are answered at once
        self.reply(sender, "/progress", [query.query_id, "queued"])
        self._queries.put((sender, query))

    def heartbeat(self, sender: tuple, *args) -> None:
        self.reply(sender, "/heartbeat", ["pong"])

    def cleanup(self, sender: tuple, *args) -> None:
        if len(args) != 1:
            raise OptionError("/cleanup takes one path")
        path = Path(str(args[0])).expanduser().resolve()
        with self._lock:
            if path not in self.written:
                raise OptionError(f"/cleanup: {args[0]} is not a file this bridge wrote; left alone")
            self.written.discard(path)
        path.unlink(missing_ok=True)
        self.reply(sender, "/log", [f"deleted {path}"])

    def close(self) -> None:
        self._queries.put(None)
        self._worker.join(30)

    def _work(self) -> None:
        while (item := self._queries.get()) is not None:
            sender, query = item
            try:
                files = self._run(sender, query)
            except Exception as e:  # noqa: BLE001  (the patch gets one line and the bridge goes on)
                message = str(e) if isinstance(e, VampNetError) else f"unexpected error: {type(e).__name__}: {e}"
                self.reply(sender, "/error", [f"query {query.query_id}: {message}"])
                continue
            self.reply(sender, "/log", [f"query {query.query_id} has been processed"])
            self.reply(sender, "/process-result", [query.query_id, *map(str, files)])

    def _run(self, sender: tuple, query: Query) -> list[Path]:
        started = time.monotonic()
        job = query.job
        wav, sr = self.studio.read_input(query.path)  # a missing or unreadable file is an AudioError
        mono = audio.to_mono(wav)
        n_loop = modes.loop_samples(job["loop_seconds"], sr)
        if n_loop > mono.shape[-1]:
            raise OptionError(f"looplength_ms {job['loop_seconds'] * 1000:g} is longer than the recording "
                              f"({mono.shape[-1] / sr * 1000:.0f} ms)")
        region, tail = mono[..., :n_loop], mono[..., n_loop:]
        pipe = self.studio.pipeline(job["model"])
        prompt = options.with_changes(UNLOOP_PROMPT, **query.prompt)
        prompt, _ = options.with_tracked_times(prompt, region, sr, beat_before_s=BEAT_BEFORE_S,
                                               beat_after_s=job["beat_after_s"], onset_width=job["onset_width"])
        sampling, c2f_sampling = options.sampling_configs(**query.sampling)
        seed = options.seed_or_new(job["seed"])
        result = modes.loop(pipe, region, sr, variations=N_VARIATIONS, prompt=prompt, feedback=job["feedback"],
                            output_rate=RATE, sampling=sampling, c2f_sampling=c2f_sampling, seed=seed,
                            progress=_progress(self.reply, sender, query.query_id))
        tail = tail if sr == RATE else audio.resample(tail, sr, RATE)
        files = []
        for v in result.variations:
            out = self._new_path(query, v.settings["seed"])
            audio.save(out, torch.cat([v.audio, tail], -1), RATE,
                       metadata={**v.settings, "unloop_query": str(query.query_id),
                                 "seconds": round(time.monotonic() - started, 3)})
            files.append(out)
        return files

    def _new_path(self, query: Query, seed: int) -> Path:
        with self._lock:
            self._count += 1
            name = re.sub(r"[^A-Za-z0-9_-]+", "_", f"{query.path.stem}-q{query.query_id}")[:80]
            out = (self.out_dir / f"{name}-{self._count:05d}-s{seed}.wav").resolve()
            self.written.add(out)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        return out


def _progress(reply, sender, query_id, every_s: float = 0.1):
    """The pipeline's progress as /progress QUERY_ID "STAGE DONE/TOTAL", at most every `every_s` (and each stage's
    end), so the patch sees the job move without a flood of messages."""
    last = [0.0]

    def report(stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done >= total or now - last[0] >= every_s:
            last[0] = now
            reply(sender, "/progress", [query_id, f"{stage} {done}/{total}"])
    return report


def make_unloop_server(studio: Studio, out_dir, *, host: str = "127.0.0.1", port: int = LISTEN_PORT,
                       reply_port: int | None = REPLY_PORT):
    """The UDP server for unloop's Max patch and its bridge; `server.serve_forever()` runs it."""
    server, reply, route = udp_server(host, port, reply_port, "/error", "unloop sends /process, /heartbeat, /cleanup")
    bridge = UnloopBridge(studio, out_dir, reply)
    route("/process", bridge.process)
    route("/heartbeat", bridge.heartbeat)
    route("/cleanup", bridge.cleanup)
    return server, bridge


def serve(models: str | None = None, out_dir=None, *, host: str = "127.0.0.1", port: int = LISTEN_PORT,
          reply_port: int = REPLY_PORT, device: str = "cpu", max_seconds: float = 60.0,
          on_ready: Callable[[tuple], None] | None = None) -> None:
    """Serve unloop's patch until interrupted (the model is loaded first, so a bad --models fails at once)."""
    run_bridge(make_unloop_server, models, out_dir or home() / "unloop", device=device, max_seconds=max_seconds,
               on_ready=on_ready, host=host, port=port, reply_port=reply_port)
