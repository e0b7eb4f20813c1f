"""Shared test fixtures: the reference fixture sets, tiny models, and short synthetic audio."""
from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
SET_A = ROOT / "tests" / "fixtures_a"  # made by the original code (see its README.txt)
SET_B = ROOT / "tests" / "fixtures_b"
FIXTURE_SETS = {"set_a": SET_A, "set_b": SET_B}

# The default precision is "auto" (bf16 on CPUs with bf16 instructions); the suite runs the original's exact numbers
# on every CPU so that its known values hold wherever it runs (the tests of auto itself clear this).
os.environ.setdefault("VAMPNET_PRECISION", "fp32")


def benchmark_script(name: str):
    """A script of benchmarks/ imported as a module (they are scripts, not a package)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sine_mix(seconds: float, sr: int = 44100, seed: int = 0) -> np.ndarray:
    """A deterministic musical-ish test signal: two partials with a tremolo and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.15 * np.sin(2 * np.pi * 330 * t + 1.0)
    x *= 0.6 + 0.4 * np.sin(2 * np.pi * 2 * t)
    return (x + 0.01 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture(scope="session")
def set_a() -> Path:
    assert SET_A.is_dir(), f"reference fixtures missing at {SET_A}"
    return SET_A


@pytest.fixture(scope="session")
def codec_a(set_a):
    from vampnet import Codec

    return Codec.load(set_a / "codec.pth")


@pytest.fixture(scope="session")
def coarse_a(set_a, codec_a):
    from vampnet import MaskedTransformer

    return MaskedTransformer.load(set_a / "coarse.pth", codec_a)


@pytest.fixture(scope="session")
def c2f_a(set_a, codec_a):
    from vampnet import MaskedTransformer

    return MaskedTransformer.load(set_a / "c2f.pth", codec_a)


@pytest.fixture(scope="session")
def pipeline_a(codec_a, coarse_a, c2f_a):
    from vampnet import Pipeline

    return Pipeline(codec_a, coarse_a, c2f_a)


@pytest.fixture(scope="session")
def tiny_pipeline():
    """A random-weight pipeline small enough that a whole vamp of seconds of audio takes a fraction of a second
    (22.05 kHz, hop 64, 4 codebooks of 64; 1-layer transformers): for tests of the flow, not of the numbers."""
    import torch

    from vampnet import Codec, MaskedTransformer, Pipeline
    from vampnet.codec import CodecConfig
    from vampnet.model.transformer import TransformerConfig

    torch.manual_seed(0)
    codec = Codec(CodecConfig(encoder_dim=4, encoder_rates=(4, 4, 4), decoder_dim=16, decoder_rates=(4, 4, 4),
                              n_codebooks=4, codebook_size=64, sample_rate=22050)).eval()
    size = dict(vocab_size=64, latent_dim=codec.config.codebook_dim, embedding_dim=32, n_heads=2, n_layers=1)
    coarse = MaskedTransformer(TransformerConfig(n_codebooks=2, **size)).eval()
    c2f = MaskedTransformer(TransformerConfig(n_codebooks=4, n_conditioning_codebooks=2, **size)).eval()
    with torch.no_grad():  # the embeddings read the codec's codebooks, as in every trained model
        for model in (coarse, c2f):
            k = model.n_codebooks
            model.embedding.codebooks.copy_(torch.stack([q.codebook.weight for q in codec.quantizer.quantizers[:k]]))
    return Pipeline(codec, coarse, c2f)


@pytest.fixture(scope="session")
def ours_dir(tmp_path_factory, set_a) -> Path:
    """Set A converted to our safetensors format."""
    from vampnet.checkpoints import convert_folder

    out = tmp_path_factory.mktemp("ours")
    convert_folder(set_a, out)
    return out


@pytest.fixture
def wav_file(tmp_path) -> Path:
    path = tmp_path / "in.wav"
    sf.write(path, sine_mix(2.5), 44100)
    return path


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(0)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, tiny_pipeline):
    """The tiny pipeline saved as a model folder (`base`), and a LoRA fine-tune of it on a few seconds of tones,
    made by `finetune` into a models folder (`home`/models/mine); tests point $VAMPNET_HOME at `home`."""
    from vampnet.train.finetune import finetune

    root = tmp_path_factory.mktemp("models")
    base = root / "tiny"
    base.mkdir()
    save_model_folder(base, tiny_pipeline.codec, tiny_pipeline.coarse, tiny_pipeline.c2f)
    audio = root / "my-recordings"
    audio.mkdir()
    for i in range(2):
        sf.write(audio / f"take{i}.wav", sine_mix(1.5, 22050, seed=i), 22050)
    home = root / "home"
    finetune([audio], base, home / "models" / "mine", steps=2, lora_rank=2, batch_size=2, excerpt_s=1.0, seed=0,
             progress=False)
    return {"home": home, "base": base, "audio": audio, "tuned": home / "models" / "mine"}


@pytest.fixture
def models_home(tiny_models, monkeypatch):
    """$VAMPNET_HOME pointing at the folder whose models/ holds the fine-tuned 'mine'."""
    monkeypatch.setenv("VAMPNET_HOME", str(tiny_models["home"]))
    return tiny_models


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for test servers)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def save_model_folder(folder: Path, codec, coarse, c2f) -> Path:
    """A model folder (codec/coarse/c2f.safetensors) that --models and Pipeline.load read."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, model in (("codec", codec), ("coarse", coarse), ("c2f", c2f)):
        model.save(folder / f"{name}.safetensors")
    return folder


@pytest.fixture
def udp_peer():
    """A localhost UDP socket that sends from, and receives replies on, one port: the looper's or Max patch's side
    of an OSC bridge test (replies time out after 60 s rather than hang)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(60.0)
    yield sock
    sock.close()


def osc_send(sock, address, target, *args):
    """Send one OSC message from `sock` to `target` (the role of a looper or a Max patch)."""
    from pythonosc.osc_message_builder import OscMessageBuilder  # the `osc` extra

    message = OscMessageBuilder(address)
    for a in args:
        message.add_arg(a)
    sock.sendto(message.build().dgram, target)


def osc_receive(sock) -> tuple[str, list]:
    """The next OSC message `sock` receives: (address, arguments)."""
    from pythonosc.osc_message import OscMessage  # the `osc` extra

    data, _ = sock.recvfrom(65536)
    message = OscMessage(data)
    return message.address, list(message.params)


@contextmanager
def served_app(app, concurrency: int | None = None):
    """A gradio app (the studio's page and its extensions) queued and served in this process on a free localhost
    port; yields its base URL ("http://127.0.0.1:PORT/") and closes it afterwards."""
    app.queue(**({} if concurrency is None else {"default_concurrency_limit": concurrency}))
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        app.close()


@pytest.fixture
def written(monkeypatch) -> list[tuple[Path, VampResult]]:
    """Every result a front end writes, in order, with its path (every front end writes through VampResult.save)."""
    from vampnet.pipeline import VampResult
    saved = []
    save = VampResult.save

    def recording_save(self, path, *args, **kwargs):
        saved.append((Path(path), self))
        return save(self, path, *args, **kwargs)

    monkeypatch.setattr(VampResult, "save", recording_save)
    return saved
