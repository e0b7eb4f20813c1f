"""A model's own defaults, from the `defaults` section of its card.json: read and checked (vampnet.model_defaults),
inherited by fine-tuned models, and used by every front end where the user gives no value: the Python API, the
command line (a flag given still wins), the studio's jobs and page, HARP and OSC. A model without them behaves as
before (tests/test_frontend_identity.py pins that)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import soundfile as sf
import torch

from conftest import save_model_folder, sine_mix
from vampnet import Pipeline, PromptConfig, SamplingConfig
from vampnet.cli import main
from vampnet.errors import CheckpointError
from vampnet.model_defaults import ModelDefaults, of_model, read_card
from vampnet.pipeline import VampResult

# the card's defaults, and the same as the flags and configs a user would give
CARD = {"prompt": {"periodic": 5, "upper_codebooks": 1}, "sampling": {"steps": 3, "temperature": 0.7}}
FLAGS = ["--periodic", "5", "--upper-codebooks", "1", "--steps", "3", "--temperature", "0.7"]
PROMPT = PromptConfig(periodic_prompt=5, upper_codebook_mask=1)
SAMPLING = SamplingConfig(steps=3, temperature=0.7)


def write_card(folder: Path, defaults) -> Path:
    card = {"name": "test model", **({"defaults": defaults} if defaults is not None else {})}
    (folder / "card.json").write_text(json.dumps(card))
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory, tiny_pipeline) -> dict:
    """The tiny model saved twice: `plain` without defaults, `carded` with CARD in its card.json."""
    root = tmp_path_factory.mktemp("carded")
    p = tiny_pipeline
    plain = save_model_folder(root / "plain", p.codec, p.coarse, p.c2f)
    carded = write_card(save_model_folder(root / "carded", p.codec, p.coarse, p.c2f), CARD)
    return {"plain": plain, "carded": carded}


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "clip.wav"
    sf.write(path, sine_mix(1.2, 22050, seed=3), 22050)
    return path


def same_tokens(a: VampResult, b: VampResult) -> bool:
    return torch.equal(a.codes, b.codes) and torch.equal(a.mask, b.mask)


# --- the card ------------------------------------------------------------------------------------------------

def test_a_card_without_defaults_leaves_the_schema_defaults(tmp_path, folders):
    write_card(tmp_path, None)
    assert read_card(tmp_path) == ModelDefaults()
    assert read_card(folders["plain"]).prompt() == PromptConfig()  # no card at all



def test_the_shipped_card_carries_the_swept_defaults_and_keeps_the_rest():
    shipped = of_model(None)  # chosen by benchmarks/sweep_defaults.py for v3 (docs/evaluation.md)
    assert shipped.prompt() == PromptConfig(periodic_prompt=1, upper_codebook_mask=2)
    assert shipped.sampling() == SamplingConfig(temperature=0.6, steps=24)


def test_a_card_sets_its_options_and_leaves_the_others_at_the_schema_defaults(folders):
    defaults = read_card(folders["carded"])
    assert defaults.prompt() == PROMPT and defaults.sampling() == SAMPLING
    assert defaults.value("steps") == 3 and defaults.value("mask_temperature") == 10.5  # the schema's
    assert "periodic 5" in defaults.describe() and str(folders["carded"] / "card.json") in defaults.describe()


@pytest.mark.parametrize("defaults, named", [
    ({"sampling": {"stepz": 3}}, "'stepz'"),                     # an unknown option
    ({"prompt": {"steps": 3}}, "'steps'"),                       # an option of another section
    ({"sampling": {"temperature": -1}}, "temperature"),          # out of range
    ({"sampling": {"top_p": 1.5}}, "top_p"),
    ({"prompt": {"periodic": 2.5}}, "periodic"),                 # not a whole number
    ({"sampling": {"draw": "slow"}}, "draw"),                    # not one of the choices
    ({"output": {"channels": 2}}, "'output'"),                   # a section a card does not set
    ({"sampling": {"steps": [3]}}, "steps"),
])
def test_a_bad_card_is_a_checkpoint_error_naming_the_card_and_the_option(tmp_path, defaults, named):
    write_card(tmp_path, defaults)
    with pytest.raises(CheckpointError) as e:
        read_card(tmp_path)
    assert str(tmp_path / "card.json") in str(e.value) and named in str(e.value)


def test_a_card_that_is_not_json_is_a_checkpoint_error(tmp_path):
    (tmp_path / "card.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="card.json is not readable JSON"):
        read_card(tmp_path)


def test_a_codebook_default_beyond_the_model_is_refused_when_it_loads(tmp_path, tiny_pipeline):
    p = tiny_pipeline  # 4 codebooks
    folder = write_card(save_model_folder(tmp_path / "m", p.codec, p.coarse, p.c2f), {"prompt": {"upper_codebooks": 5}})
    assert read_card(folder).value("upper_codebooks") == 5  # the card alone cannot know the model's codebooks
    with pytest.raises(CheckpointError, match=r"card\.json: defaults\.prompt\.upper_codebooks: .* from 0 to 4"):
        Pipeline.load(folder)


def test_a_fine_tuned_model_inherits_its_base_defaults_and_its_own_card_changes_them(tmp_path, folders, tiny_models):
    tuned = tmp_path / "tuned"
    shutil.copytree(tiny_models["tuned"], tuned)
    manifest = json.loads((tuned / "finetune.json").read_text())
    (tuned / "finetune.json").write_text(json.dumps({**manifest, "base": str(folders["carded"])}))
    assert of_model(str(tuned)).values == CARD  # the base's, inherited
    write_card(tuned, {"sampling": {"steps": 5}})
    pipe = Pipeline.from_pretrained(str(tuned))
    assert pipe.default_sampling() == SamplingConfig(steps=5, temperature=0.7)  # its own steps, the base's rest
    assert pipe.default_prompt() == PROMPT


# --- the Python API ------------------------------------------------------------------------------------------

def test_the_pipeline_uses_the_card_defaults_when_a_call_gives_none(folders, clip):
    wav, sr = torch.from_numpy(sf.read(clip, dtype="float32")[0])[None], 22050
    carded, plain = Pipeline.load(folders["carded"]), Pipeline.load(folders["plain"])
    assert (carded.default_prompt(), carded.default_sampling()) == (PROMPT, SAMPLING)
    assert (plain.default_prompt(), plain.default_sampling()) == (PromptConfig(), SamplingConfig())
    by_card = carded.vamp(wav, sr, seed=2)
    assert same_tokens(by_card, plain.vamp(wav, sr, prompt=PROMPT, sampling=SAMPLING, seed=2))
    assert by_card.settings["sampling"]["steps"] == 3
    assert not same_tokens(by_card, plain.vamp(wav, sr, seed=2))  # the card changes what the defaults make
    # the coarse-to-fine sampler draws as the card's coarse one, as the command line makes them (options.sampling_configs)
    drawn = Pipeline.load(folders["plain"], defaults=ModelDefaults({"sampling": {"draw": "original"}}))
    assert drawn.default_c2f_sampling() == SamplingConfig(steps=2, draw="original")
    assert plain.default_c2f_sampling() == SamplingConfig(steps=2)
    # what the caller gives wins over the card
    given = carded.vamp(wav, sr, prompt=PromptConfig(periodic_prompt=2), sampling=SamplingConfig(steps=2), seed=2)
    assert same_tokens(given, plain.vamp(wav, sr, prompt=PromptConfig(periodic_prompt=2),
                                         sampling=SamplingConfig(steps=2), seed=2))


# --- the command line ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [["vamp"], ["loop", "--variations", "1", "--repeats", "1"]])
def test_the_cli_takes_the_card_defaults_for_flags_not_given_and_a_given_flag_wins(command, folders, clip, tmp_path,
                                                                                    written):
    def run(model, *flags):
        written.clear()
        assert main([command[0], str(clip), "-o", str(tmp_path / "out.wav"), "--models", str(folders[model]),
                     "--seed", "4", "-q", *command[1:], *flags]) == 0
        return written[0][1]

    by_card = run("carded")
    assert same_tokens(by_card, run("plain", *FLAGS))
    assert not same_tokens(by_card, run("plain"))
    mine = run("carded", "--periodic", "2", "--steps", "2")
    assert same_tokens(mine, run("plain", *FLAGS, "--periodic", "2", "--steps", "2"))


def test_info_lists_a_model_card_defaults(folders, capsys):
    assert main(["info", str(folders["carded"])]) in (0, None)
    shown = json.loads(capsys.readouterr().out)
    assert shown["defaults"] == CARD and shown["cards"] == [str(folders["carded"] / "card.json")]


def test_the_cli_refuses_a_bad_card_in_one_line(folders, clip, tmp_path, tiny_pipeline, capsys):
    p = tiny_pipeline
    folder = write_card(save_model_folder(tmp_path / "bad", p.codec, p.coarse, p.c2f), {"sampling": {"steps": 0}})
    assert main(["vamp", str(clip), "-o", str(tmp_path / "out.wav"), "--models", str(folder), "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "card.json: defaults.sampling.steps" in err[0]
    assert not (tmp_path / "out.wav").exists()


def test_the_help_says_a_model_card_may_set_the_prompt_and_sampling_defaults(capsys):
    main(["vamp", "--help"])
    shown = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert "(default: 36, or the model's card)" in shown  # --steps
    assert "(default: 10.0 s)" in shown  # --window: a pipeline option, which no card sets


# --- the studio, HARP and OSC --------------------------------------------------------------------------------

@pytest.fixture
def studios(folders):
    from vampnet.studio import Studio

    made = {name: Studio(pipeline=Pipeline.load(folders[name]), max_seconds=10) for name in ("carded", "plain")}
    yield made
    for studio in made.values():
        studio.close()


def test_studio_settings_not_given_take_the_card_defaults(studios, clip, written):
    from vampnet.ui import Settings, model_settings

    card = model_settings(studios["carded"])
    assert card == {"periodic": 5, "upper_codebooks": 1, "steps": 3, "temperature": 0.7, "preset": "custom"}
    assert model_settings(studios["plain"]) == {}
    by_card = studios["carded"].generate(clip, Settings.from_values({"seed": 1}, card)).results[0]
    explicit = Settings(preset="custom", periodic=5, upper_codebooks=1, steps=3, temperature=0.7, seed=1)
    assert same_tokens(by_card, studios["plain"].generate(clip, explicit).results[0])
    # a control given wins over the card's
    assert Settings.from_values({"steps": 7}, card).steps == 7


def test_a_studio_preset_is_changed_only_by_controls_moved_from_the_model_defaults(studios):
    from vampnet.ui import Settings, model_settings

    studio = studios["carded"]
    subtle = studio.prompt(Settings.from_values({"preset": "subtle"}, model_settings(studio)))
    assert (subtle.periodic_prompt, subtle.upper_codebook_mask) == (3, 4)  # the preset's, not the card's
    moved = studio.prompt(Settings.from_values({"preset": "subtle", "periodic": 9}, model_settings(studio)))
    assert moved.periodic_prompt == 9


def test_the_studio_page_starts_at_the_card_defaults_and_says_where_they_come_from(studios):
    pytest.importorskip("gradio")
    from vampnet.ui import build_app

    app = build_app(studios["carded"])
    shown = {b.elem_id: getattr(b, "value", None) for b in app.blocks.values() if getattr(b, "elem_id", None)}
    assert (shown["periodic"], shown["steps"], shown["temperature"], shown["preset"]) == (5, 3, 0.7, "custom")
    assert "card.json" in shown["model-defaults"] and "periodic 5" in shown["model-defaults"]
    plain = build_app(studios["plain"])
    shown = {b.elem_id: getattr(b, "value", None) for b in plain.blocks.values() if getattr(b, "elem_id", None)}
    assert (shown["periodic"], shown["steps"], shown["preset"]) == (7, 36, "variation")
    assert "card sets none" in shown["model-defaults"]


def test_choosing_a_model_on_the_page_sets_the_controls_to_its_defaults(folders):
    pytest.importorskip("gradio")
    from vampnet.studio import Studio
    from vampnet.ui import build_app

    studio = Studio(str(folders["plain"]), max_seconds=10)
    try:
        app = build_app(studio)
        by_elem = {b.elem_id: b for b in app.blocks.values() if getattr(b, "elem_id", None)}
        (chosen,) = [d for d in app.fns.values() if (by_elem["model"]._id, "input") in d.targets]

        def choose(model) -> dict:
            shown = dict(zip((o.elem_id for o in chosen.outputs), chosen.fn(str(folders[model]), "fp32")))
            return {k: v.constructor_args["value"] if hasattr(v, "constructor_args") else v for k, v in shown.items()}

        carded = choose("carded")
        assert (carded["periodic"], carded["upper_codebooks"], carded["steps"], carded["preset"]) == (5, 1, 3, "custom")
        assert "periodic 5" in carded["model-defaults"]
        plain = choose("plain")  # back to a model without defaults: the schema's, and the default preset
        assert (plain["periodic"], plain["upper_codebooks"], plain["steps"], plain["preset"]) == (7, 3, 36, "variation")
    finally:
        studio.close()


def test_harp_controls_start_at_the_card_defaults_and_empty_ones_take_them(studios):
    from vampnet.harp import CONTROLS, controls_answer, settings_from_controls

    answer = controls_answer(studios["carded"])
    values = {c.name: entry.get("value") for c, entry in zip(CONTROLS, answer["inputs"][2:])}
    assert (values["periodic"], values["steps"], values["temperature"]) == (5, 3, 0.7)
    s = settings_from_controls(studios["carded"], [None] * len(CONTROLS))
    assert (s.periodic, s.upper_codebooks, s.steps, s.temperature, s.preset) == (5, 1, 3, 0.7, "custom")


def test_osc_keys_not_sent_take_the_card_defaults(studios):
    from vampnet.osc import LoopBridge, parse_options
    from vampnet.ui import model_settings

    studio = studios["carded"]
    bridge = LoopBridge(studio, studio.folder, lambda *a: None)
    try:
        assert bridge.defaults.model == studio.default_model
        card = lambda model: model_settings(studio, model)  # noqa: E731  (what LoopBridge.loop passes)
        s = parse_options(["seed", 1], bridge.defaults, card)
        assert (s.mode, s.periodic, s.steps, s.temperature, s.preset) == ("loop", 5, 3, 0.7, "custom")
        assert parse_options(["steps", 9], bridge.defaults, card).steps == 9
    finally:
        bridge.close()


def test_the_upstream_api_keeps_upstream_defaults_whatever_the_card(studios, clip):
    """/vamp mirrors the upstream app: a parameter left out is upstream's default, so the card changes nothing."""
    from vampnet.upstream_api import parse, vamp

    request = parse({"seed": 3, "sampling_steps": 2})
    made = {name: [sf.read(f)[0] for f in vamp(studio, clip, request)] for name, studio in studios.items()}
    assert all((a == b).all() for a, b in zip(made["carded"], made["plain"]))
