"""FractalGen's options, declared once: the model (architecture and objective) and its sampling.

Presets, the training config's ``model.*`` keys, ``generate``'s flags and ``fractalmidi info``
are all read from these two dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass

from fractalmidi.data.roll import NUM_PITCHES
from fractalmidi.models.base import MAX_ITERATIONS, MAX_JITTER_COLUMNS
from fractalmidi.options import NON_NEGATIVE, POSITIVE, UNIT, Bound, count_bound, option

PIECE_EDGES = {"both": (True, True), "start": (True, False), "end": (False, True), "none": (False, False)}
"""Sampling's ``edges`` choices: (the roll begins at a piece's start, the roll holds its end)."""
EDGES = Bound(" | ".join(PIECE_EDGES), lambda v: v in PIECE_EDGES)
VOICE_RANGE = Bound("two whole numbers LOW <= HIGH (0 0 = off)",
                    lambda v: len(v) == 2 and all(isinstance(n, int) for n in v) and 0 <= v[0] <= v[1])


@dataclass(frozen=True)
class FractalOptions:
    """Architecture and training objective (one entry per level in the per-level lists)."""

    patch_sizes: tuple[int, ...] = option((16, 4, 1), "patch side per level, coarse to fine; ends with 1 (pixels)")
    generators: tuple[str, ...] = option(("mar", "mar", "mar"), "per level: mar (masked, parallel) | ar (causal scan)")
    widths: tuple[int, ...] = option((768, 384, 192), "transformer width per level")
    depths: tuple[int, ...] = option((4, 2, 1), "transformer blocks per level")
    heads: tuple[int, ...] = option((12, 6, 3), "attention heads per level")
    mlp_ratio: float = option(4.0, "MLP width / transformer width")
    scan_order: str = option("row_major", "AR levels' patch order: row_major | column_major (pitch first)")
    frame_block: int = option(0, "0 = off; s: each time step's s*s keys from MIDI 21 up are folded into one s x s "
                              "block, so the top level (patches of side s) scans frame by frame and the levels "
                              "below write one frame's keys, low to high; keys outside are always silent",
                              bound=NON_NEGATIVE)
    seams: bool = option(False, "MAR levels also hand down the pixel columns along each patch's edges")
    head_width: int = option(192, "pixel head width")
    head_depth: int = option(1, "pixel head blocks")
    num_bins: int = option(128, "velocity levels of a pixel, silence included (2 = binary on/off)")
    note_states: bool = option(True, "hold vs onset pixel states, velocity on onsets only (false: velocity bins only)")
    num_classes: int = option(0, "class labels (0 = unconditional)")
    label_dropout: float = option(0.1, "share of training labels dropped (for classifier-free guidance)",
                                  training_only=True)
    mask_ratio_min: float = option(0.0, "MAR training hides a share of patches drawn from [this, 1]",
                                   training_only=True)
    dropout: float = option(0.0, "dropout in every transformer block and the pixel head", training_only=True)
    occupancy_weight: float = option(1.0, "weight of the per-level 'does this patch hold a note' loss",
                                     training_only=True)
    edge_crops: float = option(0.0, "share of training crops that begin at a piece's start or end with its last bar "
                               "(0 = off); above 0 the top level learns a mark for a piece's first and last patch "
                               "columns (which sampling's edges option sets)", bound=UNIT)
    position_jitter: int = option(0, "training shifts each batch's top-level patch columns by 0..this many, so "
                                       "pieces up to that many patches longer than the crops sample at positions "
                                       "seen in training",
                                  bound=count_bound(MAX_JITTER_COLUMNS, least=0), training_only=True)
    empty_keep: float = option(1.0, "training passes a silent patch down with this probability, in (0, 1]",
                               training_only=True)
    ema_decays: tuple[float, ...] = option((), "EMA decays the trainer keeps (empty = no EMA)")
    num_pitches: int = option(NUM_PITCHES, "roll height (below 128 only in micro test models)")
    grad_checkpointing: bool = option(False, "recompute activations in the backward pass (less memory)",
                                      training_only=True)


@dataclass(frozen=True)
class FractalSampling:
    """``FractalGen.sample`` options; a preset's values are its model's defaults."""

    num_iter_list: tuple[int, ...] = option((8, 4, 1), "MAR iterations per level, e.g. 8 4 1 (AR levels ignore theirs)",
                                            bound=count_bound(MAX_ITERATIONS))
    cfg: float = option(1.0, "classifier-free guidance scale (1 = off; needs --label)", bound=NON_NEGATIVE)
    temperature: float = option(1.0, "temperature of what a pixel is: silence, hold or onset (lower = safer notes; "
                                               "velocities keep the model's spread)",
                                bound=POSITIVE)
    sparsity_bias: float = option(0.0, "added to the silence logit (>0 = fewer notes)")
    edges: str = option("both", "for a model trained with edge_crops, which ends of the roll are a piece's start and "
                               "end: both | start | end | none (an excerpt)", bound=EDGES)
    voice_range: tuple[int, ...] = option((0, 0), "LOW HIGH: a beat where a generated step sounds fewer than LOW or "
                                          "more than HIGH notes is drawn again (silent steps pass; 0 0 = off)",
                                          bound=VOICE_RANGE)
    voice_redraws: int = option(3, "with voice_range, how many times such beats are drawn again (each run of them "
                                   "keeps the draw with fewer steps outside the range)",
                                bound=count_bound(MAX_ITERATIONS))
    voice_redraw_iters: int = option(0, "top-level MAR iterations of each voice redraw round (0 = as the first draw, "
                                        "num_iter_list's first entry; 1 draws all of a round's beats at once, about a "
                                        "fifth of a full draw's time)", bound=count_bound(MAX_ITERATIONS, least=0))
    rhythm_steer: float = option(0.0, "for a model trained with style labels: added to the hold logit of pieces whose "
                                      "label's onset rate is low and taken from those whose rate is high, so "
                                      "labels steer the rhythm (0 = the model alone)", bound=NON_NEGATIVE)
    chroma_steer: tuple[float, float] = option((0.0, 0.0), "LOW HIGH, for a key-normalised model trained with style "
                                               "labels (it composes in C major / A minor): LOW is taken from the onset "
                                               "logit of the five pitch classes outside C major in pieces whose "
                                               "label's chromaticism is low, HIGH added where it is high, so labels "
                                               "steer the harmony (0 0 = the model alone)",
                                               metavar=("LOW", "HIGH"), bound=NON_NEGATIVE)
    velocity_min_p: float = option(0.0, "an onset's velocity is never one less likely than this share of its "
                                        "likeliest velocity (0 = the model's whole distribution)", bound=UNIT)
