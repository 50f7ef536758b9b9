"""JiT family: pixel-space flow-matching transformer (registers its presets on import).

Presets (any option can be overridden, e.g. ``build("jit-B", num_classes=4)``):

- ``jit-tiny``: 2 blocks of width 64, patch 16; trains and samples in minutes on a CPU. A
  minutes-old model's sounding channel hedges, so its notes start sounding at 0.35, not 0.5
  (four voices on Bach instead of two; bench_quality).
- ``jit-128x128``: the JiT-Music seed, JiT-B/16 on 128 x 128 rolls, unconditional
  (one class), no in-context tokens.
- ``jit-B``: JiT-B/16 (depth 12, width 768) with 32 in-context label tokens from block 4.
- ``jit-L``: JiT-L/16 (depth 24, width 1024) with 32 in-context tokens from block 8, for GPUs.
"""

import inspect
from typing import Any

from fractalmidi.models.jit.denoiser import JiT
from fractalmidi.models.jit.network import JiTNet
from fractalmidi.models.registry import register_preset

__all__ = ["JiT"]

_FIXED = ("in_channels", "out_channels")
"""Set by the objective (noisy roll + canvas + mask in, roll out), not options."""
_NET_DEFAULTS = {name: param.default for name, param in inspect.signature(JiTNet).parameters.items()
                 if name not in _FIXED}
"""Every network option is listed in each preset, so configs can override any of them by name."""
_BASE = dict(patch_size=16, dim=768, depth=12, num_heads=12, bottleneck_dim=128)


def _register(name: str, **options: Any) -> None:
    register_preset(name, JiT, **{**_NET_DEFAULTS, **options})


_register("jit-tiny", patch_size=16, dim=64, depth=2, num_heads=4, bottleneck_dim=32,
          ema_decays=(0.99, 0.999), steps=10, silence_below=0.35)
_register("jit-128x128", **_BASE)
_register("jit-B", **_BASE, in_context_len=32, in_context_start=4)
_register("jit-L", patch_size=16, dim=1024, depth=24, num_heads=16, bottleneck_dim=128,
          in_context_len=32, in_context_start=8)
