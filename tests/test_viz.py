"""Pictures, GIFs, audio and the ``render`` command, checked on their pixels and samples."""

from __future__ import annotations

import shutil
import subprocess
import sys
import wave

import numpy as np
import pytest
from PIL import Image

from fractalmidi.cli import main
from fractalmidi.data.roll import ONSET_BIT, codes_to_planes
from fractalmidi.viz import (
    LEGEND_GAP_PX,
    LEGEND_WIDTH_PX,
    MARGIN_BOTTOM,
    MARGIN_RIGHT,
    find_soundfont,
    note_name,
    pitch_window,
    render_wav,
    roll_to_rgb,
    save_gif,
    save_png,
)

SIXTEENTH = 120
HAVE_FLUIDSYNTH = shutil.which("fluidsynth") is not None and find_soundfont() is not None


def test_colours_follow_velocity():
    roll = np.zeros((1, 128, 4), dtype=np.uint8)
    roll[0, 100, 1] = 64
    roll[0, 20, 2] = 127
    roll[0, 50, 3] = 10
    rgb = roll_to_rgb(roll)
    assert rgb.shape == (128, 4, 3) and rgb.dtype == np.uint8
    assert rgb[:, 0].max() == 0  # silence is black
    r, g, b = rgb[127 - 100, 1].astype(int)  # high pitches on top
    assert g > 180 and r < 60 and b < 60  # green at 64
    r, g, b = rgb[127 - 20, 2].astype(int)
    assert r > 220 and g < 40 and b < 40  # red at 127
    r, g, b = rgb[127 - 50, 3].astype(int)
    assert b > r and b > 150  # soft notes are blue
    assert np.array_equal(roll_to_rgb(roll.astype(np.float32) / 127), rgb)  # floats in [0, 1] too
    assert np.array_equal(roll_to_rgb(roll | np.where(roll > 0, ONSET_BIT, 0).astype(np.uint8)), rgb)  # onset bits
    assert np.array_equal(roll_to_rgb(codes_to_planes(roll[0])), rgb)  # and model planes


def test_note_names():
    assert note_name(60) == "C4" and note_name(21) == "A0" and note_name(127) == "G9" and note_name(0) == "C-1"


def test_png_has_the_colours_at_the_cells(tmp_path):
    roll = np.zeros((1, 128, 48), dtype=np.uint8)
    roll[0, 72, 1:8] = 127
    roll[0, 72, [1, 4]] |= ONSET_BIT  # re-struck at step 4 at the same velocity: two notes
    roll[0, 48, 16:20] = 64  # no bit: an onset where it starts sounding
    layout = save_png(roll, tmp_path / "r.png", title="test")
    image = np.asarray(Image.open(tmp_path / "r.png").convert("RGB")).astype(int)
    # the pitch axis shows the music's range in whole octaves: C3 (48) .. B5 (83)
    assert (layout.pitch_low, layout.pitch_high) == (48, 83)
    assert image.shape[0] == layout.top + 36 * layout.pitch_px + MARGIN_BOTTOM
    assert image.shape[1] == layout.left + 48 * layout.step_px + MARGIN_RIGHT
    expected = roll_to_rgb(roll)
    for pitch, step in [(72, 3), (72, 4), (48, 17), (60, 30), (72, 8), (48, 16)]:
        x, y = layout.pixel(pitch, step)
        assert np.abs(image[y, x] - expected[127 - pitch, step]).max() <= 2, (pitch, step, image[y, x])
    x, y = layout.pixel(72, 3)
    assert image[y, x, 0] > 220 and image[y, x, 1] < 40  # red
    x, y = layout.pixel(48, 17)
    assert image[y, x, 1] > 180 and image[y, x, 0] < 60  # green
    # cell centres keep the velocity colour; each onset darkens its cell's first pixel column
    assert layout.step_px == 8
    for pitch, step, onset in [(72, 1, True), (72, 4, True), (48, 16, True), (72, 2, False), (72, 5, False),
                               (48, 17, False)]:
        x, y = layout.pixel(pitch, step)
        first = image[y, layout.left + step * layout.step_px]
        if onset:
            assert first.max() <= 40, (pitch, step, first)
        else:
            assert np.abs(first - expected[127 - pitch, step]).max() <= 2, (pitch, step, first)


def test_png_has_a_velocity_legend(tmp_path):
    roll = np.zeros((1, 128, 32), dtype=np.uint8)
    roll[0, 60, :4] = 100
    layout = save_png(roll, tmp_path / "r.png")
    image = np.asarray(Image.open(tmp_path / "r.png").convert("RGB")).astype(int)
    plot_h = (layout.pitch_high - layout.pitch_low + 1) * layout.pitch_px
    x = layout.left + layout.steps * layout.step_px + LEGEND_GAP_PX + LEGEND_WIDTH_PX // 2
    column = image[layout.top + 2 : layout.top + plot_h - 2, x]
    lut = roll_to_rgb(np.arange(128, dtype=np.uint8)[:, None])[::-1, 0].astype(int)  # velocity v -> colour
    # the velocity whose colour each legend pixel shows, top to bottom
    shown = np.abs(column[:, None, :] - lut[None, 1:, :]).sum(-1).argmin(1) + 1
    assert shown[0] >= 122 and column[0, 0] > 220  # loud = red at the top
    assert abs(int(shown[len(shown) // 2]) - 64) <= 4 and column[len(column) // 2, 1] > 180  # 64 = green mid-way
    assert shown[-1] <= 6 and column[-1, 2] > column[-1, 0]  # soft = blue at the bottom
    assert np.all(np.diff(shown) <= 0)  # louder upwards, all the way
    assert len(set(shown.tolist())) > 80  # the whole scale (~1 velocity per pixel row), not a few bands


@pytest.mark.parametrize("pitches, window", [
    ([], (0, 127)),
    ([60], (48, 71)),  # one octave widened downwards to two
    ([60, 61, 70], (48, 71)),
    ([0], (0, 23)),  # nothing below 0: widened upwards
    ([127], (96, 127)),  # the top octave is cut at 127
    ([30, 100], (24, 107)),
])
def test_pitch_window_rounds_out_to_whole_octaves(pitches, window):
    codes = np.zeros((128, 4), dtype=np.uint8)
    codes[pitches, 1] = 50 | ONSET_BIT
    assert pitch_window(codes) == window


def test_gif_has_one_frame_per_roll(tmp_path):
    frames = [np.full((1, 128, 16), v, dtype=np.uint8) for v in (0, 64, 127)]
    save_gif(frames, tmp_path / "steps.gif", frame_ms=50)
    with Image.open(tmp_path / "steps.gif") as gif:
        assert gif.n_frames == 3
        gif.seek(2)
        pixel = np.asarray(gif.convert("RGB"))[10, 10]
        assert pixel[0] > 220 and pixel[1] < 40


@pytest.mark.skipif(not HAVE_FLUIDSYNTH, reason="fluidsynth or a General-MIDI soundfont is not installed")
def test_wav_through_fluidsynth(tmp_path, make_midi):
    midi = make_midi(tmp_path / "a.mid", [(60, 0, 8 * SIXTEENTH, 100), (64, 8 * SIXTEENTH, 8 * SIXTEENTH, 100)])
    render_wav(midi, tmp_path / "a.wav")
    with wave.open(str(tmp_path / "a.wav")) as wav:
        assert wav.getframerate() == 44100
        frames = wav.readframes(wav.getnframes())
        assert wav.getnframes() > 44100  # two half-notes at 120 BPM last 2 s
    samples = np.frombuffer(frames, dtype=np.int16)
    assert np.abs(samples).max() > 1000  # audible


def test_wav_without_fluidsynth_names_the_packages(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(Exception, match="fluidsynth and fluid-soundfont-gm"):
        render_wav(tmp_path / "a.mid", tmp_path / "a.wav")


def test_render_command_midi_and_npy(tmp_path, make_midi, capsys):
    midi = make_midi(tmp_path / "in.mid", [(67, 0, 4 * SIXTEENTH, 127)])
    assert main(["render", str(midi), "--png", str(tmp_path / "a.png"), "--gif", str(tmp_path / "a.gif")]) == 0
    assert (tmp_path / "a.png").stat().st_size > 0 and (tmp_path / "a.gif").stat().st_size > 0
    steps = np.zeros((3, 1, 128, 8), dtype=np.float32)
    steps[1:, 0, 60, :4] = 0.5
    steps[2, 0, 64, 4:] = 1.0
    np.save(tmp_path / "steps.npy", steps)
    assert main(["render", str(tmp_path / "steps.npy"), "--gif", str(tmp_path / "s.gif"), "--png",
                 str(tmp_path / "s.png")]) == 0
    with Image.open(tmp_path / "s.gif") as gif:
        assert gif.n_frames == 3
    capsys.readouterr()
    assert main(["render", str(midi), "--png", str(tmp_path / "a.png")]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["render", "missing.mid", "--png", "x.png"], "no such file"),
    (["render", "in.txt", "--png", "x.png"], "not a MIDI file"),
    (["render", "in.txt"], "nothing to render"),
    (["render", "bad.npy", "--png", "x.png"], "(1, 128, T)"),
])
def test_render_errors_are_one_line(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.txt").write_text("not midi")
    np.save(tmp_path / "bad.npy", np.zeros((5, 7)))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fractalmidi render: error:") and message in err[0], err


@pytest.mark.parametrize("command", ["prepare", "convert", "render"])
def test_help_runs_through_python_m(command):
    done = subprocess.run([sys.executable, "-m", "fractalmidi", command, "--help"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and f"fractalmidi {command}" in done.stdout and "--" in done.stdout


def test_convert_round_trip_command(tmp_path, make_midi, capsys):
    notes = [(60 + i % 12, i * SIXTEENTH + 30, SIXTEENTH, 40 + i) for i in range(32)]
    src = make_midi(tmp_path / "in.mid", notes)
    assert main(["convert", str(src), str(tmp_path / "out.mid")]) == 0
    out = capsys.readouterr().out
    assert "onset F1 1.0000" in out and "of 32 notes" in out and "0 onset(s) lost" in out
    from fractalmidi.data import midi_to_roll

    assert np.array_equal(midi_to_roll(tmp_path / "out.mid")[0], midi_to_roll(src)[0])
    # two attacks of one pitch within one 16th: the second is lost, and the report says so
    clash = make_midi(tmp_path / "clash.mid", [(60, 0, SIXTEENTH, 80), (60, 40, SIXTEENTH, 80), (64, 0, SIXTEENTH, 80)])
    assert main(["convert", str(clash), str(tmp_path / "clash_out.mid")]) == 0
    out = capsys.readouterr().out
    assert "3 notes -> roll" in out and "of 2 notes" in out and "1 onset(s) lost" in out


def test_out_of_range_velocities_and_empty_rolls(tmp_path):
    roll = np.full((128, 2), 255, dtype=np.uint8)
    assert np.array_equal(roll_to_rgb(roll), roll_to_rgb(np.full((128, 2), 127, dtype=np.uint8)))
    layout = save_png(np.zeros((1, 128, 0)), tmp_path / "empty.png")
    assert layout.steps == 1 and (tmp_path / "empty.png").stat().st_size > 0
