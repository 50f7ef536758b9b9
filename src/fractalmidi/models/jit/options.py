"""JiT's options, declared once: the network, the objective and the sampler.

Presets, the training config's ``model.*`` keys, ``generate``'s flags and ``fractalmidi info``
are all read from these dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass

from fractalmidi.data.roll import NUM_PITCHES
from fractalmidi.data.texture import AUTO_VOICES
from fractalmidi.models.base import MAX_ITERATIONS, MAX_JITTER_COLUMNS
from fractalmidi.options import NON_NEGATIVE, POSITIVE, UNIT, Bound, count_bound, option

DEFAULT_SILENCE_BELOW = 0.5
"""A pixel sounds where its generated sounding channel (0 = silence, 1 = note) exceeds this."""
DEFAULT_ONSET_ABOVE = 0.25
"""A generated onset channel peak over this starts a note (a peak over one half always does)."""
CAPPED_SILENCE_BELOW = 0.2
"""The sounding threshold under a voice cap: the cap keeps stray pitches out, so weaker pixels may sound (jit-tiny,
5 minutes: Bach mean OA 0.613 at 0.35 -> 0.643 at 0.2, folk 0.595 -> 0.669; benchmarks/RESULTS.md)."""
VOICES = Bound(f"a whole number in {AUTO_VOICES}..{NUM_PITCHES}",
               lambda v: isinstance(v, int) and AUTO_VOICES <= v <= NUM_PITCHES)
TIME_RANGE = Bound("LOW HIGH with 0 <= LOW <= HIGH <= 1",
                   lambda v: isinstance(v, (list, tuple)) and len(v) == 2 and 0 <= v[0] <= v[1] <= 1)


@dataclass(frozen=True)
class JiTNetOptions:
    """:class:`~fractalmidi.models.jit.network.JiTNet`'s options (its channels are set by the objective)."""

    patch_size: int = option(16, "patch side in pixels (a roll's length must be a multiple)")
    dim: int = option(768, "transformer width")
    depth: int = option(12, "transformer blocks")
    num_heads: int = option(12, "attention heads")
    mlp_ratio: float = option(4.0, "MLP width / transformer width")
    bottleneck_dim: int = option(128, "width of the patch embedding's bottleneck")
    num_classes: int = option(1, "class labels (1 = unconditional)")
    label_dropout: float = option(0.1, "share of training labels dropped (for classifier-free guidance)",
                                  training_only=True)
    in_context_len: int = option(0, "label tokens prepended to the sequence (0 = none)")
    in_context_start: int = option(0, "block where the in-context label tokens join")
    attn_drop: float = option(0.0, "attention dropout", training_only=True)
    proj_drop: float = option(0.0, "dropout after attention and MLP projections", training_only=True)
    grad_checkpointing: bool = option(False, "recompute activations in the backward pass (less memory)",
                                      training_only=True)


@dataclass(frozen=True)
class JiTOptions(JiTNetOptions):
    """The network's options plus the flow-matching objective's."""

    P_mean: float = option(-0.8, "mean of the logit-normal training time distribution")  # noqa: N815 (the paper's name)
    P_std: float = option(0.8, "spread of the logit-normal training time distribution (> 0)")  # noqa: N815
    noise_scale: float = option(1.0, "standard deviation of the training noise (> 0)")
    offset_noise: float = option(0.0, "standard deviation of a per-roll, per-channel constant added to the noise "
                                 "(times noise_scale): a roll's overall loudness and density then come from the "
                                 "noise, not from a 1/sqrt(pixels) average of it", bound=NON_NEGATIVE)
    t_eps: float = option(0.05, "velocities divide by max(1 - t, t_eps), in (0, 1)")
    position_jitter: int = option(0, "training shifts a crop's time positions by 0..this many token columns, so "
                                  "pieces up to that much longer than the crops sample at positions seen in "
                                  "training", bound=count_bound(MAX_JITTER_COLUMNS, least=0), training_only=True)
    mask_probs: dict[str, float] | None = option(None, "training mask kind -> probability (none = masks.py's defaults)")
    loss_on: str = option("unknown", "pixels the loss covers: unknown (generated ones) | all")
    ema_decays: tuple[float, ...] = option((0.9996, 0.9998), "EMA decays the trainer keeps (empty = no EMA)")
    velocity_bins: int = option(0, "0: a note's velocity is the mean of its regressed velocity channel; n: the "
                                "network also gives n-bin velocity probabilities per token and each note's velocity "
                                "is drawn from its start pixel's, so a piece keeps its spread of loudness",
                                bound=NON_NEGATIVE)


@dataclass(frozen=True)
class JiTSampling:
    """``JiT.sample`` options; a preset's values are its model's defaults."""

    steps: int = option(50, "ODE steps", bound=count_bound(MAX_ITERATIONS))
    sampler: str = option("heun", "ODE solver: euler | heun")
    cfg: float = option(1.0, "classifier-free guidance scale (1 = off; needs --label)", bound=NON_NEGATIVE)
    cfg_interval: tuple[float, float] = option((0.1, 1.0), "times where guidance applies", metavar=("LOW", "HIGH"),
                                               bound=TIME_RANGE)
    start_noise: float = option(1.0, "scale of the starting noise, times the training noise_scale "
                                "(formerly 'temperature')", bound=POSITIVE)
    silence_below: float = option(DEFAULT_SILENCE_BELOW, "pixels whose generated sounding channel (0..1) is under "
                                  "this stay silent", bound=UNIT)
    onset_above: float = option(DEFAULT_ONSET_ABOVE, "a peak in time of the generated onset channel (0..1) over this "
                                "starts a note (lower: more re-struck, shorter notes)", bound=UNIT)
    max_voices: int = option(AUTO_VOICES, "at most this many pitches sound at once, each step keeping its strongest "
                             "(0 = no cap; -1 = set when training starts to the training music's voice count where "
                             "most of its steps share one, e.g. 1 for melodies, 4 for chorales)", bound=VOICES)
    capped_silence_below: float = option(CAPPED_SILENCE_BELOW, "silence_below where max_voices caps the voices",
                                         bound=UNIT)
