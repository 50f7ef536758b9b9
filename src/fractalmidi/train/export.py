"""A slim inference checkpoint (the generator's weights, EMA ones
when kept, plus the resolved config and versions), without optimizer or trainer state, so a
model can be shared or shipped (``--half`` halves it again, fp16 weights)."""

from __future__ import annotations

from pathlib import Path

import torch

from fractalmidi.train.checkpoint import (
    EXTRA_KEY,
    MODEL_PREFIX,
    atomic_torch_save,
    load_generator,
    resolve_checkpoint,
    safe_load,
)


def export_generator(source: str | Path, out: Path, *, half: bool = False) -> int:
    """Write the slim checkpoint of ``source`` (a run folder or .ckpt) to ``out``; returns its size in bytes."""
    path = resolve_checkpoint(source)
    model, config = load_generator(path)  # EMA weights baked in
    ckpt = safe_load(path)
    extra = ckpt[EXTRA_KEY]
    dtype = torch.float16 if half else torch.float32
    state = {MODEL_PREFIX + k: (v.to(dtype) if v.is_floating_point() else v) for k, v in model.state_dict().items()}
    slim = {"state_dict": state,
            EXTRA_KEY: {"config": config, "versions": extra.get("versions", {}), "ema": None,
                        "exported_from": str(path),
                        "global_step": int(ckpt.get("global_step", 0))}}
    atomic_torch_save(slim, out)
    return out.stat().st_size
