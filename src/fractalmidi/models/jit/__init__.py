"""JiT family: pixel-space flow-matching transformer (registers its presets on import).

Presets (any option can be overridden, e.g. ``build("jit-B", num_classes=4)``):

- ``jit-tiny``: 2 blocks of width 64, patch 16; trains and samples in seconds on a CPU.
- ``jit-128x128``: the JiT-Music seed, JiT-B/16 on 128 x 128 rolls, unconditional
  (one class), no in-context tokens.
- ``jit-B``: JiT-B/16 (depth 12, width 768) with 32 in-context label tokens from block 4.
- ``jit-L``: JiT-L/16 (depth 24, width 1024) with 32 in-context tokens from block 8, for GPUs.
"""

from fractalmidi.models.jit.denoiser import JiT
from fractalmidi.models.registry import register_preset

__all__ = ["JiT"]

_BASE = dict(patch_size=16, dim=768, depth=12, num_heads=12, bottleneck_dim=128)

register_preset(
    "jit-tiny", JiT, patch_size=16, dim=64, depth=2, num_heads=4, bottleneck_dim=32,
    ema_decays=(0.99, 0.999), steps=10,
)
register_preset("jit-128x128", JiT, **_BASE)
register_preset("jit-B", JiT, **_BASE, in_context_len=32, in_context_start=4)
register_preset(
    "jit-L", JiT, patch_size=16, dim=1024, depth=24, num_heads=16, bottleneck_dim=128,
    in_context_len=32, in_context_start=8,
)
