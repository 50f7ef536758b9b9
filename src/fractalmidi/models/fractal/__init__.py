"""FractalGen family: recursive MAR/AR generators (registers its family and presets on import).

Default hierarchy ``patch_sizes = (16, 4, 1)`` on 128 x T: level 0 over 16x16 patches,
level 1 over the 4x4 sub-patches of each, level 2 over the pixels of each 4x4 patch, then
the pixel head. The seed quotes widths 768/384/192 with 16/4/2/1 blocks and ~30M
parameters, which disagree (16 blocks at width 768 alone are ~113M): ``fractal-default``
keeps the widths and the ~30M budget with 4/2/1 blocks on the three levels plus a one-block
pixel head; ``fractal-large`` uses the seed's 16/4/2 blocks (+ one-block head), ~120M.
"""

from fractalmidi.models.fractal.fractal import FractalGen
from fractalmidi.models.fractal.options import FractalOptions, FractalSampling
from fractalmidi.models.registry import Family, register_family, register_preset

FRACTAL = register_family(Family(FractalGen, FractalOptions, FractalSampling))

MAR_AR_AR = ("mar", "ar", "ar")
"""The default: a parallel (MAR) top level, and notes written pixel by pixel in time order below it,
so a note continues from the pixel before it instead of being drawn independently."""
AR3 = ("ar", "ar", "ar")
TINY = {"widths": (64, 32, 32), "depths": (2, 1, 1), "heads": (4, 2, 2), "head_width": 32,
        "num_iter_list": (8, 1, 1), "empty_keep": 0.1, "temperature": 0.8, "seams": True}
"""0.8: a tiny model's tempered samples keep closer to the data's pitches and rhythm (bench_quality).
Seams: without them the notes two patches share at their boundary break into one-step pieces (Bach:
15% of notes one step long against 0.5-6% with seams and 3.3% in the data)."""
SMALL = {**TINY, "widths": (128, 64, 32), "depths": (2, 2, 1), "heads": (4, 4, 2), "head_width": 64}
DEFAULT = {"num_iter_list": (16, 1, 1), "ema_decays": (0.9999,), "dropout": 0.1,
           "empty_keep": 0.25, "seams": True}
JSB = {"frame_block": 10, "patch_sizes": (10, 2, 1), "widths": (256, 64, 32), "depths": (4, 2, 1), "heads": (8, 4, 2),
       "head_width": 32, "num_bins": 2, "note_states": False, "num_iter_list": (1, 1, 1), "dropout": 0.1,
       "empty_keep": 0.25}
"""Frame by frame as the published models read chorales: level 0 a causal transformer over time steps (the 88 keys
and 12 silent ones above them folded into a 10x10 block), levels 1-2 a frame's 2x2 key groups and keys, low to high."""

register_preset("fractal-tiny", FRACTAL, "widths 64/32/32: trains on a CPU in minutes (tests, demos)",
                generators=MAR_AR_AR, **TINY)
register_preset("fractal-ar-tiny", FRACTAL, "fractal-tiny with AR at every level (exact likelihood)",
                generators=AR3, **TINY)
register_preset("fractal-small", FRACTAL, "widths 128/64/32: the shipped CPU models (minutes to an hour on 2 cores)",
                generators=MAR_AR_AR, **SMALL)
register_preset("fractal-default", FRACTAL, "the seed's widths 768/384/192, ~30M parameters", generators=MAR_AR_AR,
                **DEFAULT)
register_preset("fractal-ar", FRACTAL, "fractal-default with AR at every level (exact likelihood)", generators=AR3,
                **DEFAULT)
register_preset("fractal-large", FRACTAL, "the seed's 16/4/2 blocks, ~120M parameters", generators=MAR_AR_AR,
                **{**DEFAULT, "depths": (16, 4, 2)})
register_preset("fractal-jsb", FRACTAL, "the JSB likelihood benchmark's model: binary pixels, AR at every level, "
                "frame by frame (benchmarks/bench_jsb.py)", generators=AR3, **JSB)

__all__ = ["FractalGen", "FractalOptions", "FractalSampling"]
