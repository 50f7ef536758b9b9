"""JiT family: pixel-space flow-matching transformer (registers its family and presets on import)."""

from fractalmidi.models.jit.denoiser import JiT
from fractalmidi.models.jit.options import JiTOptions, JiTSampling
from fractalmidi.models.registry import Family, register_family, register_preset

JIT = register_family(Family(JiT, JiTOptions, JiTSampling, renamed={"temperature": "start_noise"}))

register_preset("jit-tiny", JIT, "2 blocks of width 64: trains and samples in minutes on a CPU; a minutes-old "
                "model's sounding channel hedges, so notes sound from 0.35, not 0.5, and it starts from 1.2x noise "
                "(at 1.0 its pieces are too diatonic and thin: 8.7 pitch classes, 3.6 voices; bench_quality)",
                dim=64, depth=2, num_heads=4, bottleneck_dim=32, ema_decays=(0.99, 0.999), steps=10,
                silence_below=0.35, start_noise=1.2)
register_preset("jit-128x128", JIT, "the JiT-Music seed: JiT-B/16 on 128 x 128 rolls, unconditional")
register_preset("jit-B", JIT, "JiT-B/16 (depth 12, width 768) with 32 in-context label tokens from block 4",
                in_context_len=32, in_context_start=4)
register_preset("jit-L", JIT, "JiT-L/16 (depth 24, width 1024) with 32 in-context tokens from block 8, for GPUs",
                dim=1024, depth=24, num_heads=16, in_context_len=32, in_context_start=8)

__all__ = ["JiT", "JiTOptions", "JiTSampling"]
