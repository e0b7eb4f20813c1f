"""The commands that serve other front ends: the web studio (with upstream's /vamp API and the HARP endpoint) and
the OSC bridge."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..devices import check_device
from ..harp import add_endpoint
from ..osc import serve
from ..ui import launch
from ..unloop import LISTEN_PORT, REPLY_PORT
from ..unloop import serve as serve_unloop
from ..upstream_api import add_endpoints
from .common import MODELS_HELP, app


@app.command()
def ui(
    models: Optional[str] = typer.Option(None, "--models", help=MODELS_HELP),
    host: str = typer.Option("127.0.0.1", help="address to serve on (0.0.0.0 exposes it to the network)"),
    port: int = typer.Option(7860, min=1, max=65535, help="port to serve on"),
    device: str = typer.Option("cpu", help="torch device (cpu, cuda, mps)"),
    concurrency: int = typer.Option(1, min=1, help="jobs that run at once (the rest wait in the queue)"),
    max_seconds: float = typer.Option(120.0, "--max-seconds", min=1.0, help="longest clip accepted"),
    max_file_mb: float = typer.Option(50.0, "--max-file-mb", min=1.0, help="largest upload accepted"),
    keep_minutes: float = typer.Option(60.0, "--keep-minutes", min=0.02,
                                       help="results stay downloadable this long, then they are deleted"),
    harp: bool = typer.Option(False, "--harp", help="also serve the HARP endpoint (paste the address into HARP)"),
):
    """Start the web studio (gradio) on the shipped model, or --models; also serves the gradio API."""
    check_device(device)  # before the address is printed or a signal handler set
    typer.echo(f"vampnet studio on http://{host}:{port} (Ctrl+C stops it)", err=True)
    if harp:
        typer.echo(f"HARP endpoint: paste http://{'localhost' if host == '127.0.0.1' else host}:{port} into HARP", err=True)
    launch(models, host=host, port=port, device=device, concurrency=concurrency, max_seconds=max_seconds,
           max_file_mb=max_file_mb, keep_s=keep_minutes * 60,
           extensions=[add_endpoints, *([add_endpoint] if harp else [])])  # upstream's /vamp, /vamp_1 always


@app.command()
def osc(
    models: Optional[str] = typer.Option(None, "--models", help=MODELS_HELP),
    host: str = typer.Option("127.0.0.1", help="address to listen on (0.0.0.0: from other machines too)"),
    port: Optional[int] = typer.Option(None, "--port", "--listen-port", min=1, max=65535,
                                       help=f"UDP port the looper sends to (default 57130; with --unloop {LISTEN_PORT})"),
    reply_port: Optional[int] = typer.Option(None, "--reply-port", min=1, max=65535,
                                             help="send replies to this port (default: the port each message came "
                                                  f"from; with --unloop {REPLY_PORT})"),
    out: Optional[Path] = typer.Option(None, "--out", help="folder for the variations (default: $VAMPNET_HOME/osc, "
                                                          "with --unloop $VAMPNET_HOME/unloop)"),
    ahead: int = typer.Option(1, min=0, max=8, help="variations kept ready ahead"),
    device: str = typer.Option("cpu", help="torch device (cpu, cuda, mps)"),
    max_seconds: float = typer.Option(60.0, "--max-seconds", min=1.0, help="longest loop accepted"),
    unloop: bool = typer.Option(False, "--unloop", help="speak unloop's protocol (upstream VampNet's Max looper: "
                                                        "/process, /heartbeat, /cleanup) instead of ours"),
):
    """OSC bridge for live looping: /vampnet/loop PATH, /vampnet/next; replies /vampnet/result OUT (see README).
    With --unloop it serves upstream VampNet's unloop Max patch in place of its client.py."""
    check_device(device)

    def ready(address):
        name = "unloop bridge" if unloop else "OSC bridge"
        typer.echo(f"vampnet {name} on udp://{address[0]}:{address[1]} (Ctrl+C stops it)", err=True)

    if unloop:
        serve_unloop(models, out, host=host, port=port or LISTEN_PORT, reply_port=reply_port or REPLY_PORT,
                     device=device, max_seconds=max_seconds, on_ready=ready)
    else:
        serve(models, out, host=host, port=port or 57130, reply_port=reply_port, ahead=ahead, device=device,
              max_seconds=max_seconds, on_ready=ready)
