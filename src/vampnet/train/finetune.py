"""Fine-tuning on a user's own audio: LoRA adapters (peft) on the projections the original adapted
(attention q, v, output; both feed-forward weights), or full fine-tuning; one command tokenises the audio and
fine-tunes the coarse and coarse-to-fine models of a base model, writing adapters (or full weights) and a manifest
naming the base, so the output folder is a model of its own (in $VAMPNET_HOME/models/NAME it is listed by name).

`control="loudness"` teaches the coarse model to follow a loudness envelope (vampnet.controls; issue 28), the
recipe for the official model: the coarse model gains a zero-initialised control projection, trained in full
beside the LoRA adapters (or with every weight, `full`) on the tokenised audio's own envelopes, each example's
dropped at random so guided sampling has its unconditioned model; the adapter file carries the projection. The
coarse-to-fine model is fine-tuned as without a control (the loudness is the coarse codebooks')."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

from ..checkpoints import find_model_files
from ..codec import Codec
from ..controls import CONTROL_NAMES
from ..devices import check_device
from ..errors import CheckpointError, OptionError
from ..model import MaskedTransformer
from ..model.lora import ADAPTER_FILE
from ..pretrained import MANIFEST, OFFICIAL, SHIPPED, manifest, resolve
from ..serialization import atomic_path
from .config import TrainConfig
from .data import TokenizeConfig, tokenize
from .masked import train


def finetune(audio_dirs, base: str | Path, output: str | Path, *, steps: int = 500, lora_rank: int = 8,
             lora_alpha: float = 16.0, full: bool = False, batch_size: int = 4, lr_factor: float | None = None,
             excerpt_s: float = 10.0, seed: int = 0, device: str = "cpu", progress: bool = True,
             control: str | None = None) -> dict[str, Path]:
    """Tokenise `audio_dirs` with the base codec, fine-tune the base coarse and c2f models, and write
    `<part>.lora.safetensors` adapters (or `<part>.safetensors` full weights with `full=True`) into `output`, with
    the manifest that makes `output` loadable as a model (`base`: a model name or a model folder)."""
    check_device(device)  # before the tokenising, not after it
    if control is not None and control not in CONTROL_NAMES:
        raise OptionError(f"--control must be one of {', '.join(CONTROL_NAMES)}, got {control!r}")
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
    for part in ("coarse", "c2f"):
        if files[part] is None:
            continue
        base_model = MaskedTransformer.load(files[part], codec)
        window = min(10.0 if part == "coarse" else 3.0, excerpt_s)
        # the coarse model learns the control; a base that has controls keeps training with them
        controls = (control,) if control is not None and part == "coarse" else CONTROL_NAMES[:base_model.n_controls]
        cfg = TrainConfig(dataset=str(output / "dataset"), output=str(output / f"{part}-run"), codec=str(files["codec"]),
                          init=str(files[part]), model=replace(base_model.config, n_controls=len(controls)),
                          controls=controls, window_s=window,
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
        details = {"control": control} if control is not None else {}
        tmp.write_text(json.dumps(manifest(base_name, "full" if full else "lora", steps=steps, lora_rank=lora_rank,
                                           audio=[str(Path(d).resolve()) for d in audio_dirs], **details), indent=2))
    return written
