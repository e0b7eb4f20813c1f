"""The option schema: each user-facing option declared once, on the config field it feeds.

A config dataclass (`PromptConfig`, `SamplingConfig`, ...) declares a field with `option(...)`: its default, one line
of help for musicians, a label, its unit, the range it accepts and the range a slider shows, its choices, and the
user-facing value that means "off" where the config holds None (top-p 0). Front ends read the declarations
(`options_of`) to make their flags, controls, API parameters and OSC keys, and turn what users give into config
values through `config_values`, which checks types and ranges and names the option in its errors. So a new option
is one `option(...)` field, and every front end offers it.

Some ranges depend on the model a front end has loaded: `model_max` names the model's count that caps an option
(its codebooks), and `for_model` gives the option with that top. Errors written for the command line name flags;
`in_labels` rewrites such a message for a page, naming each option by its label instead.

The user-facing `name` is what the studio, its API, HARP and OSC call the option (`upper_codebooks`); the CLI flag
is the same with dashes (`--upper-codebooks`). The config field keeps the engine's name (`upper_codebook_mask`)."""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass

from .errors import OptionError

__all__ = ["Option", "option", "options_of", "config_values", "user_values", "check_value", "for_model", "in_labels"]

_UNSET = object()
_KINDS = {"int": int, "float": float, "bool": bool, "str": str}


@dataclass(frozen=True)
class Option:
    """One user-facing option: how it is named, shown, checked and mapped onto its config field."""

    name: str                          # studio/API/HARP/OSC name; CLI flag: --name-with-dashes
    kind: str                          # int | float | bool | str
    default: object                    # the user-facing default ("off" where the config's default is None)
    help: str                          # one line, for musicians
    label: str = ""                    # what a control shows (default: the name in words)
    unit: str = ""                     # s, ms, frames, semitones, ... ("" for counts and plain numbers)
    minimum: float | None = None       # accepted range (None: unbounded)
    maximum: float | None = None
    slider: tuple[float, float] | None = None  # the range a control shows, where it differs from the accepted one
    step: float | None = None          # a control's step
    choices: tuple[str, ...] = ()
    off: object = None                 # user-facing value meaning "none" (the config holds None), if any
    field: str = ""                    # the config field it sets (filled in by options_of)
    section: str = ""                  # prompt | sampling | pipeline | a mode's name (filled in by options_of)
    model_max: str = ""                # the loaded model's count that is the top of the range ("codebooks"), if any

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def title(self) -> str:
        return self.label or self.name.replace("_", " ")

    @property
    def shown_range(self) -> tuple[float | None, float | None]:
        return self.slider if self.slider is not None else (self.minimum, self.maximum)


def option(default, help: str, *, config_default=_UNSET, **spec):
    """A config field declared as a user-facing option. `default` is the user-facing default; `config_default` the
    field's own where it differs (None for an option whose `off` value the user gives instead)."""
    kind = spec.pop("kind", None) or type(default).__name__
    if kind not in _KINDS:
        raise TypeError(f"option kind must be one of {', '.join(_KINDS)}, got {kind!r}")
    declared = Option(name=spec.pop("name", ""), kind=kind, default=default, help=help, **spec)
    value = default if config_default is _UNSET else config_default
    return dataclasses.field(default=value, metadata={"option": declared})


def options_of(config_cls, section: str = "") -> tuple[Option, ...]:
    """The options a config class declares, in field order, with their field (and name, where not given) filled in."""
    found = []
    for f in dataclasses.fields(config_cls):
        declared = f.metadata.get("option")
        if declared is not None:
            found.append(dataclasses.replace(declared, field=f.name, name=declared.name or f.name,
                                             section=declared.section or section))
    return tuple(found)


def check_value(opt: Option, value):
    """`value` (as a front end received it: a number as float, a string from OSC or a form, ...) converted to the
    option's kind and checked against its range and choices; an OptionError naming the option otherwise."""
    kind = _KINDS[opt.kind]
    try:
        if kind is bool:
            converted = _to_bool(value)
        elif kind is int:
            number = float(value)
            if not number.is_integer():
                raise ValueError(value)
            converted = int(number)
        elif kind is float:
            converted = float(value)
            if not math.isfinite(converted):
                raise ValueError(value)
        else:
            converted = str(value)
    except (TypeError, ValueError):
        what = {"int": "a whole number", "float": "a number", "bool": "on or off", "str": "text"}[opt.kind]
        raise OptionError(f"{opt.title} ({opt.name}) must be {what}, got {value!r}") from None
    if opt.choices and converted not in opt.choices:
        raise OptionError(f"{opt.title} ({opt.name}) must be one of {', '.join(opt.choices)}, got {converted!r}")
    if kind in (int, float):
        low, high = opt.minimum, opt.maximum
        if (low is not None and converted < low) or (high is not None and converted > high):
            unit = f" {opt.unit}" if opt.unit else ""
            bounds = (f"from {_num(low)} to {_num(high)}" if low is not None and high is not None
                      else f"at least {_num(low)}" if low is not None else f"at most {_num(high)}")
            raise OptionError(f"{opt.title} ({opt.name}) must be {bounds}{unit}, got {_num(converted)}")
    return converted


def config_values(config_cls, values: dict, section: str = "") -> dict:
    """Config field values from user-facing `values` (by option name; names not declared by `config_cls` are left
    out, None means "not given"): checked, converted, and the `off` value turned into None."""
    out = {}
    for opt in options_of(config_cls, section):
        if values.get(opt.name) is None:
            continue
        value = check_value(opt, values[opt.name])
        out[opt.field] = None if opt.off is not None and value == opt.off else value
    return out


def user_values(config) -> dict:
    """The user-facing values of a config instance, by option name (None in a field shows as the option's `off`)."""
    out = {}
    for opt in options_of(type(config)):
        value = getattr(config, opt.field)
        out[opt.name] = opt.off if value is None and opt.off is not None else value
    return out


def for_model(opt: Option, counts: dict) -> Option:
    """`opt` with the top of its range (accepted and shown) set by the loaded model: `counts` maps a count's name
    ("codebooks") to the model's value. Options without a `model_max` in `counts` come back as they are."""
    if opt.model_max not in counts:
        return opt
    top = counts[opt.model_max]
    low = opt.shown_range[0] if opt.shown_range[0] is not None else opt.minimum
    return dataclasses.replace(opt, maximum=top, slider=None if low is None else (low, top))


_FLAG = re.compile(r"--[a-z][a-z0-9-]*")


def in_labels(message: str, options) -> str:
    """`message`, an error written for the command line, with every flag of one of `options` replaced by what a page
    shows: the option's label. A flag is the option's own (`--upper-codebooks`) or its config field's, which is how
    a mode command names its options (`vampnet compress --codebooks`); other text is left as it is."""
    labels = {}
    for opt in options:
        for flag in (opt.flag, "--" + opt.field.replace("_", "-")):
            labels.setdefault(flag, f'"{opt.title}"')
    return _FLAG.sub(lambda m: labels.get(m.group(), m.group()), message)


def _to_bool(value) -> bool:
    if isinstance(value, str):
        text = value.strip().lower()
        if text not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
            raise ValueError(value)
        return text in ("1", "true", "yes", "on")
    if isinstance(value, (bool, int)) or (isinstance(value, float) and value in (0.0, 1.0)):
        return bool(value)
    raise ValueError(value)


def _num(x) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)
