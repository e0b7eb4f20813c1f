"""Fine-tuning on a user's own audio: LoRA adapters (peft) on the projections the original adapted
(attention q, v, output; both feed-forward weights), or full fine-tuning; one command tokenises the audio and
fine-tunes the coarse and coarse-to-fine models of a base model, writing adapters (or full weights) and a manifest
naming the base, so the output folder is a model of its own (in $VAMPNET_HOME/models/NAME it is listed by name)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from ..checkpoints import find_model_files
from ..codec import Codec
from ..errors import CheckpointError, OptionError
from ..model.lora import TARGET_MODULES
from ..pretrained import MANIFEST, OFFICIAL, SHIPPED, manifest, resolve
from ..serialization import atomic_path
from .config import TrainConfig
from .data import TokenizeConfig, tokenize

ADAPTER_FILE = "lora.safetensors"


def inject_lora(model, rank: int, alpha: float) -> None:
    """Add trainable LoRA factors (peft) to the target projections; every other weight is frozen."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError:
        raise OptionError("LoRA fine-tuning needs peft: pip install 'vampnet[train]'") from None

    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, bias="none", target_modules=list(TARGET_MODULES))
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


def finetune(audio_dirs, base: str | Path, output: str | Path, *, steps: int = 500, lora_rank: int = 8,
             lora_alpha: float = 16.0, full: bool = False, batch_size: int = 4, lr_factor: float | None = None,
             excerpt_s: float = 10.0, seed: int = 0, device: str = "cpu", progress: bool = True) -> dict[str, Path]:
    """Tokenise `audio_dirs` with the base codec, fine-tune the base coarse and c2f models, and write
    `<part>.lora.safetensors` adapters (or `<part>.safetensors` full weights with `full=True`) into `output`, with
    the manifest that makes `output` loadable as a model (`base`: a model name or a model folder)."""
    from .masked import train

    source = resolve(base)
    if source.finetuned:
        raise OptionError(f"{base} is a fine-tuned model; fine-tune its base model instead")
    base_name = source.name if source.name in (SHIPPED, OFFICIAL) else str(source.base.resolve())
    files = find_model_files(source.base)
    if files["coarse"] is None:
        raise CheckpointError(f"{base} has no coarse model to fine-tune")
    output = Path(output)
    codec = Codec.load(files["codec"])
    tokenize(audio_dirs, output / "dataset", codec, TokenizeConfig(excerpt_s=excerpt_s, min_excerpt_s=min(1.0, excerpt_s)),
             codec_path=str(Path(files["codec"]).resolve()), progress=progress)
    written = {}
    from ..model import MaskedTransformer

    for part in ("coarse", "c2f"):
        if files[part] is None:
            continue
        base_model = MaskedTransformer.load(files[part], codec)
        window = min(10.0 if part == "coarse" else 3.0, excerpt_s)
        cfg = TrainConfig(dataset=str(output / "dataset"), output=str(output / f"{part}-run"), codec=str(files["codec"]),
                          init=str(files[part]), n_codebooks=base_model.n_codebooks,
                          n_conditioning_codebooks=base_model.n_conditioning_codebooks,
                          embedding_dim=base_model.config.embedding_dim, n_heads=base_model.config.n_heads,
                          n_layers=base_model.config.n_layers, dropout=base_model.config.dropout, window_s=window,
                          batch_size=batch_size, max_steps=steps, warmup_steps=max(1, min(500, steps // 5)),
                          lr_factor=lr_factor or (2.0 if full else 8.0), val_every=max(1, steps // 5),
                          save_every=0, seed=seed, device=device, lora_rank=0 if full else lora_rank, lora_alpha=lora_alpha)
        train(cfg, resume=True, progress=progress)  # continues a run that was stopped, if there is one
        run = output / f"{part}-run" / "latest"
        if full:
            target = output / f"{part}.safetensors"
            MaskedTransformer.load(run / "model.safetensors").save(target)
        else:
            target = output / f"{part}.lora.safetensors"
            with atomic_path(target) as tmp:
                shutil.copyfile(run / ADAPTER_FILE, tmp)
        written[part] = target
    if not written:
        raise OptionError("nothing was fine-tuned")
    with atomic_path(output / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest(base_name, "full" if full else "lora", steps=steps, lora_rank=lora_rank,
                                           audio=[str(Path(d).resolve()) for d in audio_dirs]), indent=2))
    return written
