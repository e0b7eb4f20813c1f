"""The option schema (vampnet.schema): each user-facing option is declared once, on the config field it feeds, and
what front ends receive becomes config values through it: types converted, ranges and choices checked with errors
that name the option, "off" values turned into None, and the config's own checks agreeing with the declared ranges."""
from __future__ import annotations

import dataclasses

import pytest

from vampnet import OptionError, PromptConfig, SamplingConfig
from vampnet.effects import InputEffects
from vampnet.schema import check_value, config_values, options_of, user_values

CONFIGS = {"prompt": PromptConfig, "sampling": SamplingConfig, "input": InputEffects}
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


def other_value(opt):
    """A valid value of `opt` that is not its default."""
    if opt.kind == "bool":
        return not opt.default
    if opt.choices:
        return next(c for c in opt.choices if c != opt.default)
    low, high = opt.shown_range
    value = opt.default + (opt.step or 1)
    if high is not None and value > high:
        value = opt.default - (opt.step or 1)
    return round(value, 6) if opt.kind == "float" else int(value)


def test_every_schema_option_reaches_its_config_from_every_front_end(tiny_pipeline):
    """Read from the generated interfaces: each option's flag on every generating command, the studio's controls
    (which make its page and API), HARP's controls answer and OSC's keys; and a value given through each reaches
    the config it feeds."""
    import typer.main

    from vampnet import harp, osc
    from vampnet.cli import register_commands
    from vampnet.ui import CONTROLS, Settings, Studio

    commands = {c.name: c for c in typer.main.get_command(register_commands()).commands.values()}
    for name, sections in {"vamp": ("prompt", "sampling", "input"), "loop": ("prompt", "sampling", "input"),
                           "inpaint": ("prompt", "sampling", "input"), "stretch": ("prompt", "sampling", "input"),
                           "continue": ("sampling", "input"), "decompress": ("sampling",)}.items():
        flags = {flag for param in commands[name].params for flag in param.opts}
        missing = [o.flag for o in all_options() if o.section in sections and o.flag not in flags]
        assert not missing, f"vampnet {name} lacks {missing}"
    studio = Studio(pipeline=tiny_pipeline)
    try:
        harp_names = [c.name for c in harp.CONTROLS]
        assert len(harp.controls_answer(studio)["inputs"]) == 1 + len(harp_names)
        for opt in all_options():
            value = other_value(opt)
            cls = CONFIGS[opt.section]
            expected = config_values(cls, {opt.name: value})[opt.field]
            assert opt.name in {c.name for c in CONTROLS} and opt.name in osc.OPTIONS and opt.name in harp_names
            # the CLI: the flag's value, parsed by click, becomes the command's keyword argument of that name
            vamp = commands["vamp"]
            args = ["in.wav", "-o", "out.wav"] + ([opt.flag] if opt.kind == "bool" else [opt.flag, str(value)])
            given = vamp.make_context("vamp", args).params
            assert config_values(cls, given)[opt.field] == expected
            # the studio (and so its API and OSC, which set Settings by these names), and HARP's control values
            settings = Settings.from_values({opt.name: value})
            via_osc = osc.parse_options([opt.name, value], Settings())
            defaults = Settings()
            via_harp = harp.settings_from_controls(studio, [value if c.name == opt.name else getattr(defaults, c.name)
                                                            for c in harp.CONTROLS])
            for s in (settings, via_osc, via_harp):
                made = {"prompt": studio.prompt, "sampling": lambda s: studio.sampling(s)[0],
                        "input": studio.input_effects}[opt.section](s)
                assert getattr(made, opt.field) == expected, (opt.name, s)
    finally:
        studio.close()
