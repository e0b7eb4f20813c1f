"""The option schema (vampnet.schema): each user-facing option is declared once, on the config field it feeds, and
what front ends receive becomes config values through it: types converted, ranges and choices checked with errors
that name the option, "off" values turned into None, and the config's own checks agreeing with the declared ranges."""
from __future__ import annotations

import dataclasses

import pytest

from vampnet import OptionError, PipelineConfig, PromptConfig, SamplingConfig
from vampnet.audio import OutputOptions
from vampnet.control_options import ControlOptions
from vampnet.effects import InputEffects
from vampnet.prompts import seconds_to_frames
from vampnet.schema import check_value, config_values, options_of, user_values

CONFIGS = {"prompt": PromptConfig, "sampling": SamplingConfig, "input": InputEffects, "pipeline": PipelineConfig,
           "output": OutputOptions, "control": ControlOptions}
# fields that are no single value a user types: ranges are parsed from text, kept times come from beat tracking
STRUCTURED = {"ranges_s", "keep_times_s", "onset_times_s"}


def all_options():
    return [opt for section, cls in CONFIGS.items() for opt in options_of(cls, section)]


def test_every_scalar_config_field_is_a_declared_option_with_help_and_a_unique_name():
    for cls in CONFIGS.values():
        declared = {opt.field for opt in options_of(cls)}
        assert declared == {f.name for f in dataclasses.fields(cls)} - STRUCTURED
    names = [opt.name for opt in all_options()]
    assert len(names) == len(set(names))
    assert all(opt.help and opt.title and opt.flag == "--" + opt.name.replace("_", "-") for opt in all_options())
    assert {opt.flag for opt in options_of(PipelineConfig)} >= {"--window", "--overlap", "--precision", "--capture"}
    assert {opt.flag for opt in options_of(OutputOptions)} == {"--sample-rate", "--channels", "--bit-depth", "--format"}


@pytest.mark.parametrize("section", list(CONFIGS))
def test_user_defaults_give_the_configs_defaults_and_back(section):
    cls = CONFIGS[section]
    defaults = {opt.name: opt.default for opt in options_of(cls)}
    assert cls(**config_values(cls, defaults)) == cls()
    assert user_values(cls()) == defaults


def test_off_values_mean_none_and_types_arrive_as_front_ends_send_them():
    values = config_values(SamplingConfig, {"top_p": 0, "top_k": "0", "steps": 12.0, "typical": "on", "temperature": "0.5"})
    assert values == {"top_p": None, "top_k": None, "steps": 12, "typical_filtering": True, "temperature": 0.5}
    assert config_values(SamplingConfig, {"top_p": 0.9, "top_k": 40}) == {"top_p": 0.9, "top_k": 40}
    assert config_values(PromptConfig, {"periodic": None, "upper_codebooks": 2}) == {"upper_codebook_mask": 2}


@pytest.mark.parametrize("name,value,message", [
    ("periodic", -1, "keep one frame in every (periodic) must be at least 0 frames, got -1"),
    ("steps", 2.5, "steps (steps) must be a whole number, got 2.5"),
    ("dropout", 1.5, "forget kept frames (dropout) must be from 0 to 1, got 1.5"),
    ("typical", "maybe", "skip unusual choices (typical) must be on or off, got 'maybe'"),
    ("draw", "slow", "random numbers (draw) must be one of fast, original, got 'slow'"),
    ("temperature", float("nan"), "wildness (temperature) must be a number, got nan"),
])
def test_bad_values_are_errors_that_name_the_option(name, value, message):
    (opt,) = [o for o in all_options() if o.name == name]
    with pytest.raises(OptionError) as caught:
        check_value(opt, value)
    assert str(caught.value) == message


@pytest.mark.parametrize("opt", all_options(), ids=lambda o: o.name)
def test_the_declared_range_is_what_the_config_accepts(opt):
    """Every value at the ends of the declared range (or of the slider where the range is open) builds a config; just
    outside the declared range the schema refuses it first."""
    cls = CONFIGS[opt.section]
    low, high = opt.shown_range
    if opt.kind in ("int", "float"):
        for value in {v for v in (low, high, opt.default) if v is not None}:
            cls(**config_values(cls, {opt.name: value}))
        below = None if opt.minimum is None else opt.minimum - (1 if opt.kind == "int" else 0.01)
        above = None if opt.maximum is None else opt.maximum + (1 if opt.kind == "int" else 0.01)
        for outside in (v for v in (below, above) if v is not None):
            with pytest.raises(OptionError, match=f"\\({opt.name}\\)"):
                config_values(cls, {opt.name: outside})
    for choice in opt.choices:
        cls(**config_values(cls, {opt.name: choice}))


# text options (no choices) and a valid value of each that is not its default
OTHER_TEXT = {"loudness_from": "drums.wav", "loudness": "0:-30, 1.5:-10", "loudness_range": "0.5-1.5"}


def other_value(opt):
    """A valid value of `opt` that is not its default."""
    if opt.name in OTHER_TEXT:
        return OTHER_TEXT[opt.name]
    if opt.default is None:  # (the output file's options: None is the input's format)
        return opt.choices[0] if opt.choices else int(opt.shown_range[0])
    if opt.kind == "bool":
        return not opt.default
    if opt.choices:
        return next(c for c in opt.choices if c != opt.default)
    low, high = opt.shown_range
    value = opt.default + (opt.step or 1)
    if high is not None and value > high:
        value = opt.default - (opt.step or 1)
    return round(value, 6) if opt.kind == "float" else int(value)


# The front ends that take each section's options. The CLI takes them all. The studio (so its API) and OSC (whose
# keys are the studio's settings) take the prompt, sampling, input and pipeline options; the output file's options
# are the CLI's, since the studio's result-file menus offer the input's format as a choice of their own. HARP takes
# every prompt, sampling and input option but of the pipeline's only precision: a DAW region is short, so windows and
# chunks change nothing there, and the sampler's capture is a server's setting.
STUDIO_SECTIONS = ("prompt", "sampling", "input", "pipeline", "control")
HARP_PIPELINE = ("precision",)
HARP_TRACKS = ("loudness_from",)  # HARP's second audio track, not a control
# the schema sections each command that makes audio takes (compress only encodes: of the pipeline's, precision)
COMMAND_SECTIONS = {"vamp": ("prompt", "sampling", "input", "pipeline", "output", "control"),
                    "loop": ("prompt", "sampling", "input", "pipeline", "output"),
                    "inpaint": ("prompt", "sampling", "input", "pipeline", "output", "control"),
                    "stretch": ("prompt", "sampling", "input", "pipeline", "output"),
                    "continue": ("sampling", "input", "pipeline", "output"),
                    "decompress": ("sampling", "pipeline", "output"), "decode": ("output",)}


def test_every_schema_option_reaches_its_config_from_every_front_end(tiny_pipeline):
    """Read from the generated interfaces: each option's flag on every generating command, the studio's controls
    (which make its page and API), HARP's controls answer and OSC's keys; and a value given through each reaches
    the config it feeds."""
    import typer.main

    from vampnet import harp, osc
    from vampnet.cli import register_commands
    from vampnet.ui import CONTROLS, Settings, Studio

    commands = {c.name: c for c in typer.main.get_command(register_commands()).commands.values()}
    flags_of = {name: {flag for param in command.params for flag in param.opts} for name, command in commands.items()}
    for name, sections in COMMAND_SECTIONS.items():
        missing = [o.flag for o in all_options() if o.section in sections and o.flag not in flags_of[name]]
        assert not missing, f"vampnet {name} lacks {missing}"
    assert "--precision" in flags_of["compress"] and "--window" not in flags_of["compress"]
    studio = Studio(pipeline=tiny_pipeline)
    try:
        harp_names = [c.name for c in harp.CONTROLS]
        assert len(harp.controls_answer(studio)["inputs"]) == 2 + len(harp_names)  # the two tracks, the controls
        for opt in all_options():
            value = other_value(opt)
            cls = CONFIGS[opt.section]
            expected = config_values(cls, {opt.name: value})[opt.field]
            # the CLI: the flag's value, parsed by click, becomes the command's keyword argument of that name
            vamp = commands["vamp"]  # (it takes every section)
            args = ["in.wav", "-o", "out.wav"] + ([opt.flag] if opt.kind == "bool" else [opt.flag, str(value)])
            given = vamp.make_context("vamp", args).params
            assert config_values(cls, given)[opt.field] == expected
            if opt.section not in STUDIO_SECTIONS:
                continue
            in_harp = (opt.section != "pipeline" or opt.name in HARP_PIPELINE) and opt.name not in HARP_TRACKS
            assert opt.name in {c.name for c in CONTROLS} and opt.name in osc.OPTIONS
            assert (opt.name in harp_names) == in_harp
            # the studio (and so its API and OSC, which set Settings by these names), and HARP's control values
            settings = Settings.from_values({opt.name: value})
            via_osc = osc.parse_options([opt.name, value], Settings())
            defaults = Settings()
            via_harp = harp.settings_from_controls(studio, [value if c.name == opt.name else getattr(defaults, c.name)
                                                            for c in harp.CONTROLS],
                                                   value if opt.name in HARP_TRACKS else None)
            for s in (settings, via_osc, *([via_harp] if in_harp or opt.name in HARP_TRACKS else [])):
                made = {"prompt": studio.prompt, "sampling": lambda s: studio.sampling(s)[0],
                        "input": studio.input_effects, "pipeline": studio.pipeline_config,
                        "control": studio.control_options}[opt.section](s)
                assert getattr(made, opt.field) == expected, (opt.name, s)
    finally:
        studio.close()


def test_the_studio_runs_its_loaded_models_under_the_pipeline_settings(tiny_pipeline):
    """Windows, chunks and capture from the studio's settings reach the pipeline a job runs on, which shares the
    loaded models (no second load); the default settings run the given pipeline itself."""
    from vampnet.ui import Settings, Studio

    studio = Studio(pipeline=tiny_pipeline)
    try:
        s = Settings(window=1.0, overlap=0.3, c2f_chunk=0.5, c2f_batch_size=2)
        pipe = studio.pipeline(s.model, studio.pipeline_config(s))
        assert pipe.coarse is tiny_pipeline.coarse and pipe.codec is tiny_pipeline.codec
        rate = tiny_pipeline.frame_rate
        assert (pipe.coarse_window, pipe.window_overlap, pipe.c2f_chunk, pipe.c2f_batch_size) == (
            seconds_to_frames(1.0, rate), seconds_to_frames(0.3, rate), seconds_to_frames(0.5, rate), 2)
        assert studio.pipeline(s.model, studio.pipeline_config(s)) is pipe
        assert studio.pipeline(None, studio.pipeline_config(Settings())) is tiny_pipeline
        with pytest.raises(OptionError, match="overlap shorter than the window"):
            studio.pipeline(None, studio.pipeline_config(Settings(window=1.0)))  # the default overlap is 2.5 s
    finally:
        studio.close()
