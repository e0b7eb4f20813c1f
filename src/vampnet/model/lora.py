"""LoRA adapters on the masked transformer: reading adapter files (ours, and the original's bare
`lora_A`/`lora_B` dicts) and merging them into the base weights for inference (W + B @ A * scaling); for training,
adding trainable factors with peft (an optional dependency, the `train` extra) and taking them out again.

Adapters go on the same projections the original adapted: attention q, v and output, and both feed-forward
weights. A fine-tune that teaches a model a control (`vampnet finetune --control loudness`) also trains the model's
new control projection in full; our adapter file then holds its weights too (`control.*`, config `n_controls`),
and loading the adapter gives the base model that projection."""
from __future__ import annotations

import torch

from ..errors import CheckpointError, OptionError
from ..quiet import quiet_torchao
from ..serialization import read_checkpoint, save_safetensors
from .official import LORA_PROJECTIONS

KIND = "lora"
ADAPTER_FILE = "lora.safetensors"  # a LoRA training checkpoint's adapters (in place of model.safetensors)
TARGET_MODULES = ("attn.q", "attn.v", "attn.out", "ff.w_in", "ff.w_out")
# the original's (loralib) names of the adapted projections (official.LORA_PROJECTIONS) -> ours, in the same order
_OFFICIAL_TO_OURS = dict(zip(LORA_PROJECTIONS, TARGET_MODULES))


CONTROL_PREFIX = "control."


def save_adapter(path, adapters: dict[str, tuple[torch.Tensor, torch.Tensor]], scaling: float, base_config: dict,
                 control: dict[str, torch.Tensor] | None = None) -> None:
    """Write adapters {module name: (A (r, in), B (out, r))} in our format, with a control projection's weights
    ({"control.proj.weight": ..., ...}, control_state) when the fine-tune added one."""
    state = {}
    for name, (a, b) in adapters.items():
        state[f"{name}.lora_A"], state[f"{name}.lora_B"] = a, b
    config = {"scaling": scaling, "base": base_config}
    if control:
        state.update(control)
        config["n_controls"] = int(control[CONTROL_PREFIX + "proj.weight"].shape[1])
    save_safetensors(path, state, KIND, config)


def control_state(model) -> dict[str, torch.Tensor] | None:
    """The weights of a model's control projection (None without one), as an adapter file holds them."""
    if not getattr(model, "n_controls", 0):
        return None
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if k.startswith(CONTROL_PREFIX)}


def read_control(path) -> dict[str, torch.Tensor] | None:
    """The control projection an adapter file of ours holds, or None."""
    ckpt = read_checkpoint(path)
    if ckpt.official or not ckpt.config.get("n_controls"):
        return None
    return {k: v.float() for k, v in ckpt.state_dict.items() if k.startswith(CONTROL_PREFIX)}


@torch.no_grad()
def restore_control(model, control: dict[str, torch.Tensor] | None) -> None:
    """Give `model` the control projection `control` (read_control), adding the projection when it has none."""
    if not control:
        return
    weight = control.get(CONTROL_PREFIX + "proj.weight")
    if weight is None or set(control) != {CONTROL_PREFIX + "proj.weight", CONTROL_PREFIX + "proj.bias"}:
        raise CheckpointError("an adapter's control projection must hold control.proj.weight and control.proj.bias")
    model.add_controls(int(weight.shape[1]))
    target = model.control.proj
    if tuple(target.weight.shape) != tuple(weight.shape):
        raise CheckpointError(f"the adapter's control projection is {tuple(weight.shape)}, the model's "
                              f"{tuple(target.weight.shape)}")
    target.weight.copy_(weight.to(target.weight))
    target.bias.copy_(control[CONTROL_PREFIX + "proj.bias"].to(target.bias))


def read_adapter(path) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], float]:
    """Our adapter file, or an original LoRA file (bare dict, scaling 1/r as loralib with lora_alpha=1)."""
    ckpt = read_checkpoint(path)
    if not ckpt.official and ckpt.kind != KIND:
        raise CheckpointError(f"{path} is a '{ckpt.kind}' checkpoint, not a LoRA adapter")
    if ckpt.official and ckpt.kind != "bare_state_dict":
        raise CheckpointError(f"{path} is a full checkpoint, not a LoRA file; load it as a model instead")
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in ckpt.state_dict.items():
        if not ckpt.official and key.startswith(CONTROL_PREFIX):
            continue  # a control projection (read_control)
        if not key.endswith((".lora_A", ".lora_B")):
            raise CheckpointError(f"{path}: unexpected key '{key}' in a LoRA file")
        name, which = key.rsplit(".", 1)
        if ckpt.official:
            name = _official_name(name, path)
        pairs.setdefault(name, {})[which] = value.float()
    adapters = {}
    for name, p in pairs.items():
        if set(p) != {"lora_A", "lora_B"}:
            raise CheckpointError(f"{path}: '{name}' has only one of lora_A / lora_B")
        adapters[name] = (p["lora_A"], p["lora_B"])
    if not adapters:
        raise CheckpointError(f"{path} holds no LoRA weights")
    if ckpt.official:
        rank = next(iter(adapters.values()))[0].shape[0]
        return adapters, 1.0 / rank
    return adapters, float(ckpt.config["scaling"])


def _official_name(name: str, path) -> str:
    # transformer.layers.{l}.self_attn.w_qs -> layers.{l}.attn.q
    parts = name.split(".")
    if len(parts) < 4 or parts[0] != "transformer" or parts[1] != "layers" or ".".join(parts[3:]) not in _OFFICIAL_TO_OURS:
        raise CheckpointError(f"{path}: '{name}' is not a LoRA-adapted projection of VampNet")
    return f"layers.{parts[2]}.{_OFFICIAL_TO_OURS['.'.join(parts[3:])]}"


@torch.no_grad()
def merge_adapter(model, adapters: dict[str, tuple[torch.Tensor, torch.Tensor]], scaling: float) -> None:
    """W <- W + (B @ A) * scaling for each adapted linear layer of `model`, checking names and shapes."""
    modules = dict(model.named_modules())
    for name, (a, b) in adapters.items():
        layer = modules.get(name)
        if layer is None or not isinstance(layer, torch.nn.Linear):
            raise CheckpointError(f"the adapter names '{name}', which is not a linear layer of this model")
        w = layer.weight
        if a.shape[1] != w.shape[1] or b.shape[0] != w.shape[0] or a.shape[0] != b.shape[1]:
            raise CheckpointError(f"adapter '{name}' has shapes {tuple(a.shape)} / {tuple(b.shape)}, the layer {tuple(w.shape)}")
        w.add_(((b.to(w.device) @ a.to(w.device)) * scaling).to(w.dtype))
    model.rel_bias.train(model.training)  # clears cached tensors derived from weights


def load_adapter(model, path) -> None:
    """Merge the adapter file at `path` into `model` (ours or an original LoRA file), and give the model the
    control projection the file holds, if any."""
    adapters, scaling = read_adapter(path)
    merge_adapter(model, adapters, scaling)
    restore_control(model, read_control(path))


# --- training: peft-injected factors ------------------------------------------------------------------------------
def inject_lora(model, rank: int, alpha: float) -> None:
    """Add trainable LoRA factors (peft) to the target projections; every other weight is frozen."""
    with quiet_torchao():  # peft loads torchao, whose kernel-loading failures and warnings are noise here
        try:
            from peft import LoraConfig, inject_adapter_in_model
        except ImportError:
            raise OptionError("LoRA fine-tuning needs peft: pip install 'vampnet[train]'") from None
        config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, bias="none",
                            target_modules=list(TARGET_MODULES))
        inject_adapter_in_model(config, model)
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)


def _lora_layers(model):
    for name, module in model.named_modules():
        if hasattr(module, "lora_A") and hasattr(module, "base_layer") and "default" in module.lora_A:
            yield name, module


def extract_adapters(model) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], float]:
    """{layer name: (A, B)} and the scaling (alpha / r) of a peft-injected model."""
    adapters, scaling = {}, None
    for name, module in _lora_layers(model):
        adapters[name] = (module.lora_A["default"].weight.detach().cpu().clone(),
                          module.lora_B["default"].weight.detach().cpu().clone())
        scaling = module.scaling["default"]
    if not adapters:
        raise CheckpointError("the model has no LoRA adapters")
    return adapters, float(scaling)


@torch.no_grad()
def restore_adapters(model, adapters: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Load adapter factors back into a peft-injected model (to resume training, not to merge)."""
    layers = dict(_lora_layers(model))
    if set(layers) != set(adapters):
        raise CheckpointError("the saved adapters do not match the model's LoRA layers")
    for name, (a, b) in adapters.items():
        layers[name].lora_A["default"].weight.copy_(a)
        layers[name].lora_B["default"].weight.copy_(b)
