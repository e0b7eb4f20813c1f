"""Training run configuration: frozen dataclasses read from YAML (unknown keys are errors that name the key),
with `key=value` overrides from the command line (`model.n_layers=6` reaches into the nested model config).

A transformer run nests the architecture it trains as one `TransformerConfig` (`model:` in YAML), the model's own
config rather than a copy of its fields; its vocabulary size and latent width are the codec's, filled in when the
model is built. Older configs that give the architecture's fields at the top level (`n_layers: 6`) still read."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path

from ..controls import CONTROL_NAMES
from ..errors import CheckpointError, OptionError, first_line
from ..model import TransformerConfig

# a run's architecture unless its config says otherwise (vocab_size and latent_dim are replaced by the codec's)
DEFAULT_MODEL = TransformerConfig(embedding_dim=256, n_heads=4, n_layers=4, dropout=0.1)
MODEL_KEYS = frozenset(f.name for f in fields(TransformerConfig))


@dataclass(frozen=True)
class TrainConfig:
    """A masked-token training run of a coarse or coarse-to-fine transformer (the paper's defaults where they apply)."""

    dataset: str = ""                  # token dataset folder (vampnet tokenize)
    output: str = ""                   # run folder: checkpoints, log.csv, previews
    codec: str | None = None           # codec checkpoint; default: the one recorded in the dataset manifest
    model: TransformerConfig = DEFAULT_MODEL  # the architecture (a mapping in YAML); vocab and latent: the codec's
    init: str | None = None            # start from this model checkpoint (full fine-tuning)
    init_new_codec: bool = False       # the init model was trained on tokens of the codec this dataset's codec was
                                       # fine-tuned from: it embeds the new codebook vectors instead of refusing
    # data and optimisation
    window_s: float = 10.0             # training window (10 s coarse, 3 s coarse-to-fine in the paper)
    batch_size: int = 8                # global batch, split over processes
    grad_accum: int = 1
    max_steps: int = 1000
    time_limit_s: float = 0.0          # also stop (saving `latest`) after this many seconds of training (0: none)
    lr_factor: float = 2.0             # Noam schedule: factor * D^-0.5 * min(step^-0.5, step * warmup^-1.5)
    warmup_steps: int = 10000
    weight_decay: float = 0.01
    grad_clip: float = 5.0
    label_smoothing: float = 0.1
    # share of each masked token's target spread over the codec codebook neighbours of the true token, weighted by
    # exp(cosine similarity / neighbour_temperature): it rewards a prediction in the right region of the codec's
    # latent space, not only the exact id (vamps keep the rhythm when generated frames land near the true codes;
    # 0.07 spreads over about 15 neighbours of the 1024)
    neighbour_smoothing: float = 0.0
    neighbour_temperature: float = 0.07
    structured_masks: float = 0.0      # share of items masked like a vamp's prompt (prompts.training_mask)
    bf16: bool | str = "auto"          # bfloat16 autocast: true, false, or auto (where the device has bf16 arithmetic)
    compile: bool = False              # torch.compile the training pass (kernels kept in $VAMPNET_HOME/compiled)
    # bookkeeping
    val_every: int = 200
    val_windows: int = 64
    save_every: int = 1000             # also keep step-N checkpoints at this interval (0: only latest/best)
    save_every_s: float = 0.0          # also save `latest` after this many seconds since the last save (0: never)
    preview_every: int = 0             # write audio previews of validation excerpts (0: never)
    preview_steps: int = 12
    seed: int = 0
    device: str = "cpu"
    # LoRA fine-tuning (vampnet finetune): rank 0 trains every weight
    lora_rank: int = 0
    lora_alpha: float = 16.0
    # controls (vampnet.controls) the model learns to follow, read from the dataset beside the tokens; model.n_controls
    # follows. Classifier-free guidance needs the unconditioned model too: with probability control_dropout an
    # example has no control at all, and with control_span_dropout a kept control misses one random span (up to
    # half the window), so partial controls (a range only) are learned as well
    controls: tuple = ()
    control_dropout: float = 0.3
    control_span_dropout: float = 0.5

    def __post_init__(self):
        model = self.model
        if isinstance(model, dict):
            unknown = sorted(set(model) - MODEL_KEYS)
            if unknown:
                raise OptionError(f"unknown model option '{unknown[0]}'")
            try:
                model = dataclasses.replace(DEFAULT_MODEL, **model)
            except (CheckpointError, TypeError) as e:
                raise OptionError(f"model: {first_line(e)}") from None
            object.__setattr__(self, "model", model)
        elif not isinstance(model, TransformerConfig):
            raise OptionError(f"model must be a mapping of architecture options, got {model!r}")
        controls = (self.controls,) if isinstance(self.controls, str) else tuple(self.controls or ())
        unknown = [c for c in controls if c not in CONTROL_NAMES]
        if unknown or len(set(controls)) != len(controls):
            raise OptionError(f"controls must be distinct names among {', '.join(CONTROL_NAMES)}, got {list(controls)}")
        if controls and not model.n_controls:
            model = dataclasses.replace(model, n_controls=len(controls))
        if model.n_controls != len(controls):
            raise OptionError(f"model.n_controls is {model.n_controls} but {len(controls)} controls are named "
                              "(set controls: [loudness])")
        object.__setattr__(self, "controls", controls)
        object.__setattr__(self, "model", model)
        if not 0 <= self.control_dropout <= 1 or not 0 <= self.control_span_dropout <= 1:
            raise OptionError("control_dropout and control_span_dropout must be in [0, 1]")
        if not 0 <= self.structured_masks <= 1:
            raise OptionError(f"structured_masks must be in [0, 1], got {self.structured_masks}")
        positive = ("batch_size", "grad_accum", "max_steps", "warmup_steps", "val_every", "val_windows", "preview_steps")
        for name in positive:
            if getattr(self, name) < 1:
                raise OptionError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.model.embedding_dim < 1:
            raise OptionError(f"model.embedding_dim must be >= 1, got {self.model.embedding_dim}")
        if not 0 <= self.model.dropout < 1 or not 0 <= self.label_smoothing < 1:
            raise OptionError("model.dropout and label_smoothing must be in [0, 1)")
        if not 0 <= self.neighbour_smoothing < 1:
            raise OptionError(f"neighbour_smoothing must be in [0, 1), got {self.neighbour_smoothing}")
        if self.neighbour_temperature <= 0:
            raise OptionError(f"neighbour_temperature must be positive, got {self.neighbour_temperature}")
        if self.window_s <= 0 or self.lr_factor <= 0 or self.grad_clip <= 0:
            raise OptionError("window_s, lr_factor and grad_clip must be positive")
        if self.lora_rank < 0 or self.save_every_s < 0:
            raise OptionError("lora_rank and save_every_s must be >= 0")
        check_bf16(self.bf16)

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "controls": list(self.controls)}  # (YAML writes lists, not tuples)


def check_bf16(value) -> None:
    """A run's `bf16` is true, false or "auto"."""
    if value not in (True, False, "auto") or isinstance(value, (int, float)) and not isinstance(value, bool):
        raise OptionError(f"bf16 must be true, false or auto, got {value!r}")


def read_run_config(cls, path=None, overrides: list[str] | tuple = (), **defaults):
    """Build the config dataclass `cls` from a YAML run file, with `defaults` (what the command implies) under it
    and `key=value` overrides over it (`model.KEY=value` for a nested model option). An unknown key is an error
    that names it."""
    try:
        import yaml
    except ImportError:
        raise OptionError("training needs its extra dependencies: pip install 'vampnet[train]'") from None

    nested = {f.name for f in fields(cls) if f.name == "model"}
    values: dict = {}
    _merge(values, _nest_model_keys(dict(defaults), nested))
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise OptionError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise OptionError(f"{path} is not valid YAML: {first_line(e)}") from None
        if not isinstance(loaded, dict):
            raise OptionError(f"{path} must hold a mapping of option: value")
        _merge(values, _nest_model_keys(loaded, nested))
    for item in overrides:
        if "=" not in item:
            raise OptionError(f"--set takes key=value, got {item!r}")
        key, raw = (part.strip() for part in item.split("=", 1))
        parent, _, child = key.partition(".")
        change = {parent: {child: yaml.safe_load(raw)}} if child and parent in nested else {key: yaml.safe_load(raw)}
        _merge(values, _nest_model_keys(change, nested))
    known = {f.name for f in fields(cls)}
    for key in values:
        if key not in known:
            raise OptionError(f"unknown training option '{key}'")
    try:
        return cls(**values)
    except TypeError as e:
        raise OptionError(str(e)) from None


def _nest_model_keys(values: dict, nested: set) -> dict:
    """Top-level architecture keys (the older flat spelling, `n_layers: 6`) moved under `model`."""
    if not nested:
        return values
    flat = {k: values.pop(k) for k in list(values) if k in MODEL_KEYS}
    if flat:
        model = values.get("model") or {}
        if not isinstance(model, dict):
            raise OptionError(f"model must be a mapping of architecture options, got {model!r}")
        values["model"] = {**flat, **model}
    return values


def _merge(into: dict, changes: dict) -> None:
    """`changes` over `into`, mappings merged key by key (so a --set of one model option keeps the others)."""
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = dict(value) if isinstance(value, dict) else value


def load_config(path=None, overrides: list[str] | tuple = (), **defaults) -> TrainConfig:
    """The transformer training config (see read_run_config)."""
    return read_run_config(TrainConfig, path, overrides, **defaults)


def config_to_yaml(values: dict) -> str:
    """A run configuration as YAML, in field order (written beside each run's checkpoints)."""
    import yaml

    return yaml.safe_dump(values, sort_keys=False)
