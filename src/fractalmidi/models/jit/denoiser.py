"""JiT objective and sampler: flow matching with x-prediction and the v-loss, Euler/Heun ODE steps.

The network works on three channels made from the roll planes, each scaled from [0, 1] to
``x`` in [-1, 1]: *sounding* (is a note on here), *onset* (does one start here) and *velocity*
(the note's velocity / 127 over its pixels, 0 in silence). Separating "is there a note" from
"how loud" keeps a regression's hedging on one from blurring the other. Sampled pixels
become whole notes (:func:`~fractalmidi.models.base.decode_notes`): a pixel sounds where its
sounding channel is over ``silence_below`` (under a voice cap ``max_voices``: over ``capped_silence_below`` and
among its step's strongest, :func:`cap_voices`), a note starts at a peak of the onset channel (:func:`onsets`) or
after silence, and each note takes the mean of the velocity channel over its pixels, so it
has one velocity. With ``velocity_bins`` the network also gives each token (``p x p`` pixels) a
distribution over velocity bins (trained by cross-entropy on its sounding pixels) and each note draws
its velocity from its start pixel's token's distribution in the last prediction: a regression's mean
velocity is the same for every note of a piece, a draw keeps the piece's spread of loudness.

Training draws ``t = sigmoid(N(P_mean, P_std))`` and noise ``e ~ noise_scale * N(0, 1)``, forms ``z = t x + (1 -
t) e`` and asks the network for ``x``; the loss compares velocities ``v = (x - z) / (1 - t)`` with ``1 - t``
clamped at ``t_eps``. Sampling integrates ``dz/dt = v`` from pure noise at ``t = 0`` to ``t = 1``.

Conditioning on known pixels: the network also sees the known canvas (its three channels in
[-1, 1], 0 where unknown) and the generation mask. Training masks
are drawn from :mod:`~fractalmidi.models.jit.masks`; the loss covers only the pixels to
generate (``loss_on="unknown"``, each sample weighted equally) or every pixel
(``loss_on="all"``). While sampling, the x-prediction at known pixels is replaced by the
known value, so ``z`` there follows the exact straight path to it, and the result copies
known pixels bit-identically.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from fractalmidi.data.roll import MAX_VELOCITY, ONSET_PLANE, VELOCITY_PLANE
from fractalmidi.errors import UserError
from fractalmidi.models.base import DEFAULT_NOTE_VELOCITY, Generator, decode_notes, note_starts
from fractalmidi.models.jit.masks import DEFAULT_MASK_PROBS, check_mask_probs, draw_masks
from fractalmidi.models.jit.network import JiTNet
from fractalmidi.models.jit.options import DEFAULT_ONSET_ABOVE, JiTNetOptions, JiTOptions, JiTSampling

SAMPLERS = ("euler", "heun")
LOSS_ON = ("unknown", "all")
CHANNELS = 3
"""Sounding, onset, velocity: what the network denoises."""
SOUNDING, ONSET, VELOCITY = range(CHANNELS)
IN_CHANNELS = 2 * CHANNELS + 1
"""Noisy channels, known channels, generation mask."""
SILENT_VELOCITY = DEFAULT_NOTE_VELOCITY / MAX_VELOCITY
"""Velocity channel of a roll without notes."""


def to_signed(roll: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1]."""
    return roll * 2 - 1


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clamped (predictions can overshoot)."""
    return ((x + 1) / 2).clamp(0, 1)


def cap_voices(strength: torch.Tensor, sounding: torch.Tensor, held: torch.Tensor, voices: int) -> torch.Tensor:
    """``sounding`` ``(B, H, W)`` with at most ``voices`` pitches per step: ``held`` (known) pixels count first,
    then the generated ones of highest ``strength``."""
    rank = torch.where(held, 2.0, strength.masked_fill(~sounding, -1.0))
    kth = rank.topk(min(voices, rank.shape[1]), dim=1).values[:, -1:]
    return sounding & ((rank >= kth) | held)


def channels(planes: torch.Tensor) -> torch.Tensor:
    """Roll planes ``(B, 2, H, W)`` -> network channels ``(B, 3, H, W)`` in [0, 1].

    The velocity channel holds each note's velocity where it sounds and the mean velocity of the
    roll's notes elsewhere (:data:`SILENT_VELOCITY` for a silent roll): a pixel the network is
    unsure about then pulls its note's velocity towards the music's typical loudness, not
    towards silence.
    """
    velocity = planes[:, VELOCITY_PLANE]
    sounding = (velocity > 0).to(planes.dtype)
    count = sounding.sum(dim=(1, 2), keepdim=True)
    mean = torch.where(count > 0, velocity.sum(dim=(1, 2), keepdim=True) / count.clamp_min(1),
                       torch.full_like(count, SILENT_VELOCITY))
    return torch.stack([sounding, planes[:, ONSET_PLANE], torch.where(velocity > 0, velocity, mean)], 1)


def velocity_bin(velocity: torch.Tensor, bins: int) -> torch.Tensor:
    """Velocities in (0, 1] (a roll's velocity plane) -> bin indices ``0..bins-1``, equal widths over 1..127."""
    steps = (velocity * MAX_VELOCITY).round().clamp(1, MAX_VELOCITY) - 1
    return (steps * bins / MAX_VELOCITY).long().clamp_max(bins - 1)


def bin_velocity(index: torch.Tensor, bins: int) -> torch.Tensor:
    """Bin indices -> the velocity in (0, 1] at each bin's centre (the inverse of :func:`velocity_bin` to within
    half a bin)."""
    return (1 + ((index.double() + 0.5) * MAX_VELOCITY / bins - 0.5).round()).clamp(1, MAX_VELOCITY) / MAX_VELOCITY


def onsets(onset: torch.Tensor, sounding: torch.Tensor, above: float = DEFAULT_ONSET_ABOVE) -> torch.Tensor:
    """Where notes start, from a generated onset channel ``(B, H, W)`` in [0, 1] and where pixels sound:
    over one half, or a peak in time over ``above`` (a regression spreads an uncertain onset over
    neighbouring steps, which must give one note, while clear onsets on consecutive steps are
    fast repeated notes). A sounding pixel after silence starts a note whatever its onset value, and
    counts as a sure onset here, so a weaker peak on the next step (the sound began a step before
    the onset channel's peak) does not split that note into a one-step note and a re-strike."""
    before_sounding = torch.nn.functional.pad(sounding[..., :-1], (1, 0))
    onset = torch.where(sounding & ~before_sounding, torch.ones_like(onset), onset)
    before = torch.nn.functional.pad(onset[..., :-1], (1, 0))
    after = torch.nn.functional.pad(onset[..., 1:], (0, 1))
    return (onset > 0.5) | ((onset > above) & (onset >= before) & (onset > after))


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Switch dropout off for the ``with`` body and restore the previous mode."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


class JiT(Generator):
    """Just image Transformer on piano-rolls (see the module docstring).

    ``options`` (:class:`~.options.JiTOptions`) set the network, the objective, the training masks
    and the EMA decays; ``sampling`` (:class:`~.options.JiTSampling`) the defaults of :meth:`sample`.
    """

    family = "jit"
    has_likelihood = False

    def __init__(self, options: JiTOptions | None = None, sampling: JiTSampling | None = None) -> None:
        super().__init__()
        o = self.options = options or JiTOptions()
        if o.loss_on not in LOSS_ON:
            raise ValueError(f"loss_on {o.loss_on!r} is not one of {', '.join(LOSS_ON)}")
        if o.P_std <= 0 or o.noise_scale <= 0 or not 0 < o.t_eps < 1:
            raise ValueError(f"need P_std > 0, noise_scale > 0, 0 < t_eps < 1; "
                             f"got {o.P_std}, {o.noise_scale}, {o.t_eps}")
        net_options = {f.name: getattr(o, f.name) for f in dataclasses.fields(JiTNetOptions)}
        self.velocity_bins = o.velocity_bins
        self.net = JiTNet(in_channels=IN_CHANNELS, out_channels=CHANNELS, token_channels=o.velocity_bins,
                          **net_options)
        self.patch_size = self.net.patch_size
        self.num_classes = self.net.y_embedder.num_classes
        self.P_mean = o.P_mean
        self.P_std = o.P_std
        self.noise_scale = o.noise_scale
        self.offset_noise = o.offset_noise
        self.t_eps = o.t_eps
        self.position_jitter = o.position_jitter
        self.mask_probs = check_mask_probs(DEFAULT_MASK_PROBS if o.mask_probs is None else o.mask_probs)
        self.loss_on = o.loss_on
        self._ema_decays = tuple(float(d) for d in o.ema_decays)
        self.sampling = sampling or JiTSampling()
        self.checked_sampling({}, error=ValueError)

    # -- contract properties ------------------------------------------------------------

    @property
    def length_multiple(self) -> int:
        return self.patch_size

    @property
    def ema_decays(self) -> tuple[float, ...]:
        return self._ema_decays

    def parameter_table(self) -> list[tuple[str, int]]:
        rows = [(name, sum(p.numel() for p in child.parameters())) for name, child in self.net.named_children()]
        if self.net.in_context_pos is not None:
            rows.append(("in_context_pos", self.net.in_context_pos.numel()))
        return rows

    # -- training -----------------------------------------------------------------------

    def sample_t(self, n: int, device: torch.device | None = None) -> torch.Tensor:
        """Training times ``sigmoid(N(P_mean, P_std))``: mostly noisy, rarely near clean."""
        return torch.sigmoid(torch.randn(n, device=device) * self.P_std + self.P_mean)

    def noise(self, shape: torch.Size, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
        """Noise of ``shape`` ``(B, C, H, W)``: ``noise_scale * (N(0, 1) + offset_noise * N(0, 1) per roll and
        channel)``."""
        e = torch.randn(shape, generator=generator, device=device)
        if self.offset_noise:
            e = e + self.offset_noise * torch.randn((*shape[:2], 1, 1), generator=generator, device=device)
        return e * self.noise_scale

    def velocity(self, x: torch.Tensor, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``(x - z) / max(1 - t, t_eps)``: the velocity implied by clean ``x`` at ``z``, time ``t``."""
        return (x - z) / (1 - t).clamp_min(self.t_eps)

    def _labels(self, labels: torch.Tensor | None, batch: int, device: torch.device) -> torch.Tensor:
        if labels is None:
            return torch.zeros(batch, dtype=torch.long, device=device)
        if labels.shape != (batch,):
            raise ValueError(f"labels must have shape ({batch},), got {tuple(labels.shape)}")
        if labels.min() < 0 or labels.max() >= self.num_classes:
            raise ValueError(f"labels must lie in [0, {self.num_classes}), got {labels.tolist()}")
        return labels.long()

    @staticmethod
    def _inputs(z: torch.Tensor, known: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Stack the noisy channels, the known ones (0 where unknown) and the mask ``(B, 1, H, W)``."""
        return torch.cat([z, torch.where(mask, torch.zeros_like(known), known), mask.to(z.dtype)], dim=1)

    def loss(self, x: torch.Tensor, labels: torch.Tensor | None = None,
             edges: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """v-loss on a batch of rolls in [0, 1] under random generation masks.

        Parts: ``v_loss``, ``x_mse`` (squared error of the x-prediction, same pixels) and, with velocity bins,
        ``velocity_ce`` (cross-entropy of the velocity bins on the generated pixels where a note sounds); the
        total is ``v_loss + velocity_ce``. JiT is not told where pieces begin and end (no ``edges``).
        """
        if edges is not None:
            raise ValueError("JiT models take no piece edges")
        self.check_rolls(x)
        b = x.shape[0]
        data = to_signed(channels(x))
        labels = self._labels(labels, b, x.device)
        mask = draw_masks(b, x.shape[-1], self.mask_probs, patch_size=self.patch_size).to(x.device)
        t = self.sample_t(b, x.device).view(b, 1, 1, 1)
        z = t * data + (1 - t) * self.noise(data.shape, None, data.device).to(data)
        offset = int(torch.randint(self.position_jitter + 1, ())) if self.position_jitter else 0
        x_pred, velocity_logits = self.net(self._inputs(z, data, mask), t.flatten(), labels, col_offset=offset)
        weight = mask.to(x.dtype).expand_as(data) if self.loss_on == "unknown" else torch.ones_like(data)
        count = weight.sum(dim=(1, 2, 3)).clamp_min(1)

        def masked_mean(err: torch.Tensor) -> torch.Tensor:
            return ((err * weight).sum(dim=(1, 2, 3)) / count).mean()

        v_loss = masked_mean((self.velocity(data, z, t) - self.velocity(x_pred, z, t)) ** 2)
        x_mse = masked_mean((x_pred - data) ** 2).detach()
        parts = {"v_loss": v_loss.detach(), "x_mse": x_mse}
        if not self.velocity_bins:
            return v_loss, parts
        velocity_ce = self.velocity_ce(velocity_logits, x[:, VELOCITY_PLANE], mask[:, 0])
        parts["velocity_ce"] = velocity_ce.detach()
        return v_loss + velocity_ce, parts

    def velocity_ce(self, logits: torch.Tensor, velocity: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of each generated sounding pixel's velocity bin under its token's ``logits``
        ``(B, bins, H / p, W / p)``, averaged per sample (0 for a sample with none), then over the batch.
        Summed per token as bin counts, so no per-pixel logits are ever made."""
        b, bins, rows, cols = logits.shape
        p = self.patch_size
        on = mask & (velocity > 0)
        sample, row, col = on.nonzero(as_tuple=True)
        index = ((sample * bins + velocity_bin(velocity[on], bins)) * rows + row // p) * cols + col // p
        counts = torch.bincount(index, minlength=logits.numel()).view_as(logits).to(logits.dtype)
        nll = -(counts * logits.log_softmax(1)).sum(dim=(1, 2, 3))
        return (nll / on.sum(dim=(1, 2)).clamp_min(1)).mean()

    # -- sampling -----------------------------------------------------------------------

    def checked_sampling(self, opts: Mapping[str, Any], error: type[Exception] = UserError) -> JiTSampling:
        """The sampling defaults with ``opts`` on top, checked (see :class:`~.options.JiTSampling`)."""
        o = self.sampling_options(opts, error)
        low, high = (float(v) for v in o.cfg_interval)
        if int(o.steps) < 1:
            raise error(f"steps must be >= 1, got {o.steps}")
        if o.sampler not in SAMPLERS:
            raise error(f"sampler {o.sampler!r} is not one of {', '.join(SAMPLERS)}")
        if not 0 <= low <= high <= 1:
            raise error(f"cfg_interval must be (low, high) with 0 <= low <= high <= 1, got {(low, high)}")
        if float(o.start_noise) < 0:
            raise error(f"start_noise must be >= 0, got {o.start_noise}")
        for name in ("silence_below", "capped_silence_below"):
            if not 0 <= float(getattr(o, name)) <= 1:
                raise error(f"{name} must lie in [0, 1], got {getattr(o, name)}")
        return dataclasses.replace(o, steps=int(o.steps), cfg=float(o.cfg), cfg_interval=(low, high),
                                   start_noise=float(o.start_noise), silence_below=float(o.silence_below),
                                   capped_silence_below=float(o.capped_silence_below), max_voices=int(o.max_voices))

    def predict_x(self, z: torch.Tensor, t: float, known: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor,
                  cfg: float, cfg_interval: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
        """Guided x-prediction at time ``t``, known pixels replaced by their values, and the tokens' velocity-bin
        logits (guided alike; no channels without ``velocity_bins``).

        Guidance in x-space equals guidance on velocities (v is affine in x at fixed z, t).
        It applies when ``low < t < high`` (``low == 0`` includes t = 0), as in JiT.
        """
        b = z.shape[0]
        low, high = cfg_interval
        guided = cfg != 1.0 and t < high and (low == 0 or t > low)
        inputs = self._inputs(z, known, mask)
        times = torch.full((b,), t, device=z.device, dtype=z.dtype)
        if guided:
            null = torch.full_like(labels, self.net.null_label)
            both = self.net(inputs.repeat(2, 1, 1, 1), times.repeat(2), torch.cat([labels, null]), drop_labels=False)
            x_pred, logits = (uncond + cfg * (cond - uncond) for cond, uncond in (out.chunk(2) for out in both))
        else:
            x_pred, logits = self.net(inputs, times, labels, drop_labels=False)
        return torch.where(mask, x_pred, known), logits

    def _sample(self, canvas: torch.Tensor, mask: torch.Tensor, o: JiTSampling, *, labels: torch.Tensor | None,
                generator: torch.Generator | None, return_steps: bool) -> Any:
        """Integrate from noise (t = 0) to the roll (t = 1); see :class:`~.options.JiTSampling` for the options.

        Each step is Euler or Heun on ``dz/dt = v``; the final step lands on t = 1 exactly,
        i.e. returns the last x-prediction. ``return_steps`` also gives each step's
        x-prediction in [0, 1] (noisy guess first, final roll last; velocities drawn in the last only).
        """
        b = canvas.shape[0]
        labels = self._labels(labels, b, canvas.device)
        known = to_signed(channels(canvas))
        gen = mask[:, :1]
        known_sounding = (channels(canvas)[:, SOUNDING] > 0) & ~gen[:, 0]
        noise_device = generator.device if generator is not None else canvas.device  # a CPU generator works too
        z = self.noise(known.shape, generator, noise_device).to(canvas) * o.start_noise
        times = torch.linspace(0.0, 1.0, o.steps + 1).tolist()
        frames: list[torch.Tensor] = []

        velocity_logits: torch.Tensor | None = None

        def predict(state: torch.Tensor, t: float) -> torch.Tensor:
            """The x-prediction; the last call's velocity-bin logits (the final step's) are kept for the draw."""
            nonlocal velocity_logits
            x_pred, logits = self.predict_x(state, t, known, gen, labels, o.cfg, o.cfg_interval)
            velocity_logits = logits
            return x_pred

        def to_roll(x: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor:
            unit = to_unit(x)
            sounding = unit[:, SOUNDING] > (o.capped_silence_below if o.max_voices > 0 else o.silence_below)
            if o.max_voices > 0:
                sounding = cap_voices(unit[:, SOUNDING], sounding, known_sounding, o.max_voices)
            onset = onsets(unit[:, ONSET], sounding, o.onset_above)
            velocity, weight = unit[:, VELOCITY], torch.ones_like(unit[:, VELOCITY])
            if self.velocity_bins and logits is not None:  # each note: a velocity drawn at its start pixel
                start = note_starts(sounding, onset)
                piece, row, col = start.nonzero(as_tuple=True)
                token = logits[piece, :, row // self.patch_size, col // self.patch_size]  # (notes, bins)
                u = torch.rand(token.shape, generator=generator, device=noise_device).to(token)
                drawn = (token - torch.log(-torch.log(u.clamp(1e-20, 1 - 1e-7)))).argmax(1)  # Gumbel-max
                drawn_velocity = bin_velocity(drawn, self.velocity_bins).to(unit)
                velocity = torch.zeros_like(velocity).index_put_((piece, row, col), drawn_velocity)
                weight = start.to(unit)
            # known pixels hold their known channels here, so a known note carries on into generated ones
            return decode_notes(canvas, mask, sounding, onset, velocity, weight)

        with eval_mode(self):
            for i, (t, t_next) in enumerate(zip(times[:-1], times[1:])):
                x_pred = predict(z, t)
                if return_steps:
                    frames.append(to_roll(x_pred))
                if i == o.steps - 1:
                    z = x_pred  # the step to t = 1: z + (1 - t) * (x - z) / (1 - t) = x
                    break
                v = self.velocity(x_pred, z, torch.tensor(t))
                z_euler = z + (t_next - t) * v
                if o.sampler == "euler":
                    z = z_euler
                else:
                    v_next = self.velocity(predict(z_euler, t_next), z_euler, torch.tensor(t_next))
                    z = z + (t_next - t) * (v + v_next) / 2
        result = to_roll(z, velocity_logits)
        if return_steps:
            frames[-1] = result
        return (result, frames) if return_steps else result
