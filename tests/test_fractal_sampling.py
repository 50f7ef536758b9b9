"""FractalGen sampling: known pixels come back bit-identical; whole notes; any length; guidance; steps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fractalmidi.data.roll import ONSET_PLANE, codes_to_planes, planes_to_codes
from fractalmidi.models import build
from fractalmidi.models.fractal.head import PixelStates

pytestmark = pytest.mark.usefixtures("torch_single_thread")

FAST = {"num_iter_list": [2, 1, 1]}
MAX_FULL_SAMPLE = 1024
"""Longer test rolls are sampled as continuations of their first part (keeps the suite fast)."""


def _mask(kind: str, length: int) -> torch.Tensor:
    """A generation mask ``(2, 2, 128, length)``, equal on both planes."""
    mask = torch.zeros(2, 1, 128, length, dtype=torch.bool)
    if kind == "prefix":  # continue after the first half
        mask[..., length // 2:] = True
    elif kind == "time_span":  # rewrite bars in the middle
        mask[..., length // 4: 3 * length // 4] = True
    elif kind == "pitch_band":  # keep the melody, rewrite what lies below it (in a time range)
        mask[:, :, :60, 8: length - 8] = True
    else:  # scattered pixels
        mask = torch.rand(mask.shape, generator=torch.Generator().manual_seed(5)) < 0.3
    return mask.repeat(1, 2, 1, 1)


def _canonical(planes: torch.Tensor) -> torch.Tensor:
    """The planes of whole notes (one velocity each, onsets where notes start) ``planes`` decode to."""
    return torch.from_numpy(codes_to_planes(planes_to_codes(planes.numpy())))


def _random_planes(length: int, density: float = 0.03, seed: int = 0) -> torch.Tensor:
    """``(1, 2, 128, length)`` planes of random velocity-80 notes (touching pixels join into notes)."""
    rng = np.random.default_rng(seed)
    codes = np.where(rng.random((128, length)) < density, 80, 0).astype(np.uint8)
    return torch.from_numpy(codes_to_planes(codes))[None]


@pytest.mark.data
@pytest.mark.parametrize("kind", ["prefix", "time_span", "pitch_band", "random"])
def test_known_pixels_are_bit_identical(kind: str, chorale_crop) -> None:
    torch.manual_seed(0)
    model = build("fractal-tiny").eval()
    # an off-grid velocity (not a multiple of 1/127) must survive too
    soft = chorale_crop(64).clone()
    soft[:, 0] *= 0.7731
    canvas = torch.cat([chorale_crop(64), soft]).contiguous()
    mask = _mask(kind, 64)
    out, steps = model.sample(canvas, mask, generator=torch.Generator().manual_seed(1), return_steps=True, **FAST)
    assert out.shape == canvas.shape and out.dtype == canvas.dtype
    assert torch.equal(out[~mask], canvas[~mask])
    # the untrained head is uniform over the 129 states (1 silence), so generated pixels are mostly notes
    generated = mask[:, 0]
    assert (out[:, 0][generated] > 0).float().mean() > 0.9
    assert set(out[:, 1].unique().tolist()) <= {0.0, 1.0}
    assert torch.all(out[:, 0][out[:, 1] > 0] > 0)  # an onset only where a note sounds
    assert all(torch.equal(s[~mask], canvas[~mask]) for s in steps)
    assert len(steps) >= 3 and all(s.shape == canvas.shape and 0 <= s.min() and s.max() <= 1 for s in steps)
    # coarse to fine: each intermediate canvas fills in more of the masked area
    filled = [(s[:, 0][generated] > 0).float().mean().item() for s in steps]
    assert filled == sorted(filled) and filled[0] == 0.0
    if kind == "prefix":  # nothing known after the generated part: every note is whole, one velocity each
        assert torch.equal(out[0], _canonical(out[0]))


@pytest.mark.data
def test_ar_sampling_keeps_known_pixels_and_uses_the_cache(chorale_crop) -> None:
    torch.manual_seed(0)
    model = build("fractal-ar-tiny", scan_order="column_major").eval()
    canvas = chorale_crop(16)
    mask = torch.zeros_like(canvas, dtype=torch.bool)
    mask[:, :, 48:80, 4:12] = True  # a pitch band x time span hole: 256 pixels, sampled one by one
    out = model.sample(canvas, mask, generator=torch.Generator().manual_seed(0), temperature=0.0)
    assert torch.equal(out[~mask], canvas[~mask])
    again = model.sample(canvas, mask, generator=torch.Generator().manual_seed(7), temperature=0.0)
    assert torch.equal(out, again)  # greedy decoding does not depend on the random stream


@pytest.mark.parametrize("length", [64, 256, 1024, pytest.param(4096, marks=pytest.mark.slow)])
def test_any_length_trains_and_samples(length: int) -> None:
    """No maximum length: positions are built per grid; T only needs to be a multiple of 16."""
    torch.manual_seed(0)
    model = build("fractal-tiny")
    assert model.length_multiple == 16
    # two crops: a MAR training mask hides every top-level patch of one crop ~10% of the time
    batch = torch.cat([_random_planes(length, seed=seed) for seed in range(2)])
    total, parts = model.loss(batch)
    total.backward()
    assert torch.isfinite(total) and set(parts) == {"level0", "level1", "level2", "pixel"}
    assert model.levels[0].patch_embed.weight.grad.abs().sum() > 0
    x = batch[:1]
    mask = torch.ones_like(x, dtype=torch.bool)
    if length > MAX_FULL_SAMPLE:  # the top level still sees all 4096 steps; only the end is generated
        mask[..., : length - MAX_FULL_SAMPLE] = False
    out = model.eval().sample(x, mask, generator=torch.Generator().manual_seed(0), num_iter_list=[1, 1, 1])
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert torch.equal(out[~mask], x[~mask]) and (out[mask] > 0).any()
    assert torch.equal(out, _canonical(out))  # whole notes: one velocity each, onsets where they start
    with pytest.raises(ValueError, match="multiple of 16"):
        model.loss(x[..., :length - 8])


def test_class_labels_and_guidance() -> None:
    torch.manual_seed(0)
    model = build("fractal-tiny", num_classes=3).eval()
    torch.nn.init.normal_(model.head.out.weight, std=1.0)
    x = torch.zeros(2, 2, 128, 16)
    mask = torch.ones_like(x, dtype=torch.bool)
    labels = torch.tensor([0, 2])
    total, _ = model.train().loss(x, labels)
    assert torch.isfinite(total)
    model.eval()
    kwargs = {"generator": torch.Generator().manual_seed(0), "num_iter_list": [2, 1, 1], "temperature": 0.0}
    plain = model.sample(x, mask, labels=labels, **kwargs)
    guided = model.sample(x, mask, labels=labels, cfg=3.0, **{**kwargs, "generator": torch.Generator().manual_seed(0)})
    assert plain.shape == guided.shape == x.shape
    assert not torch.equal(plain, guided)  # guidance changes the greedy choices
    with pytest.raises(ValueError, match="labels"):
        model.sample(x, mask, cfg=3.0)
    with pytest.raises(ValueError, match="no class labels"):
        build("fractal-tiny").loss(x, labels)


def test_sparsity_bias_on_untrained_head() -> None:
    """A uniform head (untrained) puts 128/129 of the mass on notes (a hold or one of 127 onset
    velocities) at temperature 1; the bias moves it to silence."""
    torch.manual_seed(0)
    model = build("fractal-tiny").eval()
    assert model.pixel_states.count == 129
    x = torch.zeros(2, 2, 128, 16)
    mask = torch.ones_like(x, dtype=torch.bool)
    density = []
    for bias in (0.0, 4.0, 8.0):
        out = model.sample(x, mask, generator=torch.Generator().manual_seed(0), sparsity_bias=bias,
                           temperature=1.0, **FAST)
        density.append((out[:, 0] > 0).float().mean().item())
    expected = [128 / (128 + torch.exp(torch.tensor(b)).item()) for b in (0.0, 4.0, 8.0)]
    assert density == sorted(density, reverse=True)
    assert all(abs(d - e) < 0.03 for d, e in zip(density, expected))


def test_chunked_lower_levels_match_one_pass(monkeypatch) -> None:
    """Long rolls sample lower levels in chunks; with one MAR iteration and greedy pixels the
    result does not depend on the chunking (guided halves stay paired)."""
    from fractalmidi.models.fractal import sampling

    torch.manual_seed(0)
    model = build("fractal-tiny", num_classes=2).eval()
    torch.nn.init.normal_(model.head.out.weight, std=1.0)
    x = torch.zeros(2, 2, 128, 32)
    mask = torch.ones_like(x, dtype=torch.bool)
    kwargs = {"labels": torch.tensor([0, 1]), "cfg": 2.0, "temperature": 0.0, "num_iter_list": [1, 1, 1]}
    whole = model.sample(x, mask, **kwargs)
    monkeypatch.setattr(sampling, "MAX_REGIONS", 100)  # level 2 gets 2 x 16 x 16 = 512 patches
    assert torch.equal(model.sample(x, mask, **kwargs), whole)


def test_temperature_shapes_what_a_pixel_is_not_how_loud() -> None:
    """``PixelStates.draw``: at temperature 1 the states follow the head's softmax; at 0.5 silence /
    hold / onset sharpen while an onset's velocity bins keep the model's own spread."""
    states = PixelStates(num_bins=5, note_states=True)  # silence, hold, 4 onset bins
    logits = torch.tensor([[0.5, 0.0, 1.0, -0.5, 0.2, 0.7]]).expand(60_000, -1)
    generator = torch.Generator().manual_seed(0)
    freq = torch.bincount(states.draw(logits, 1.0, 0.0, generator), minlength=6).double() / len(logits)
    assert torch.allclose(freq, torch.softmax(logits[0].double(), -1), atol=0.01)
    drawn = states.draw(logits, 0.5, 0.0, generator)
    onsets = drawn[drawn >= 2]
    bins = torch.bincount(onsets - 2, minlength=4).double() / len(onsets)
    assert torch.allclose(bins, torch.softmax(logits[0, 2:].double(), -1), atol=0.015)
    kinds = torch.stack([(drawn == 0).double().mean(), (drawn == 1).double().mean(), (drawn >= 2).double().mean()])
    tempered = torch.softmax(torch.stack([logits[0, 0], logits[0, 1], logits[0, 2:].logsumexp(0)]).double() / 0.5, 0)
    assert torch.allclose(kinds, tempered, atol=0.01)
    greedy = states.draw(logits[:2], 0.0, 0.0, None)
    assert greedy.tolist() == [2, 2]  # onset is the likeliest kind, bin 0 its likeliest velocity
    assert states.draw(logits[:2], 0.0, 10.0, None).tolist() == [0, 0]  # the sparsity bias favours silence


def test_velocity_min_p_drops_the_stray_tail() -> None:
    """A velocity bin less likely than ``velocity_min_p`` x the likeliest is never drawn; the others keep
    their relative odds, and what a pixel is (silence / hold / onset) does not change."""
    states = PixelStates(num_bins=5, note_states=True)
    logits = torch.tensor([[0.0, -9.0, 3.0, 3.0 + math.log(0.5), 3.0 + math.log(0.004), -9.0]]).expand(60_000, -1)
    drawn = states.draw(logits, 1.0, 0.0, torch.Generator().manual_seed(0), velocity_min_p=0.01)
    onsets = drawn[drawn >= 2] - 2
    assert set(onsets.tolist()) == {0, 1}  # bins 2 (0.4% of the top) and 3 are gone
    assert abs((onsets == 1).double().mean().item() - 1 / 3) < 0.01
    kept = torch.softmax(torch.stack([logits[0, 0], logits[0, 1], logits[0, 2:].logsumexp(0)]), 0)
    assert abs((drawn >= 2).double().mean().item() - kept[2].item()) < 0.01


def test_pixel_bias_adds_to_the_hold_and_onset_logits() -> None:
    """A pixel's bias adds to its hold and onset logits after the temperature, like the sparsity bias to
    silence's, and each pixel takes its own."""
    states = PixelStates(num_bins=3, note_states=True)  # silence, hold, 2 onset bins
    logits = torch.tensor([[0.2, 0.4, 0.3, -0.1]]).expand(60_000, -1)
    bias = torch.tensor([[0.7], [-0.4]]).expand(2, 60_000)  # hold, onset
    drawn = states.draw(logits, 0.8, 0.0, torch.Generator().manual_seed(0), bias=bias)
    kinds = torch.stack([(drawn == 0).double().mean(), (drawn == 1).double().mean(), (drawn >= 2).double().mean()])
    expected = torch.softmax(torch.tensor([0.2, 0.4, logits[0, 2:].logsumexp(0).item()]).double() / 0.8
                             + torch.tensor([0.0, 0.7, -0.4]).double(), 0)
    assert torch.allclose(kinds, expected, atol=0.01)
    per_pixel = torch.tensor([[-5.0, 0.0], [0.0, -5.0]])  # pixel 0: no hold; pixel 1: no onset
    assert states.draw(logits[:2], 0.0, 0.0, None, bias=per_pixel).tolist() == [2, 1]


def test_rhythm_steer_biases_each_piece_by_its_label() -> None:
    """Each piece's holds are biased by its label's onset-rate bin: with greedy pixels and one top-level pass,
    each piece of a mixed batch is what it is when drawn alone; the middle bin is not steered, the low and high
    bins are."""
    from fractalmidi.data.style import STYLE_CLASSES

    torch.manual_seed(0)
    model = build("fractal-tiny", num_classes=STYLE_CLASSES).eval()
    torch.nn.init.normal_(model.head.out.weight, std=1.0)
    with torch.no_grad():
        model.head.out.bias[1] += 20.0  # hold (state 1) as likely as an onset: about half the pixels strike
    x = torch.zeros(3, 2, 128, 16)
    mask = torch.ones_like(x, dtype=torch.bool)
    labels = torch.tensor([8, 4, 0])  # onset rate high / middle / low
    greedy = {"temperature": 0.0, "num_iter_list": [1, 1, 1]}
    steered = model.sample(x, mask, labels=labels, rhythm_steer=30.0, **greedy)
    alone = [model.sample(x[:1], mask[:1], labels=labels[i:i + 1], rhythm_steer=30.0, **greedy) for i in range(3)]
    assert torch.equal(steered, torch.cat(alone))
    plain = model.sample(x, mask, labels=labels, **greedy)
    assert torch.equal(steered[1], plain[1])
    onsets = [(out[:, ONSET_PLANE] > 0).sum((1, 2)).tolist() for out in (steered, plain)]
    assert onsets[0][0] > onsets[1][0] and onsets[0][2] < onsets[1][2], onsets  # high rate: more onsets
    assert torch.equal(model.sample(x, mask, rhythm_steer=30.0, **greedy), model.sample(x, mask, **greedy))
    with pytest.raises(ValueError, match="style labels"):
        build("fractal-tiny", num_classes=3).eval().sample(x, mask, labels=labels % 3, rhythm_steer=1.0, **greedy)


def test_chroma_steer_biases_the_onsets_outside_c_major_per_label(monkeypatch) -> None:
    """The onset bias map reaches exactly the pixels it names through every level, chunked or not: greedy,
    a steer far above the head's logits makes every generated pixel outside C major strike where the label's
    chromaticism is high and none strike there where it is low; the middle label is as unsteered."""
    from fractalmidi.data.style import DIATONIC, STYLE_CLASSES
    from fractalmidi.models.fractal import sampling

    torch.manual_seed(0)
    model = build("fractal-tiny", num_classes=STYLE_CLASSES).eval()
    torch.nn.init.normal_(model.head.out.weight, std=1.0)
    with torch.no_grad():
        model.head.out.bias[1] -= 100.0  # no holds (a hold after silence would start a note)
    x = torch.zeros(3, 2, 128, 16)
    mask = torch.ones_like(x, dtype=torch.bool)
    labels = torch.tensor([2, 4, 3])  # chromaticism high / middle / low (onset rate low / middle / middle)
    greedy = {"temperature": 0.0, "num_iter_list": [1, 1, 1], "labels": labels}
    steered = model.sample(x, mask, chroma_steer=(100.0, 100.0), **greedy)
    outside = ~np.isin(np.arange(128) % 12, DIATONIC)
    onsets = steered[:, ONSET_PLANE] > 0
    assert onsets[0][outside].all() and not onsets[2][outside].any()
    assert torch.equal(steered[1], model.sample(x, mask, **greedy)[1])
    monkeypatch.setattr(sampling, "MAX_REGIONS", 100)  # the pixel level gets 3 x 8 x 16 x 16 patches in chunks
    assert torch.equal(model.sample(x, mask, chroma_steer=(100.0, 100.0), **greedy), steered)


def test_chroma_steer_needs_a_key_normalised_model() -> None:
    from fractalmidi.canvas import unconditional_plan
    from fractalmidi.data.style import STYLE_CLASSES
    from fractalmidi.errors import UserError
    from fractalmidi.inference import sample_plan

    model = build("fractal-tiny", num_classes=STYLE_CLASSES).eval()
    plan = unconditional_plan(16, model.length_multiple)
    with pytest.raises(UserError, match="key-normalised"):
        sample_plan(model, plan, 1, labels=torch.tensor([2]), options={"chroma_steer": (1.0, 0.5)})
    stored = build("fractal-tiny", num_classes=STYLE_CLASSES, chroma_steer=(1.0, 0.5)).eval()
    with pytest.raises(UserError, match="key-normalised"):  # a steer stored as the model's default, too
        sample_plan(stored, plan, 1, labels=torch.tensor([2]))
    out, _ = sample_plan(stored, plan, 1, labels=torch.tensor([2]), options={"chroma_steer": (0.0, 0.0)})
    assert out.shape[-1] == 16  # turned off where it cannot apply, it samples


def _chords(voices: list[int], height: int = 128) -> torch.Tensor:
    """States ``(1, height, len(voices))``: step t holds ``voices[t]`` held notes from MIDI 60 up."""
    states = torch.zeros(1, height, len(voices), dtype=torch.long)
    for t, n in enumerate(voices):
        states[0, 60:60 + n, t] = 1  # HOLD: sounding
    return states


def test_voice_redraws_keep_the_better_draw_per_run_of_beats() -> None:
    """Beats (4 steps) holding a generated step outside ``voice_range`` are drawn again; each run of
    neighbouring re-drawn beats keeps the draw with fewer such steps, silent steps pass, and nothing
    outside the chosen beats or the generated pixels changes."""
    from dataclasses import replace

    from fractalmidi.models.fractal.fractal import VOICE_WINDOW

    model = build("fractal-tiny").eval()
    # beat 0: 5 voices once; beat 1: fine; beat 2: 3 voices once; beat 3: 2 voices at a known step; beat 4: silent
    states = _chords([4, 5, 4, 4] + [4] * 4 + [4, 4, 3, 4] + [2, 4, 4, 4] + [0] * 4)
    generate = torch.ones_like(states, dtype=torch.bool)
    generate[0, :, 12] = False  # a known step is never counted (its 2 voices are given)
    draws = [_chords([4] * 8 + [4, 4, 3, 3] + [0, 4, 4, 4] + [0] * 4),  # beat 0 better, beat 2 worse
             _chords([6] * 4 + [4] * 4 + [4] * 4 + [2, 4, 4, 4] + [0] * 4)]  # beat 2 better (beat 0 not drawn)
    regions = []

    def redraw(current: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
        regions.append(region[0].any(0))
        drawn = draws[len(regions) - 1]
        return torch.where(region, drawn, current)

    o = replace(model.sampling, voice_range=(4, 4), voice_redraws=5)
    out = model._redraw_voices(states, generate, o, redraw)
    beats = [r.view(-1, VOICE_WINDOW).any(1).tolist() for r in regions]
    assert beats == [[True, False, True, False, False], [False, False, True, False, False]]
    assert len(regions) == 2  # the third round finds no beat off (step 12 is known) and stops
    expected = _chords([4] * 8 + [4] * 4 + [2, 4, 4, 4] + [0] * 4)
    assert torch.equal(out, expected)
    assert torch.equal(model._redraw_voices(states, generate, replace(o, voice_redraws=1), lambda s, g: s), states)
    # a roll that ends inside a beat (frame-by-frame models take any length): the last, short beat counts too
    short = _chords([4] * 16 + [5, 4])
    fixed = model._redraw_voices(short, torch.ones_like(short, dtype=torch.bool), o,
                                 lambda s, g: torch.where(g, _chords([4] * 18), s))
    assert torch.equal(fixed, _chords([4] * 18))


def test_voice_redraws_bring_the_shipped_chorales_to_four_voices() -> None:
    """The shipped 'bach' sounds 3 voices here and 5 there; with four redraws of the beats that do, far more
    of its steps sound the chorales' four voices, and its notes stay as long; so with five cheap rounds (the
    top level in one iteration)."""
    from fractalmidi.evaluate.features import notes_from_roll
    from fractalmidi.inference import load_checkpoint
    from fractalmidi.pretrained import resolve

    model = load_checkpoint(resolve("bach")).model.eval()
    canvas = torch.zeros(4, 2, 128, 64)
    mask = torch.ones_like(canvas, dtype=torch.bool)
    labels = torch.full((4,), 4, dtype=torch.long)
    share, lengths = [], []
    for redraws, iters in ((0, 0), (4, 0), (5, 1)):
        options = {"voice_range": (4, 4) if redraws else (0, 0), "voice_redraws": max(redraws, 1),
                   "voice_redraw_iters": iters}
        out = model.sample(canvas, mask, labels=labels, generator=torch.Generator().manual_seed(0), **options)
        voices = (out[:, 0] > 0).sum(1)
        share.append((voices[voices > 0] == 4).float().mean().item())
        lengths.append(np.mean([notes_from_roll(planes_to_codes(o.numpy())).duration.mean() for o in out]))
    assert share[0] < 0.6 and min(share[1:]) > share[0] + 0.2, share
    assert max(abs(n - lengths[0]) for n in lengths[1:]) < 0.15 * lengths[0], lengths


def test_rhythm_steer_makes_the_shipped_chorales_follow_their_onset_rate_label() -> None:
    """The shipped 'bach' tells its onset-rate labels apart only a little (a calm label's pieces start notes on
    0.02-0.06 fewer of their steps than a busy label's, though the bins' edges lie at 0.352 and 0.422); steered,
    two to three times as much (16 pieces of each, at its stored sparsity bias -0.1; seeds 0 / 1 / 2: 0.025 /
    0.059 / 0.042 alone, 0.087 / 0.137 / 0.093 steered; at the -0.25 it had before, seed 0: 0.050 / 0.105)."""
    from fractalmidi.data.style import onset_rate
    from fractalmidi.inference import load_checkpoint
    from fractalmidi.pretrained import resolve

    model = load_checkpoint(resolve("bach")).model.eval()
    canvas = torch.zeros(32, 2, 128, 128)
    mask = torch.ones_like(canvas, dtype=torch.bool)
    labels = torch.tensor([1] * 16 + [7] * 16)  # onset rate low / high, chromaticism middle
    gaps = []
    for steer in (0.0, 0.7):
        out = model.sample(canvas, mask, labels=labels, generator=torch.Generator().manual_seed(0),
                           voice_range=(0, 0), rhythm_steer=steer)
        rates = [onset_rate(planes_to_codes(o.numpy())) for o in out]
        gaps.append(np.mean(rates[16:]) - np.mean(rates[:16]))
    assert gaps[1] > 0.08 and gaps[1] > 2 * gaps[0], gaps  # measured: 0.025 alone, 0.087 steered


def test_chroma_steer_makes_the_shipped_pop_songs_follow_their_chromaticism_label() -> None:
    """The shipped 'pop909' writes about as many notes outside its scale at a diatonic label as at a chromatic
    one; with its stored steer (1.5 taken from out-of-scale onsets at low chromaticism, 0.5 added at high) the
    diatonic label's pieces keep to their scale and the chromatic label's leave it more, as the songs do
    (measured: out-of-scale shares 0.027 / 0.037 alone, 0.005 / 0.110 steered)."""
    from fractalmidi.data.style import chromaticism
    from fractalmidi.inference import load_checkpoint
    from fractalmidi.pretrained import resolve

    model = load_checkpoint(resolve("pop909")).model.eval()
    assert tuple(model.sample_defaults["chroma_steer"]) == (1.5, 0.5)
    canvas = torch.zeros(16, 2, 128, 128)
    mask = torch.ones_like(canvas, dtype=torch.bool)
    labels = torch.tensor([3] * 8 + [5] * 8)  # chromaticism low / high, onset rate middle
    means = []
    for steer in ((0.0, 0.0), (1.5, 0.5)):
        out = model.sample(canvas, mask, labels=labels, generator=torch.Generator().manual_seed(0), chroma_steer=steer)
        shares = [chromaticism(planes_to_codes(o.numpy())) for o in out]
        means.append((np.mean(shares[:8]), np.mean(shares[8:])))
    (low_alone, high_alone), (low, high) = means
    assert low < 0.6 * low_alone and high > low + 0.03 and high - low > 2 * (high_alone - low_alone), means


def test_position_jitter_shows_the_top_level_the_columns_of_longer_pieces() -> None:
    """A shifted crop's top-level positions are those of the same patches further into a longer roll; training
    steps draw shifts of 0..position_jitter columns, evaluation never shifts."""
    from fractalmidi.models import build
    from fractalmidi.models.layers import sincos_2d

    model = build("fractal-tiny", position_jitter=4)
    top = model.levels[0]
    rows, cols, offset = 8, 3, 2
    shifted = top.positions((rows, cols), "cpu") + top.position_shift((rows, cols), offset, "cpu")
    wide = sincos_2d(rows, cols + offset, top.width).view(rows, cols + offset, -1)[:, offset:]
    assert torch.allclose(shifted, wide.reshape(rows * cols, -1), atol=1e-6)

    offsets: list[int] = []
    shift = top.position_shift
    top.position_shift = lambda grid, n, device: offsets.append(n) or shift(grid, n, device)
    x = torch.zeros(2, 2, 128, 48)
    x[:, 0, 60:64, 4:20], x[:, 1, 60:64, 4] = 0.7, 1.0
    torch.manual_seed(0)
    model.eval()
    model.loss(x)
    assert offsets == []
    model.train()
    for _ in range(20):
        model.loss(x)
    assert set(offsets) == {1, 2, 3, 4}  # a step drawing 0 needs no shift
