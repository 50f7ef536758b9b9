"""JiT family: pixel-space flow-matching transformer (registers its family and presets on import)."""

from fractalmidi.models.jit.denoiser import JiT
from fractalmidi.models.jit.options import JiTOptions, JiTSampling
from fractalmidi.models.registry import Family, register_family, register_preset

JIT = register_family(Family(JiT, JiTOptions, JiTSampling, renamed={"temperature": "start_noise"}))

NOTES = {"velocity_bins": 32, "offset_noise": 0.3, "position_jitter": 8}
"""Every preset: each note draws its velocity from 32 bins (a regressed velocity is one loudness per piece: POP909
velocity OA 0.51 -> 0.80), and offset noise lets a piece's overall loudness and density come from the noise (POP909
velocity OA 0.80 -> 0.91-0.93; Bach Frechet 33.7 -> 30.8 / 23.8 / 22.5 and mean OA 0.553 -> 0.572 / 0.584 / 0.607 at
offsets 0.1 / 0.2 / 0.3): bench_quality, jit-tiny, 5 minutes (benchmarks/RESULTS.md). Position jitter of 8 token
columns (one 128-step crop) lets pieces twice the crop length sample at trained positions: without it the second
half of a 256-step folk piece had 72 notes over 24.8 semitones against the first half's 56 over 19.0 (with it: 56
over 19.9 against 51 over 20.0)."""

register_preset("jit-tiny", JIT, "2 blocks of width 64: trains and samples in minutes on a CPU; a minutes-old "
                "model's sounding channel hedges, so notes sound from 0.35, not 0.5, and it starts from 1.2x noise "
                "(at 1.0 its pieces are too diatonic and thin: 8.7 pitch classes, 3.6 voices; bench_quality)",
                dim=64, depth=2, num_heads=4, bottleneck_dim=32, ema_decays=(0.99, 0.999), steps=10,
                silence_below=0.35, start_noise=1.2, **NOTES)
register_preset("jit-small", JIT, "6 blocks of width 192 (4.5 M parameters) for an hour or two of CPU training "
                "(0.18 s per step of 8 crops on one thread); sampled at silence_below 0.6 and onset_above 0.2, "
                "chosen on POP909's validation songs after 85 minutes (0.35 / 0.25: mean OA 0.613 -> 0.729; "
                "benchmarks/RESULTS.md)",
                dim=192, depth=6, num_heads=6, bottleneck_dim=64, ema_decays=(0.999, 0.9999), steps=10,
                silence_below=0.6, onset_above=0.2, start_noise=1.2, **NOTES)
register_preset("jit-128x128", JIT, "the JiT-Music seed: JiT-B/16 on 128 x 128 rolls, unconditional", **NOTES)
register_preset("jit-B", JIT, "JiT-B/16 (depth 12, width 768) with 32 in-context label tokens from block 4",
                in_context_len=32, in_context_start=4, **NOTES)
register_preset("jit-L", JIT, "JiT-L/16 (depth 24, width 1024) with 32 in-context tokens from block 8, for GPUs",
                dim=1024, depth=24, num_heads=16, in_context_len=32, in_context_start=8, **NOTES)

__all__ = ["JiT", "JiTOptions", "JiTSampling"]
