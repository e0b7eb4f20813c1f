"""A model's own defaults: the prompt and sampling settings its card (card.json) names, used wherever the user gives
none. This module answers "what is the default of option X for model M".

A card's `defaults` section names options by their user-facing names (vampnet.schema's `Option.name`, as the studio,
HARP and OSC call them; the CLI flag is the same with dashes), per schema section:

    {"defaults": {"prompt": {"periodic": 7, "upper_codebooks": 3}, "sampling": {"temperature": 1.0, "steps": 24}}}

Each value is checked as a user's would be (`schema.check_value`, then the config's own checks); an unknown section
or option or a value out of range is a CheckpointError naming the card and the option. A fine-tuned model takes its
base model's card defaults, and its own folder's card.json changes the options it names. No card, or a card
without `defaults`, leaves every option at the schema's default."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import CheckpointError, OptionError
from .pretrained import ModelSource, resolve
from .prompts import PromptConfig
from .sampling import SamplingConfig
from .schema import Option, check_value, config_values, for_model, options_of

CARD = "card.json"
SECTIONS = {"prompt": PromptConfig, "sampling": SamplingConfig}  # what a card's defaults may set
OPTIONS = {section: {opt.name: opt for opt in options_of(cls, section)} for section, cls in SECTIONS.items()}
SOURCE_NOTE = "or the model's card"  # how front ends say that a model may set an option's default


@dataclass(frozen=True)
class ModelDefaults:
    """The option values a model's card sets ({section: {option name: user-facing value}}, checked) and the cards
    they come from. Options a card does not name keep the schema's default."""

    values: dict = field(default_factory=dict)
    cards: tuple[Path, ...] = ()
    origin: dict = field(default_factory=dict)  # option name -> the card that set it (for errors)

    def prompt(self) -> PromptConfig:
        """The prompt of a vamp when the user gives none: the schema's defaults with the card's on top."""
        return PromptConfig(**config_values(PromptConfig, self.values.get("prompt", {})))

    def sampling(self) -> SamplingConfig:
        """The coarse sampler's settings when the user gives none: the schema's defaults with the card's on top."""
        return SamplingConfig(**config_values(SamplingConfig, self.values.get("sampling", {})))

    def by_name(self) -> dict:
        """Every option the card sets, by its user-facing name (the names are unique across the sections)."""
        return {name: value for section in SECTIONS for name, value in self.values.get(section, {}).items()}

    def value(self, name: str):
        """The default of option `name` for this model: the card's, else the schema's."""
        given = self.by_name()
        if name in given:
            return given[name]
        for section in SECTIONS:
            if name in OPTIONS[section]:
                return OPTIONS[section][name].default
        raise OptionError(f"no prompt or sampling option is called {name!r}")

    def check_counts(self, counts: dict) -> None:
        """The card's values of options whose range the model sets (its codebooks) checked against `counts`."""
        for section, values in self.values.items():
            for name, value in values.items():
                opt = OPTIONS[section][name]
                if opt.model_max:
                    _checked(self.origin.get(name, CARD), section, for_model(opt, counts), value)

    def describe(self) -> str:
        """One line: what the card sets (for listings and the studio's note), or that it sets nothing."""
        given = self.by_name()
        if not given:
            return "vampnet's own defaults (the model's card sets none)"
        shown = ", ".join(f"{name} {_shown(value)}" for name, value in given.items())
        return f"{shown} (from {', '.join(str(c) for c in self.cards)})"


def read_card(folder) -> ModelDefaults:
    """The defaults the card.json in `folder` sets (none when there is no card or it has no `defaults`)."""
    card = Path(folder) / CARD
    if not card.is_file():
        return ModelDefaults()
    try:
        content = json.loads(card.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{card} is not readable JSON: {e}") from None
    defaults = content.get("defaults") if isinstance(content, dict) else None
    if defaults is None:
        return ModelDefaults()
    if not isinstance(defaults, dict):
        raise CheckpointError(f"{card}: defaults must be an object of sections ({', '.join(SECTIONS)})")
    values = {}
    for section, given in defaults.items():
        if section not in SECTIONS:
            raise CheckpointError(f"{card}: defaults has an unknown section {section!r} (a card sets "
                                  f"{' and '.join(SECTIONS)})")
        if not isinstance(given, dict):
            raise CheckpointError(f"{card}: defaults.{section} must be an object of option names and values")
        for name, value in given.items():
            if name not in OPTIONS[section]:
                raise CheckpointError(f"{card}: defaults.{section} names an unknown option {name!r} (options: "
                                      f"{', '.join(OPTIONS[section])})")
            values.setdefault(section, {})[name] = _checked(card, section, OPTIONS[section][name], value)
    found = ModelDefaults(values, (card,), {name: card for given in values.values() for name in given})
    for section, cls in SECTIONS.items():  # the configs' own checks (e.g. top_p in (0, 1]), on the values together
        try:
            cls(**config_values(cls, values.get(section, {})))
        except OptionError as e:
            raise CheckpointError(f"{card}: defaults.{section}: {e}") from None
    return found


def of_folders(*folders) -> ModelDefaults:
    """The defaults of the cards in `folders` (None skipped), each later card changing the options it names."""
    values, cards, origin = {}, [], {}
    for folder in folders:
        if folder is None:
            continue
        found = read_card(folder)
        for section, given in found.values.items():
            values.setdefault(section, {}).update(given)
        cards += found.cards
        origin.update(found.origin)
    return ModelDefaults(values, tuple(cards), origin)


def of_source(source: ModelSource) -> ModelDefaults:
    """A resolved model's defaults: its base folder's card, then (a fine-tuned model) its own folder's."""
    return of_folders(source.base, source.tuned_folder)


def of_model(name=None) -> ModelDefaults:
    """The defaults of a named model (vampnet.pretrained.resolve's names: None/"small", "official", a fine-tuned
    model's name, a folder)."""
    return of_source(resolve(name))


def _checked(card, section: str, opt: Option, value):
    if isinstance(value, (dict, list)):  # check_value would take str(...) of these for a text option
        raise CheckpointError(f"{card}: defaults.{section}.{opt.name} must be a single value, got {value!r}")
    try:
        return check_value(opt, value)
    except OptionError as e:
        raise CheckpointError(f"{card}: defaults.{section}.{opt.name}: {e}") from None


def _shown(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value).lower() if isinstance(value, bool) else str(value)
