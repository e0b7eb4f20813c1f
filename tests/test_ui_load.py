"""The studio under load: 8 jobs at once through the API all complete, queued beyond `--concurrency`; a job over
the duration limit is refused with a message while the others go on; the jobs leave exactly their results behind,
and stopping the server (SIGTERM) deletes those, the uploads and gradio's copies. (Deletion after the keep time is
tested on the studio itself in test_ui.py.)"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf

from conftest import free_port, sine_mix

CONCURRENCY = 2


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


@pytest.mark.slow
def test_eight_jobs_queue_limits_refuse_one_and_temporary_files_go(tmp_path):
    client_mod = pytest.importorskip("gradio_client")

    tmp_root, gradio_tmp = tmp_path / "tmp", tmp_path / "gradio"
    tmp_root.mkdir()
    clip, too_long = tmp_path / "clip.wav", tmp_path / "long.wav"
    sf.write(clip, sine_mix(1.5, 22050), 22050)
    sf.write(too_long, sine_mix(4.0, 22050, seed=1), 22050)
    port = free_port()
    env = {**os.environ, "TMPDIR": str(tmp_root), "GRADIO_TEMP_DIR": str(gradio_tmp)}
    log = open(tmp_path / "server.log", "w")
    server = subprocess.Popen([sys.executable, "-c", "from vampnet.cli import run; run()", "ui", "--port", str(port),
                               "--concurrency", str(CONCURRENCY), "--max-seconds", "3"], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.time() + 120
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
            assert time.time() < deadline, "vampnet ui did not start within 120 s"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.3)
        results_dir = next(tmp_root.glob("vampnet-ui-*"))  # the studio's private results folder

        client = client_mod.Client(f"http://127.0.0.1:{port}/", verbose=False)
        submit = lambda path, seed: client.submit(audio=client_mod.handle_file(str(path)), steps=4, seed=seed,
                                                  api_name="/generate")
        refused = submit(too_long, 99)
        jobs = [submit(clip, seed) for seed in range(8)]
        deadline = time.time() + 600
        while not all(j.done() for j in jobs + [refused]):
            assert time.time() < deadline, "the jobs did not finish within 600 s"
            time.sleep(0.1)

        with pytest.raises(Exception, match="longer than 3 s"):
            refused.result()
        for seed, job in enumerate(jobs):
            out = job.result()
            data, sr = sf.read(out[0])
            assert sr == 22050 and abs(len(data) / sr - 1.5) < 0.05
            assert out[-1]["seeds"] == [seed]
        # the server's own clock: never more than --concurrency jobs at once, and the rest waited their turn
        spans = [(job.result()[-1]["timing"]["started"], job.result()[-1]["timing"]["seconds"]) for job in jobs]
        spans = [(start, start + seconds) for start, seconds in spans]
        running_at = lambda t: sum(a <= t < b for a, b in spans)
        assert max(running_at(a) for a, _ in spans) <= CONCURRENCY
        waited = sum(any(a >= b_other for _, b_other in spans) for a, _ in spans)
        assert waited >= 8 - CONCURRENCY - 1  # (one slot was first taken by the refused job)
        assert len(files_under(results_dir)) == 8  # one result per job, nothing else left behind
        assert files_under(gradio_tmp)             # uploads and served copies, for now

    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
            raise
        log.close()
    assert server.returncode is not None
    assert not results_dir.exists()        # stopping removes every result
    assert files_under(gradio_tmp) == []   # and gradio's cache
