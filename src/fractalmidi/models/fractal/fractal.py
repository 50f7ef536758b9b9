"""FractalGen on piano-rolls: a hierarchy of MAR/AR levels ending in a per-pixel state head.

Level 0 sees the roll as a grid of ``patch_sizes[0]``-square patches; its output for each
patch conditions level 1 over that patch's sub-patches, and so on down to single pixels,
whose outputs condition the pixel head (a categorical over pixel states: silence, hold, onset
with a velocity bin; see :mod:`.head`). Sampled states become whole notes with one velocity
each (:func:`fractalmidi.models.base.decode_notes`). The objective is
the pixels' negative log-likelihood plus a per-level auxiliary loss (does a patch hold any
note?, weight ``occupancy_weight``): rolls are ~97% silence, and this direct signal lets every
level learn where the notes are sooner. It is read from the same outputs but is not part of
the likelihood.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from fractalmidi.data.key import PITCH_CLASSES
from fractalmidi.data.roll import PIANO_LOWEST
from fractalmidi.data.style import CHROMATICISM, RATE, SCALES, STYLE_CLASSES, bin_offsets
from fractalmidi.models.base import Generator, decode_notes, keep_known
from fractalmidi.models.fractal.ar import ARLevel
from fractalmidi.models.fractal.head import BIAS_HOLD, BIAS_ONSET, PixelHead, PixelStates
from fractalmidi.models.fractal.level import LevelNet
from fractalmidi.models.fractal.mar import MARLevel
from fractalmidi.models.fractal.options import PIECE_EDGES, FractalOptions, FractalSampling
from fractalmidi.models.fractal.patches import fold_frames, grid_shape, patchify, unfold_frames, unpatchify
from fractalmidi.models.fractal.sampling import HierarchySampler, SamplingOptions
from fractalmidi.models.layers import LabelEmbedder, init_weights, learned_embedding

LEVEL_TYPES = {"mar": MARLevel, "ar": ARLevel}
VOICE_WINDOW = 4
"""Steps drawn again together where a step sounds too few or too many notes (``voice_range``): a beat on
the 16th grid, short enough to keep the music around it."""


class FractalGen(Generator):
    """Recursive MAR/AR generator of ``(B, 2, num_pitches, T)`` rolls, any T multiple of the top patch."""

    family: ClassVar[str] = "fractal"
    has_likelihood: ClassVar[bool] = True

    def __init__(self, options: FractalOptions | None = None, sampling: FractalSampling | None = None) -> None:
        """Options and sampling defaults as declared (and documented) in :mod:`.options`.

        ``seams``: MAR levels also hand down the pixel columns along each patch's edges
        (:meth:`.MARLevel.seams`), so notes stay whole across patches.
        ``edge_crops`` > 0: the top level adds a learned mark to the patches of the first (last) column of a
        roll that begins at a piece's start (holds its end); training places that share of crops there
        (:class:`~fractalmidi.data.PianoRollDataset`) and sampling marks the ends its ``edges`` option names
        (both by default, so a piece opens and closes).
        ``empty_keep``: while training, a silent patch is passed down to the next level with this
        probability and its pixel losses weighted by its inverse (rolls are mostly silence, so the
        lower levels train several times faster at the same expected loss). ``grad_checkpointing``
        recomputes the levels' transformer activations in the backward pass while training:
        less memory, same loss and gradients, about one more forward pass of time."""
        super().__init__()
        o = self.options = options or FractalOptions()
        self.sampling = sampling or FractalSampling()
        self.patch_sizes = tuple(int(s) for s in o.patch_sizes)
        self.generators = tuple(o.generators)
        self._check_config(o.widths, o.depths, o.heads, self.sampling.num_iter_list, o.num_pitches, o.num_bins)
        self.num_pitches = o.num_pitches
        self.frame_block = o.frame_block
        self.pixel_states = PixelStates(o.num_bins, o.note_states)
        self.num_classes = o.num_classes
        self.mask_ratio_min = o.mask_ratio_min
        self.occupancy_weight = o.occupancy_weight
        if not 0 < o.empty_keep <= 1:
            raise ValueError(f"empty_keep must be in (0, 1], got {o.empty_keep}")
        self.empty_keep = o.empty_keep
        self.position_jitter = o.position_jitter
        self._ema_decays = tuple(float(d) for d in o.ema_decays)

        top = o.widths[0]
        self.labels = LabelEmbedder(o.num_classes, top, o.label_dropout) if o.num_classes > 0 else None
        self.start = None if o.num_classes > 0 else learned_embedding(1, top)
        self.edges = learned_embedding(2, top) if o.edge_crops > 0 else None
        """Marks of a piece's first and last patch columns at the top level (``edge_crops``)."""
        levels: list[LevelNet] = []
        cond_dim, num_conds = top, 1
        for i, kind in enumerate(self.generators):
            extra = {"scan_order": o.scan_order} if kind == "ar" else {"seams": o.seams}
            if i > 0:
                side = self.patch_sizes[i - 1] // self.patch_sizes[i]
                extra["fixed_grid"] = (side, side)
            level = LEVEL_TYPES[kind](patch_size=self.patch_sizes[i], cond_dim=cond_dim, num_conds=num_conds,
                                      width=o.widths[i], depth=o.depths[i], heads=o.heads[i], mlp_ratio=o.mlp_ratio,
                                      grad_checkpointing=o.grad_checkpointing, dropout=o.dropout, **extra)
            levels.append(level)
            cond_dim, num_conds = o.widths[i], level.child_num_conds
        self.levels = nn.ModuleList(levels)
        self.head = PixelHead(cond_dim=cond_dim, num_conds=num_conds, width=o.head_width, depth=o.head_depth,
                              num_states=self.pixel_states.count, mlp_ratio=o.mlp_ratio, dropout=o.dropout)
        self._init_weights()

    def _check_config(self, widths, depths, heads, num_iter_list, num_pitches, num_bins) -> None:
        sizes = self.patch_sizes
        n = len(sizes)
        if not sizes or sizes[-1] != 1:
            raise ValueError(f"patch_sizes must end with 1 (pixels), got {list(sizes)}")
        for parent, child in zip(sizes, sizes[1:]):
            if child >= parent or parent % child:
                raise ValueError(f"each patch size must be a proper multiple of the next, got {list(sizes)}")
        block = self.options.frame_block
        if block and (sizes[0] != block or PIANO_LOWEST + block * block > num_pitches):
            raise ValueError(f"frame_block {block} needs top patches of side {block} and {block}x{block} keys from "
                             f"MIDI {PIANO_LOWEST} within the {num_pitches} pitches")
        if not block and num_pitches % sizes[0]:
            raise ValueError(f"{num_pitches} pitches are not a multiple of the top patch size {sizes[0]}")
        for name, values in (("generators", self.generators), ("widths", widths), ("depths", depths),
                             ("heads", heads), ("num_iter_list", num_iter_list)):
            if len(values) != n:
                raise ValueError(f"{name} needs one entry per level ({n}), got {list(values)}")
        unknown = [g for g in self.generators if g not in LEVEL_TYPES]
        if unknown:
            raise ValueError(f"generator types {unknown} are not among {', '.join(LEVEL_TYPES)}")
        if not 2 <= num_bins <= 128:
            raise ValueError(f"num_bins must be in 2..128, got {num_bins}")

    def _init_weights(self) -> None:
        self.apply(init_weights)
        # a zero last layer starts every pixel at the uniform distribution over bins
        nn.init.zeros_(self.head.out.weight)
        nn.init.zeros_(self.head.out.bias)

    # ----- the contract -------------------------------------------------------------------------

    @property
    def length_multiple(self) -> int:
        return 1 if self.frame_block else self.patch_sizes[0]

    @property
    def modelled_rows(self) -> range:
        """The pitch rows the model writes and scores; the others are always silent."""
        if not self.frame_block:
            return super().modelled_rows
        return range(PIANO_LOWEST, PIANO_LOWEST + self.frame_block ** 2)

    def _fold(self, rows: torch.Tensor) -> torch.Tensor:
        """``(B, num_pitches, T)`` -> the image level 0 sees (the roll itself unless ``frame_block``)."""
        return fold_frames(rows, PIANO_LOWEST, self.frame_block) if self.frame_block else rows

    def _unfold(self, image: torch.Tensor) -> torch.Tensor:
        return unfold_frames(image, PIANO_LOWEST, self.num_pitches) if self.frame_block else image

    @property
    def ema_decays(self) -> tuple[float, ...]:
        return self._ema_decays

    def _marks(self, edges: torch.Tensor | None, image: torch.Tensor) -> torch.Tensor | None:
        """Top-level patch marks ``(B, L, width)`` of the (folded) state image ``(B, H, W)`` from ``edges``
        ``(B, 2)`` bool (None: a model without edge marks, or no edges given: as if no crop touched a
        piece's edge)."""
        if self.edges is None or edges is None:
            return None
        batch, device = image.shape[0], image.device
        if edges.shape != (batch, 2):
            raise ValueError(f"edges must be (B, 2) = {(batch, 2)}, got {tuple(edges.shape)}")
        grid = grid_shape(image.shape[1], image.shape[2], self.patch_sizes[0])
        column = torch.arange(grid[1], device=device)
        at = torch.stack([column == 0, column == grid[1] - 1], -1)  # (columns, 2): first, last
        per_column = (edges.to(device)[:, None, :] & at[None]).to(self.edges.dtype) @ self.edges  # (B, columns, w)
        return per_column[:, None].expand(-1, grid[0], -1, -1).reshape(batch, grid[0] * grid[1], -1)

    @property
    def exact_likelihood(self) -> bool:
        """The NLL is exact when every level is autoregressive; MAR levels make it an estimate."""
        return all(level.exact_likelihood for level in self.levels)

    @property
    def estimate_reason(self) -> str | None:
        return None if self.exact_likelihood else "MAR levels"

    @property
    def frame_by_frame(self) -> bool:
        """All-AR with ``frame_block``: level 0 reads one whole frame per token, in time order."""
        return self.exact_likelihood and bool(self.frame_block)

    def parameter_table(self) -> list[tuple[str, int]]:
        if self.labels is not None:
            rows = [(f"class labels ({self.num_classes} + null)", sum(p.numel() for p in self.labels.parameters()))]
        else:
            rows = [("start vector", self.start.numel())]
        if self.edges is not None:
            rows.append(("piece-edge marks", self.edges.numel()))
        for i, level in enumerate(self.levels):
            desc = (f"level{i} ({level.kind}, {level.patch_size}x{level.patch_size} patches, "
                    f"width {level.width}, depth {len(level.blocks)})")
            rows.append((desc, sum(p.numel() for p in level.parameters())))
        kind = "note states" if self.pixel_states.note_states else "velocity bins"
        rows.append((f"pixel head ({self.pixel_states.count} {kind})", sum(p.numel() for p in self.head.parameters())))
        return rows

    def adopt_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """An unconditional model's start vector becomes every class label's (the null one's too), so a labelled
        fine-tune starts from what the unconditional model writes."""
        if self.labels is None or "start" not in state or "labels.table.weight" in state:
            return state
        rows = self.labels.table.weight.shape[0]
        adopted = {k: v for k, v in state.items() if k != "start"}
        adopted["labels.table.weight"] = state["start"].expand(rows, -1).clone()
        return adopted

    def _top_conds(self, batch: int, labels: torch.Tensor | None, device: torch.device,
                   drop: bool | None = None) -> torch.Tensor:
        if self.labels is None:
            if labels is not None:
                raise ValueError("this model has no class labels (num_classes=0); pass labels=None")
            return self.start.expand(batch, -1)
        if labels is None:
            labels = torch.full((batch,), self.labels.null_label, dtype=torch.long, device=device)
        elif labels.numel() and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(f"labels must lie in [0, {self.num_classes}), got {labels.tolist()}")
        return self.labels(labels, drop=drop)

    # ----- objective and likelihood -------------------------------------------------------------

    def _descend(self, level: int, states: torch.Tensor, conds: list[torch.Tensor],
                 owner: torch.Tensor, weight: torch.Tensor, out: dict[str, Any],
                 estimate: bool, generator: torch.Generator | None, frame: torch.Tensor | None = None,
                 scored: torch.Tensor | None = None, marks: torch.Tensor | None = None) -> None:
        """Score regions ``(N, H, W)`` at ``level`` and recurse into the patches it predicts.

        Training (``estimate`` False) masks MAR patches as MAR training does; likelihood mode
        masks them for an unbiased any-order estimate. ``owner`` maps regions to samples,
        ``weight`` is each region's estimator weight; results accumulate in ``out``. ``scored``
        ``(N, H, W)`` bool (None = all): pixels whose NLL counts; the others are context only.
        ``frame`` ``(N, H, W)`` (likelihood mode only): each pixel's time step, so the likelihood
        can be told per frame. ``marks``: the top level's piece-edge marks (:meth:`_marks`).
        """
        net = self.levels[level]
        size = self.patch_sizes[level]
        grid = grid_shape(states.shape[1], states.shape[2], size)
        tokens = patchify(states, size)
        features = self.pixel_states.embed_input(tokens)
        n, length, _ = tokens.shape
        hidden, chosen, scale = net.teacher_forced(features, conds, grid, estimate=estimate,
                                                   mask_ratio_min=self.mask_ratio_min, generator=generator,
                                                   marks=marks)
        index = chosen.reshape(-1).nonzero().squeeze(1)
        occupied = (tokens > 0).any(-1).float().reshape(-1)[index]
        logit = net.occupancy(hidden).reshape(-1)[index]
        out["occupancy"][level].append(F.binary_cross_entropy_with_logits(logit.float(), occupied, reduction="sum"))
        out["occupancy_count"][level] += index.numel()

        weight = (weight * scale)[:, None].expand(n, length).reshape(-1)[index]
        if not estimate and self.empty_keep < 1 and size > 1:
            draw = torch.rand(index.shape, device=index.device) < self.empty_keep
            kept = (occupied > 0) | draw
            weight = torch.where(occupied > 0, weight, weight / self.empty_keep)[kept]
            index = index[kept]
        child = [c.reshape(n * length, -1)[index] for c in net.child_conds(hidden, grid, features, ~chosen)]
        owner = owner[:, None].expand(n, length).reshape(-1)[index]
        if size == 1:
            logits = self.head(child).float()
            nll = F.cross_entropy(logits, tokens.reshape(-1)[index], reduction="none")
            if scored is not None:
                nll = nll * patchify(scored, size).reshape(-1)[index]
            out["pixel_nll"].append(nll)
            out["pixel_owner"].append(owner)
            if frame is not None:
                out["pixel_frame"].append(patchify(frame, size).reshape(-1)[index])
            out["pixel_weight"].append(weight)
            return
        sub_states = tokens.reshape(n * length, size, size)[index]
        sub_frame = None if frame is None else patchify(frame, size).reshape(n * length, size, size)[index]
        sub_scored = None if scored is None else patchify(scored, size).reshape(n * length, size, size)[index]
        self._descend(level + 1, sub_states, child, owner, weight, out, estimate, generator, sub_frame, sub_scored)

    def _score(self, x: torch.Tensor, labels: torch.Tensor | None, *, estimate: bool,
               generator: torch.Generator | None = None, drop: bool | None = None,
               scored_frames: torch.Tensor | None = None, edges: torch.Tensor | None = None) -> dict[str, Any]:
        self.check_rolls(x)
        batch = x.shape[0]
        states = self.pixel_states.from_planes(x)
        rows = self.modelled_rows
        if states[:, : rows.start].any() or states[:, rows.stop :].any():
            raise ValueError(f"notes outside MIDI {rows.start}-{rows.stop - 1}, the keys this model writes")
        out: dict[str, Any] = {"occupancy": [[] for _ in self.levels], "occupancy_count": [0] * len(self.levels),
                               "pixel_nll": [], "pixel_owner": [], "pixel_frame": [], "pixel_weight": []}
        top = self._top_conds(batch, labels, x.device, drop)
        scored = None if scored_frames is None else self._fold(scored_frames[:, None, :].expand_as(states))
        frame = self._fold(torch.arange(states.shape[-1], device=x.device).expand_as(states)) if estimate else None
        image = self._fold(states)
        marks = self._marks(edges, image)
        jitter = self.position_jitter if self.training and not estimate else 0
        offset = int(torch.randint(jitter + 1, ())) if jitter else 0  # no draw without jitter: same stream
        if offset:
            grid = grid_shape(image.shape[1], image.shape[2], self.patch_sizes[0])
            shift = self.levels[0].position_shift(grid, offset, x.device).expand(batch, -1, -1)
            marks = shift if marks is None else marks + shift
        self._descend(0, image, [top], torch.arange(batch, device=x.device),
                      torch.ones(batch, device=x.device), out, estimate, generator, frame, scored, marks)
        return out

    def loss(self, x: torch.Tensor, labels: torch.Tensor | None = None,
             edges: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Pixel NLL (nats per scored pixel) + ``occupancy_weight`` x each level's occupancy BCE."""
        scored = self._score(x, labels, estimate=False, edges=edges)
        parts: dict[str, torch.Tensor] = {}
        for level, (terms, count) in enumerate(zip(scored["occupancy"], scored["occupancy_count"])):
            parts[f"level{level}"] = torch.stack(terms).sum() / max(count, 1)
        weight = torch.cat(scored["pixel_weight"])
        parts["pixel"] = (torch.cat(scored["pixel_nll"]) * weight).sum() / weight.sum()
        total = parts["pixel"] + self.occupancy_weight * sum(parts[f"level{i}"] for i in range(len(self.levels)))
        return total, parts

    @torch.no_grad()
    def nll(self, x: torch.Tensor, labels: torch.Tensor | None = None,
            generator: torch.Generator | None = None, scored_frames: torch.Tensor | None = None) -> dict[str, Any]:
        """Per-sample NLL of the pixel states: exact for all-AR models, else a one-sample estimate.

        Returns ``bits_per_pixel`` and ``nats_per_step`` ``(B,)``, ``nats`` ``(B,)`` (whole roll),
        ``frame_nats`` ``(B, T)`` (each time step's share: an AR model's per-frame conditionals when
        levels run time-first) and ``exact`` (bool). Average several calls to tighten a MAR estimate.
        ``scored_frames`` ``(B, T)`` bool: only these frames' pixels are scored (padding, or context
        of a sliding window, adds nothing); per-step and per-pixel means count scored frames only.
        """
        if scored_frames is not None and scored_frames.shape != (x.shape[0], x.shape[-1]):
            raise ValueError(f"scored_frames must be (B, T) = {(x.shape[0], x.shape[-1])}, got "
                             f"{tuple(scored_frames.shape)}")
        scored = self._score(x, labels, estimate=True, generator=generator, drop=False, scored_frames=scored_frames)
        nll = torch.cat(scored["pixel_nll"]) * torch.cat(scored["pixel_weight"])
        batch, length = x.shape[0], x.shape[-1]
        frame_nats = torch.zeros(batch * length, device=x.device, dtype=nll.dtype)
        frame_nats.index_add_(0, torch.cat(scored["pixel_owner"]) * length + torch.cat(scored["pixel_frame"]), nll)
        frame_nats = frame_nats.view(batch, length)
        per_sample = frame_nats.sum(1)
        steps = (torch.full_like(per_sample, x.shape[3]) if scored_frames is None
                 else scored_frames.sum(1).to(per_sample.dtype))
        pixels = len(self.modelled_rows) * steps
        return {"bits_per_pixel": per_sample / pixels / math.log(2), "nats_per_step": per_sample / steps,
                "nats": per_sample, "frame_nats": frame_nats, "exact": self.exact_likelihood}

    # ----- sampling -----------------------------------------------------------------------------

    def _label_offsets(self, batch: int, labels: torch.Tensor | None, descriptor: int) -> torch.Tensor:
        """``(B,)``: how far each piece's label bin of ``descriptor`` lies from the middle one, -1 / 0 / +1
        (zeros at the null label, which names no style); for the steers, which need style labels."""
        if self.num_classes != STYLE_CLASSES:
            raise ValueError(f"rhythm_steer and chroma_steer need a model trained with style labels "
                             f"({STYLE_CLASSES} classes), this one has {self.num_classes}")
        if labels is None:
            return torch.zeros(batch)
        return torch.as_tensor(bin_offsets(labels.cpu().numpy(), descriptor), dtype=torch.float32)

    def _pixel_biases(self, image: torch.Tensor, labels: torch.Tensor | None,
                      o: FractalSampling) -> torch.Tensor | None:
        """``(2, B, H, W)`` hold and onset logit biases for the (folded) state image ``(B, H, W)``, by which
        the steers make the style each piece's label names heard where the model alone barely follows it (a
        busy or calm rhythm, a diatonic or chromatic harmony is a whole-roll choice): ``o.rhythm_steer`` on
        every hold, ``o.chroma_steer`` on the onsets of the pitches outside C major. None without a steer."""
        low, high = (float(v) for v in o.chroma_steer)
        if o.rhythm_steer == 0 and low == high == 0:
            return None
        batch, height, width = image.shape
        bias = torch.zeros(2, batch, height, width, device=image.device)
        if o.rhythm_steer:
            rate = self._label_offsets(batch, labels, RATE).to(image.device)
            bias[BIAS_HOLD] = -float(o.rhythm_steer) * rate[:, None, None]
        if low or high:
            if self.frame_block:
                raise ValueError("chroma_steer needs a model without frame_block")
            chroma = self._label_offsets(batch, labels, CHROMATICISM).to(image.device)
            steer = torch.where(chroma < 0, chroma * low, chroma * high)
            c_major = torch.as_tensor(SCALES[0], device=image.device)  # SCALES[tonic]: tonic 0 is C
            outside = ~c_major[torch.arange(height, device=image.device) % PITCH_CLASSES]
            bias[BIAS_ONSET] = (steer[:, None] * outside)[:, :, None]
        return bias

    def _sample(self, canvas: torch.Tensor, mask: torch.Tensor, o: FractalSampling, *, labels: torch.Tensor | None,
                generator: torch.Generator | None, return_steps: bool) -> Any:
        """Generate where ``mask`` is True, coarse to fine; see :mod:`.sampling` for how and
        :class:`~.options.FractalSampling` for the options."""
        iters = tuple(int(n) for n in o.num_iter_list)
        if len(iters) != len(self.levels) or min(iters) < 1:
            raise ValueError(f"num_iter_list needs {len(self.levels)} positive entries, got {list(iters)}")
        cfg = float(o.cfg)
        guided = cfg != 1.0
        if guided and (self.labels is None or labels is None):
            raise ValueError("cfg != 1 needs a class-conditional model (num_classes > 0) and labels")
        batch = canvas.shape[0]
        top = self._top_conds(batch, labels, canvas.device, drop=False)
        if guided:
            top = torch.cat([top, self._top_conds(batch, None, canvas.device, drop=False)])

        def sampler_with(num_iter_list: tuple[int, ...]) -> HierarchySampler:
            options = SamplingOptions(num_iter_list=num_iter_list, temperature=float(o.temperature),
                                      sparsity_bias=float(o.sparsity_bias), velocity_min_p=float(o.velocity_min_p),
                                      guided=guided, generator=generator)
            return HierarchySampler(self.levels, self.patch_sizes, self.pixel_states.embed_input, self.head,
                                    self.pixel_states.draw, options)

        frames: list[torch.Tensor] | None = [] if return_steps else None
        known_states = self._fold(self.pixel_states.from_planes(canvas))
        sampler = sampler_with(iters)
        edges = torch.tensor(PIECE_EDGES[o.edges], device=canvas.device).expand(batch, 2)
        marks = self._marks(edges, known_states)
        bias = self._pixel_biases(known_states, labels, o)
        states = self._unfold(sampler.region(0, known_states, self._fold(mask[:, 0]), [top], cfg, frames, marks,
                                             bias))
        if o.voice_range[1] > 0:
            redraws = sampler_with((int(o.voice_redraw_iters) or iters[0], *iters[1:]))
            states = self._redraw_voices(states, mask[:, 0], o, lambda s, g: self._unfold(
                redraws.region(0, self._fold(s), self._fold(g), [top], cfg, None, marks, bias)))
        result = self._planes(states, canvas, mask)
        if not return_steps:
            return result
        size, (height, width) = self.patch_sizes[0], known_states.shape[1:]
        steps = [keep_known(torch.zeros_like(canvas), canvas, mask)]
        steps += [self._planes(self._unfold(unpatchify(f, size, height, width)), canvas, mask) for f in frames]
        steps.append(result)
        return result, steps

    def _off_voices(self, states: torch.Tensor, generate: torch.Tensor, low: int, high: int) -> torch.Tensor:
        """``(B, W)``: generated steps sounding fewer than ``low`` or more than ``high`` notes (silence passes)."""
        count = self.pixel_states.sounding(states).sum(1)
        return generate.any(1) & (count > 0) & ((count < low) | (count > high))

    def _redraw_voices(self, states: torch.Tensor, generate: torch.Tensor, o: FractalSampling,
                       redraw: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """States ``(B, H, W)`` with every beat (:data:`VOICE_WINDOW` steps) that holds a step outside
        ``o.voice_range`` drawn again by ``redraw(states, region)`` up to ``o.voice_redraws`` times.

        The pixels pick their voices one by one, so a patch-by-patch model sounds three voices here and
        five there where chorales sound four throughout; drawing the beat again, with the music on both
        sides as context, keeps the model's own writing. Each run of neighbouring re-drawn beats keeps
        the draw with fewer steps outside the range, so no step gets worse."""
        low, high = o.voice_range
        batch, _, width = states.shape
        beats = -(-width // VOICE_WINDOW)
        pad = beats * VOICE_WINDOW - width

        def per_beat(off: torch.Tensor) -> torch.Tensor:
            return F.pad(off, (0, pad)).view(batch, beats, VOICE_WINDOW).sum(-1)

        for _ in range(o.voice_redraws):
            off = per_beat(self._off_voices(states, generate, low, high))
            chosen = off > 0
            if not chosen.any():
                break
            steps = chosen.repeat_interleave(VOICE_WINDOW, 1)[:, :width]
            drawn = redraw(states, generate & steps[:, None, :])
            new_off = per_beat(self._off_voices(drawn, generate, low, high))
            starts = chosen & ~F.pad(chosen[:, :-1], (1, 0))
            run = (torch.cumsum(starts.long(), 1) * chosen + torch.arange(batch, device=states.device)[:, None]
                   * (beats + 1)).view(-1)  # per sample, run k of re-drawn beats (0: not re-drawn)
            totals = torch.zeros(batch * (beats + 1), 2, dtype=torch.long, device=states.device)
            totals.index_add_(0, run, torch.stack([off.view(-1), new_off.view(-1)], 1))
            better = (totals[:, 1] < totals[:, 0])[run].view(batch, beats) & chosen
            keep = better.repeat_interleave(VOICE_WINDOW, 1)[:, :width]
            states = torch.where(keep[:, None, :], drawn, states)
        return states

    def _planes(self, states: torch.Tensor, canvas: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Sampled states ``(B, H, W)`` -> roll planes with whole notes; known pixels as in ``canvas``.

        A generated hold continues the note before it (known or generated) with that note's
        velocity; a note's velocity comes from its onset state and its known pixels.
        """
        ps = self.pixel_states
        velocity = ps.velocity(states)
        return decode_notes(canvas, mask, ps.sounding(states), ps.onset(states), velocity,
                            (velocity > 0).to(canvas.dtype))
