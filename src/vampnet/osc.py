"""The OSC bridge for live looping (`vampnet osc`): a looper sends the path of a recorded loop and receives the path
of a variation once it is written; more variations of the same loop are generated ahead, so asking for the next
one is answered at once and a looper never waits a whole bar.

Messages in (UDP, to --port; every option is a key/value pair after the fixed arguments):
  /vampnet/loop PATH [key value ...]   a new loop: forget the variations queued for the last one, vary this file
  /vampnet/next [key value ...]        the next variation of the current loop (options apply from this one on)
  /vampnet/ahead N                     keep N variations ready ahead (0 to 8; default --ahead)
  /vampnet/stop                        stop the running job and forget the loop
Messages out (to the sender's address, or its host at --reply-port):
  /vampnet/result OUT SOURCE SEED PRECISION   a variation of SOURCE was written (atomically; WAV unless file_type
                                       says) at OUT, by the models in PRECISION (fp32, bf16 or int8: what auto chose)
  /vampnet/error MESSAGE               one line saying what went wrong
Options are the studio's settings (vampnet.ui.Settings) by name: mode (loop: seamless, the default; or vamp),
preset, periodic, periodic_width, upper_codebooks, beats, downbeats, onsets, dropout, temperature, top_p, steps,
seed (-1: random; variations count up from it), loop_seconds, model, precision (and the pipeline's window, overlap,
c2f_chunk, c2f_batch_size, capture), and the result file's file_type,
sample_rate, channels, bit_depth (by default the input's rate and format). A key /loop does not send takes the
model's own default (its card's, else the schema's; `ui.model_settings`); /next changes only the keys it sends.
A looper that loads the file on the next bar keeps time: /next is answered from the queue while the queue refills.

This module only translates: messages become Settings and jobs of `Studio.generate`, one at a time, in a worker
thread; `LoopBridge` holds the state and is usable without a network (`serve` adds the UDP server)."""
from __future__ import annotations

import shutil
import threading
from collections import deque
from dataclasses import fields, replace
from pathlib import Path
from typing import Callable

from .errors import Cancelled, OptionError, VampNetError
from .options import seed_or_new
from .pretrained import home
from .serialization import atomic_path
from .studio import Studio
from .ui import Settings, model_settings

PREFIX = "/vampnet"
MODES = ("loop", "vamp")
OPTIONS = tuple(f.name for f in fields(Settings) if f.name not in ("variations",))
MAX_AHEAD = 8

Reply = Callable[[tuple, str, list], None]  # (address to answer, OSC address, arguments)


def parse_options(args, base: Settings, model_defaults: Callable[[str], dict] | None = None) -> Settings:
    """`base` with the key/value pairs of an OSC message's arguments applied; `model_defaults(model)` (the model's
    own settings, for a fresh start) comes between them, for the model the message names, else `base`'s."""
    args = list(args)
    if len(args) % 2:
        raise OptionError(f"options come in key/value pairs; got {len(args)} arguments")
    changes = {}
    for key, value in zip(args[::2], args[1::2]):
        if key not in OPTIONS:
            raise OptionError(f"unknown option {key!r}; options are {', '.join(OPTIONS)}")
        changes[key] = value
    card = model_defaults(str(changes.get("model") or base.model)) if model_defaults is not None else {}
    settings = Settings.from_values({**base.to_dict(), **card, **changes})
    if settings.mode not in MODES:
        raise OptionError(f"mode must be one of {', '.join(MODES)} here, got {settings.mode!r}")
    return settings


class LoopBridge:
    """The bridge without the network: the current loop and its settings, the variations ready, the requests
    waiting for one; a worker thread makes variations (seed, seed + 1, ...) through the studio, first for waiting
    requests, then until `ahead` are ready. A new loop, new options or stop cancel the job in progress."""

    def __init__(self, studio: Studio, out_dir, reply: Reply, *, ahead: int = 1, defaults: Settings | None = None):
        self.studio, self.reply = studio, reply
        self.out_dir = Path(out_dir)
        self.defaults = defaults or Settings(mode="loop", model=studio.default_model)
        self.ahead = _check_ahead(ahead)
        self._cond = threading.Condition()
        self._source: Path | None = None
        self._settings = self.defaults
        self._generation = 0          # bumped whenever what is queued becomes stale
        self._next_seed = 0
        self._written = 0
        self.ready: deque[tuple[Path, int, str]] = deque()
        self._waiting: deque[tuple] = deque()
        self._cancel = threading.Event()
        self._closed = False
        self._worker = threading.Thread(target=self._work, name="vampnet-osc-worker", daemon=True)
        self._worker.start()

    # --- requests (called by the server's handlers; they only change state) ---------------------------------
    def loop(self, sender: tuple, path: str, *options) -> None:
        settings = parse_options(options, self.defaults, lambda model: model_settings(self.studio, model))
        with self._cond:
            self._restart(settings)
            self._source = Path(str(path)).expanduser()
            self._waiting.clear()  # requests for the last loop are moot
            self._waiting.append(sender)
            self._cond.notify_all()

    def next(self, sender: tuple, *options) -> None:
        with self._cond:
            if self._source is None:
                raise OptionError(f"no loop yet: send {PREFIX}/loop PATH first")
            if options:
                self._restart(parse_options(options, self._settings))
            if self.ready:
                out, seed, precision = self.ready.popleft()
                self.reply(sender, f"{PREFIX}/result", [str(out), str(self._source), seed, precision])
            else:
                self._waiting.append(sender)
            self._cond.notify_all()

    def set_ahead(self, n) -> None:
        with self._cond:
            self.ahead = _check_ahead(n)
            while len(self.ready) > self.ahead:
                self.ready.pop()
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._restart(self._settings)
            self._source = None
            self._waiting.clear()
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cancel.set()
            self._cond.notify_all()
        self._worker.join(30)

    # --- the worker --------------------------------------------------------------------------------------------
    def _restart(self, settings: Settings) -> None:
        """Forget the variations made for another loop or other options, and stop the job in progress (requests
        still waiting are answered with the next variation made)."""
        self._generation += 1
        self._settings = settings
        self._next_seed = seed_or_new(settings.seed)
        self.ready.clear()
        self._cancel.set()

    def _work(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or (self._source is not None and (
                    self._waiting or len(self.ready) < self.ahead)))
                if self._closed:
                    return
                generation, source = self._generation, self._source
                settings = replace(self._settings, seed=self._next_seed, variations=1)
                self._next_seed += 1
                self._cancel = cancel = threading.Event()
            try:
                out, precision = self._make(source, settings, cancel)
            except Cancelled:
                continue
            except Exception as e:  # noqa: BLE001  (a looper gets one line, never a traceback)
                message = str(e) if isinstance(e, VampNetError) else f"unexpected error: {type(e).__name__}: {e}"
                with self._cond:
                    if generation == self._generation:  # the loop cannot be varied: say so and stop trying
                        for sender in self._waiting:
                            self.reply(sender, f"{PREFIX}/error", [message])
                        self._waiting.clear()
                        self._source = None
                continue
            with self._cond:
                if generation != self._generation:
                    continue
                if self._waiting:
                    self.reply(self._waiting.popleft(), f"{PREFIX}/result",
                               [str(out), str(source), settings.seed, precision])
                else:
                    self.ready.append((out, settings.seed, precision))

    def _make(self, source: Path, settings: Settings, cancel: threading.Event) -> tuple[Path, str]:
        result = self.studio.generate(source, settings, cancel=cancel)
        self._written += 1
        out = self.out_dir / f"{source.stem}-{self._written:04d}-s{settings.seed}{result.audio[0].suffix}"
        with atomic_path(out) as tmp:
            shutil.copyfile(result.audio[0], tmp)
        return out, result.settings["precision_used"]


def _check_ahead(n) -> int:
    try:
        n = int(n)
    except (TypeError, ValueError):
        raise OptionError(f"ahead takes a number of variations, got {n!r}") from None
    if not 0 <= n <= MAX_AHEAD:
        raise OptionError(f"ahead must be 0 to {MAX_AHEAD}, got {n}")
    return n


def udp_server(host: str, port: int, reply_port: int | None, error_address: str, unknown: str):
    """A python-osc UDP server with what every bridge needs: `reply(sender, address, args)` answers the sender's
    host (at `reply_port` when given, else at the port it sent from), and `route(address, method)` maps a message
    to `method(sender, *args)`, whose errors are answered at `error_address` as one line while the server keeps
    serving; messages nobody routes are answered "unknown message ADDRESS; `unknown`". `serve_forever()` runs it."""
    try:
        from pythonosc.dispatcher import Dispatcher
        from pythonosc.osc_message_builder import OscMessageBuilder
        from pythonosc.osc_server import BlockingOSCUDPServer
    except ImportError:
        raise OptionError("the OSC bridge needs python-osc: pip install 'vampnet[osc]'") from None

    def reply(sender: tuple, address: str, args: list) -> None:
        target = (sender[0], reply_port or sender[1])
        message = OscMessageBuilder(address)
        for arg in args:
            message.add_arg(arg)
        try:
            server.socket.sendto(message.build().dgram, target)
        except OSError:  # a looper that went away must not stop the bridge
            pass

    def route(address: str, method) -> None:
        def handle(sender, address, *args):
            try:
                method(sender, *args)
            except VampNetError as e:
                reply(sender, error_address, [str(e)])
            except Exception as e:  # noqa: BLE001  (the bridge keeps running; the looper gets one line)
                reply(sender, error_address, [f"unexpected error in {address}: {type(e).__name__}: {e}"])
        dispatcher.map(address, handle, needs_reply_address=True)

    dispatcher = Dispatcher()
    dispatcher.set_default_handler(lambda sender, address, *args: reply(
        sender, error_address, [f"unknown message {address}; {unknown}"]), needs_reply_address=True)
    server = BlockingOSCUDPServer((host, port), dispatcher)
    return server, reply, route


def make_server(studio: Studio, out_dir, *, host: str = "127.0.0.1", port: int = 57130, reply_port: int | None = None,
                ahead: int = 1, defaults: Settings | None = None):
    """The UDP server (python-osc) and its bridge; `server.serve_forever()` runs it, `shutdown()` stops it."""
    server, reply, route = udp_server(host, port, reply_port, f"{PREFIX}/error",
                                      f"send {PREFIX}/loop, /next, /ahead or /stop")
    bridge = LoopBridge(studio, out_dir, reply, ahead=ahead, defaults=defaults)

    def on_loop(sender, *args):
        if not args or not isinstance(args[0], str):
            raise OptionError(f"{PREFIX}/loop takes the loop's path first, then options")
        bridge.loop(sender, *args)

    def on_ahead(sender, *args):
        if len(args) != 1:
            raise OptionError(f"{PREFIX}/ahead takes one number")
        bridge.set_ahead(args[0])

    route(f"{PREFIX}/loop", on_loop)
    route(f"{PREFIX}/next", bridge.next)
    route(f"{PREFIX}/ahead", on_ahead)
    route(f"{PREFIX}/stop", lambda sender, *args: bridge.stop())
    return server, bridge


def run_bridge(make, models: str | None, out_dir, *, device: str = "cpu", max_seconds: float = 60.0,
               on_ready: Callable[[tuple], None] | None = None, **options) -> None:
    """Serve `make(studio, out_dir, **options)` (a server and its bridge) until interrupted; the model is loaded
    first, so a bad --models fails at once."""
    studio = Studio(models, device=device, max_seconds=max_seconds)
    try:
        studio.pipeline(None)
        server, bridge = make(studio, out_dir, **options)
        try:
            if on_ready:
                on_ready(server.server_address)
            server.serve_forever()
        finally:
            bridge.close()
            server.server_close()
    finally:
        studio.close()


def serve(models: str | None = None, out_dir=None, *, host: str = "127.0.0.1", port: int = 57130,
          reply_port: int | None = None, ahead: int = 1, device: str = "cpu", max_seconds: float = 60.0,
          on_ready: Callable[[tuple], None] | None = None) -> None:
    """Run the bridge until interrupted (the model is loaded first, so a bad --models fails at once)."""
    run_bridge(make_server, models, out_dir or home() / "osc", device=device, max_seconds=max_seconds,
               on_ready=on_ready, host=host, port=port, reply_port=reply_port, ahead=ahead)
