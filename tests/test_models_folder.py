"""Fine-tuned models by name: `vampnet finetune --name` writes into $VAMPNET_HOME/models, the name resolves to the
base model plus the adapters, the studio's model menu lists it, switching to it reuses the base's codec, and the
CLI vamps with it."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import sine_mix
from vampnet import Pipeline, SamplingConfig, pretrained
from vampnet.cli import main
from vampnet.codec import Codec
from vampnet.errors import CheckpointError
from vampnet.pretrained import MANIFEST, available_models, resolve
from vampnet.ui import Settings, Studio


@pytest.fixture
def clip(tmp_path):
    path = tmp_path / "clip.wav"
    sf.write(path, sine_mix(2.0, 22050, seed=7), 22050)
    return path


def test_a_fine_tuned_name_resolves_to_its_base_and_adapters(models_home):
    assert available_models() == ["small", "small-loudness", "mine"]
    source = resolve("mine")
    assert source.base == models_home["base"] and source.lora == models_home["tuned"] and source.finetuned
    assert json.loads((models_home["tuned"] / MANIFEST).read_text())["base"] == str(models_home["base"].resolve())
    # the same folder given as a path is the same model
    assert resolve(str(models_home["tuned"])).lora == models_home["tuned"]
    tuned, plain = Pipeline.from_pretrained("mine"), Pipeline.load(models_home["base"])
    reference = Pipeline.load(models_home["base"], lora=models_home["tuned"])
    assert torch.equal(tuned.coarse.layers[0].attn.q.weight, reference.coarse.layers[0].attn.q.weight)
    assert not torch.equal(tuned.coarse.layers[0].attn.q.weight, plain.coarse.layers[0].attn.q.weight)


def test_unknown_names_are_errors_that_list_the_models(models_home):
    with pytest.raises(CheckpointError, match=r"nobody.*small, small-loudness, mine"):
        resolve("nobody")


def test_studio_lists_the_fine_tuned_model_and_switching_reuses_the_codec(models_home, clip, monkeypatch):
    loads = []
    original = Codec.load
    monkeypatch.setattr(Codec, "load", staticmethod(lambda *a, **k: loads.append(a) or original(*a, **k)))
    studio = Studio(str(models_home["base"]))
    try:
        assert studio.models() == [str(models_home["base"]), "small", "small-loudness", "mine"]
        base = studio.generate(clip, Settings(model=str(models_home["base"]), steps=4, seed=2))
        tuned = studio.generate(clip, Settings(model="mine", steps=4, seed=2))
        assert len(loads) == 1  # the second model found the codec already loaded
        assert studio.pipeline("mine", "fp32").codec is studio.pipeline(str(models_home["base"]), "fp32").codec
        a, b = (sf.read(r.audio[0])[0] for r in (base, tuned))
        assert a.shape == b.shape and not np.array_equal(a, b)
    finally:
        studio.close()


def test_studio_page_menu_lists_models_fine_tuned_after_start(models_home, tiny_pipeline, monkeypatch, tmp_path):
    pytest.importorskip("gradio")
    from vampnet.ui import build_app

    studio = Studio(pipeline=tiny_pipeline)
    try:
        app = build_app(studio)
        menu = next(b for b in app.blocks.values() if getattr(b, "elem_id", None) == "model")
        assert [c[0] for c in menu.choices] == ["small", "small-loudness", "mine"]
        # a model that appears while the studio runs is offered when the page loads again
        later = models_home["home"] / "models" / "later"
        later.mkdir()
        (later / MANIFEST).write_text((models_home["tuned"] / MANIFEST).read_text())
        try:
            refresh = next(d.fn for d in app.fns.values() if d.targets and d.targets[0][1] == "load")
            assert [c[0] for c in refresh().choices] == ["small", "small-loudness", "later", "mine"]
        finally:
            (later / MANIFEST).unlink()
            later.rmdir()
    finally:
        studio.close()


def test_cli_vamps_with_a_fine_tuned_name(models_home, clip, tmp_path):
    out = tmp_path / "out.wav"
    assert main(["vamp", str(clip), "-o", str(out), "--models", "mine", "--steps", "4", "--seed", "5", "-q"]) == 0
    expected = Pipeline.load(models_home["base"], lora=models_home["tuned"]).vamp_file(
        clip, tmp_path / "expected.wav", sampling=SamplingConfig(steps=4), seed=5)
    assert np.array_equal(sf.read(out)[0], sf.read(tmp_path / "expected.wav")[0])
    assert expected.audio.shape[-1] == sf.info(out).frames


def test_finetune_command_names_and_refuses(models_home, capsys):
    audio = str(models_home["audio"])
    assert main(["finetune", audio, "--name", "small", "-q"]) == 1
    assert "--name 'small'" in capsys.readouterr().err
    assert main(["finetune", audio, "-q"]) == 1  # neither --name nor -o
    assert "--name NAME" in capsys.readouterr().err
    assert main(["finetune", audio, "--base", "mine", "--name", "again", "-q"]) == 1
    assert "fine-tuned model" in capsys.readouterr().err
    assert not (pretrained.models_home() / "again").exists()


def test_full_fine_tunes_and_broken_manifests_resolve_or_say_why(models_home, tmp_path):
    import shutil

    full = tmp_path / "full"
    full.mkdir()
    shutil.copyfile(models_home["base"] / "coarse.safetensors", full / "coarse.safetensors")
    (full / MANIFEST).write_text(json.dumps(pretrained.manifest(str(models_home["base"]), "full")))
    source = resolve(str(full))
    assert source.coarse == full / "coarse.safetensors" and source.c2f is None and source.lora is None
    assert Pipeline.from_pretrained(str(full)).c2f is not None  # the base's c2f with the tuned coarse
    chained = tmp_path / "chained"
    chained.mkdir()
    (chained / MANIFEST).write_text(json.dumps(pretrained.manifest("mine", "lora")))
    with pytest.raises(CheckpointError, match="itself a fine-tuned model"):
        resolve(str(chained))
    (chained / MANIFEST).write_text("{not json")
    with pytest.raises(CheckpointError, match="not a readable fine-tune manifest"):
        resolve(str(chained))


def test_an_interrupted_download_is_not_downloaded_anywhere(tiny_models, clip, tmp_path, monkeypatch, capsys):
    """A download that fails after its first file leaves no 'official' folder: every model menu leaves it out and
    --models official still says to run `vampnet download`; the retry that completes moves all files in at once."""
    import shutil

    import huggingface_hub

    # a home of its own: the download it completes must not show in the shared home's model menus of other tests
    shutil.copytree(tiny_models["home"], tmp_path / "home")
    monkeypatch.setenv("VAMPNET_HOME", str(tmp_path / "home"))

    from vampnet.harp import controls_answer

    def flaky(repo_id, filename, revision=None, local_dir=None, **kw):
        lock = Path(local_dir) / ".cache" / "huggingface" / "download" / f"{filename}.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        lock.touch()  # what huggingface_hub leaves behind while it fetches
        if filename != "codec.pth" and not succeed:
            raise OSError("connection reset")
        target = Path(local_dir) / filename
        target.write_bytes(filename.encode())
        return str(target)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", flaky)
    official = pretrained.home() / pretrained.OFFICIAL
    succeed = False
    assert main(["download"]) == 1
    assert "download of coarse.pth" in capsys.readouterr().err
    assert not official.exists()
    official.mkdir()  # an older version's leftovers: a folder with only the lock file
    (official / ".cache").mkdir()
    (official / ".cache" / "codec.pth.lock").touch()
    (official / "codec.pth").write_bytes(b"codec")
    assert available_models() == ["small", "small-loudness", "mine"]
    with pytest.raises(CheckpointError, match="run 'vampnet download'"):
        resolve("official")
    assert main(["vamp", str(clip), "-o", str(tmp_path / "o.wav"), "--models", "official"]) == 1
    assert "vampnet download" in capsys.readouterr().err
    studio = Studio()
    try:
        assert studio.models() == ["small", "small-loudness", "mine"]
        model_menu = next(e for e in controls_answer(studio)["inputs"] if e.get("label") == "Model")
        assert [c[0] for c in model_menu["choices"]] == ["small", "small-loudness", "mine"]
        succeed = True
        assert main(["download"]) == 0
        assert sorted(p.name for p in official.glob("*.pth")) == ["c2f.pth", "coarse.pth", "codec.pth"]
        assert not (official.parent / ".official.download").exists()
        assert studio.models() == ["small", "small-loudness", "official", "mine"]
        assert resolve("official").base == official
    finally:
        studio.close()


def test_a_bundled_model_may_be_a_whole_model_of_its_own(models_home, tmp_path, monkeypatch):
    """A bundled folder that holds codec, coarse and c2f (a fine-tune of an earlier shipped model keeps that model's
    codec) is that model, not a fine-tune over today's shipped one; its card's defaults are its own."""
    import shutil
    package = pretrained.shipped_folder

    def shipped(name=pretrained.SHIPPED):
        return tmp_path / name if name != pretrained.SHIPPED else package(name)

    monkeypatch.setattr(pretrained, "shipped_folder", shipped)
    bundled = shutil.copytree(models_home["base"], tmp_path / "small-loudness")
    (bundled / "card.json").write_text(json.dumps({"defaults": {"prompt": {"periodic": 5}}}))
    source = resolve("small-loudness")
    assert source.base == bundled and not source.finetuned
    assert available_models() == ["small", "small-loudness", "mine"]
    from vampnet.model_defaults import of_model
    assert of_model("small-loudness").values["prompt"] == {"periodic": 5}
    (bundled / "c2f.safetensors").unlink()  # neither a whole model nor a fine-tune: missing from the installation
    with pytest.raises(CheckpointError, match="bundled model small-loudness is missing"):
        resolve("small-loudness")
    assert available_models() == ["small", "mine"]
