"""``fractalmidi studio``: the HTTP API on a tiny real checkpoint (upload, every mode, downloads,
limits, refused paths) and the command starting and stopping a real server."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import symusic

pytest.importorskip("fastapi", reason="the studio needs FastAPI: pip install -e '.[dev,studio]'")
from fastapi.testclient import TestClient  # noqa: E402

from fractalmidi.studio.app import create_app  # noqa: E402
from fractalmidi.studio.session import Limits, Session  # noqa: E402

FAST = {"num_iter_list": [2, 1, 1]}
LIMITS = Limits(max_upload_bytes=16 * 1024, max_piece_steps=256, max_window_steps=128, max_rects=64)


def note_set_of(score: symusic.Score) -> set[tuple[int, int, int, int]]:
    step = score.ticks_per_quarter / 4
    return {(n.pitch, round(n.time / step), round(n.end / step), n.velocity) for t in score.tracks for n in t.notes}


def outside(notes, region: np.ndarray) -> set[tuple[int, int, int, int]]:
    """Notes none of whose cells lie in ``region`` ``(128, L)``."""
    return {n for n in notes if not region[n[0], n[1]:n[2]].any()}


def cells_of(notes, length: int) -> np.ndarray:
    """``(128, length)`` bool: the cells the notes cover."""
    cells = np.zeros((128, length), dtype=bool)
    for pitch, onset, end, _ in notes:
        cells[pitch, onset:end] = True
    return cells


def notes_of(roll: np.ndarray) -> set[tuple[int, int, int, int]]:
    from fractalmidi.data.roll import roll_to_notes

    n = roll_to_notes(roll)
    return set(zip(n.pitch.tolist(), n.onset.tolist(), n.end.tolist(), n.velocity.tolist()))


def mask_of(rects, length: int) -> np.ndarray:
    region = np.zeros((128, length), dtype=bool)
    for start, end, low, high in rects:
        region[low : high + 1, start:end] = True
    return region


@pytest.fixture(scope="module")
def midi_bytes(studio_piece) -> bytes:
    return studio_piece.path.read_bytes()


@pytest.fixture(scope="module")
def loaded(tiny_fractal_checkpoint):
    from fractalmidi.inference import load_checkpoint

    return load_checkpoint(tiny_fractal_checkpoint)


@pytest.fixture
def studio(loaded, torch_single_thread):
    session = Session(loaded, limits=LIMITS)
    with TestClient(create_app(session, allowed_hosts=["testserver"])) as client:
        yield client, session
    session.close()
    assert not session.folder.exists()


def _open(client, data: bytes, name: str = "piece.mid"):
    headers = {"X-Filename": name, "Content-Type": "application/octet-stream"}
    return client.post("/api/open", content=data, headers=headers)


def _generate(client, version, rects, seed=0, **options):
    request = {"version": version, "rects": rects, "seed": seed, "options": {**FAST, **options}}
    return client.post("/api/generate", json=request)


@pytest.mark.data
def test_page_assets_and_info(studio) -> None:
    client, _ = studio
    page = client.get("/")
    assert page.status_code == 200 and "FractalMIDI Studio" in page.text and "/static/studio.js" in page.text
    assert page.headers["x-content-type-options"] == "nosniff"
    for name in ("studio.js", "studio.css"):
        assert client.get(f"/static/{name}").status_code == 200
    info = client.get("/api/info").json()
    assert info["model"]["family"] == "fractal" and info["model"]["preset"] == "fractal-tiny"
    # no guidance without labels
    assert set(info["model"]["options"]) == {"num_iter_list", "temperature", "sparsity_bias", "edges", "voice_range",
                                               "voice_redraws", "voice_redraw_iters", "velocity_min_p"}
    # the page's inputs are typed from the option types, not from JSON numbers (1.0 arrives as 1)
    assert info["model"]["option_kinds"] == {"num_iter_list": "list", "temperature": "number",
                                             "sparsity_bias": "number", "edges": "text", "voice_range": "list",
                                             "voice_redraws": "integer", "voice_redraw_iters": "integer",
                                             "velocity_min_p": "number"}
    assert info["steps_per_bar"] == 16 and info["limits"]["max_window_steps"] == LIMITS.max_window_steps
    assert info["velocity_colours"][0] == [1, [40, 70, 255]] and info["versions"] == []


@pytest.mark.data
def test_upload_and_every_mode_keep_the_notes_outside_the_region(studio, midi_bytes, studio_piece) -> None:
    client, session = studio
    steps, tempo = studio_piece.steps, studio_piece.tempo_bpm
    opened = _open(client, midi_bytes)
    assert opened.status_code == 200, opened.text
    first = opened.json()
    assert first["version"]["id"] == "1" and first["version"]["steps"] == steps
    assert first["version"]["tempo_bpm"] == pytest.approx(tempo) and first["version"]["label"] == "opened piece.mid"
    assert first["version"]["seconds_per_step"] == pytest.approx(60 / tempo / 4)
    source = {tuple(n) for n in first["notes"]}
    assert source == set(studio_piece.notes)

    regions = {
        "inpaint": [[16, 48, 48, 60]],  # a pitch band over two bars: keep melody and bass
        "brush": [[20, 23, 72, 72], [21, 25, 74, 74], [8, 9, 40, 40], [30, 34, 55, 55]],
        "continue": [[64, 96, 0, 127]],
    }
    for name, rects in regions.items():
        response = _generate(client, "1", rects, temperature=1.2)
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["mode"] == ("continue" if name == "continue" else "inpaint")
        version = result["version"]
        assert version["parent"] == "1" and version["steps"] == (96 if name == "continue" else steps)
        region = mask_of(rects, version["steps"])
        notes = {tuple(n) for n in result["notes"]}
        kept = outside(source, region)
        assert kept and kept <= notes, f"{name}: notes outside the region changed: {sorted(kept - notes)[:5]}"
        roll = session.version(version["id"]).roll[0]
        kept_cells = cells_of(kept, steps)
        assert np.array_equal(roll[:, :steps][kept_cells], session.version("1").roll[0][kept_cells])  # bit for bit
        frames = result["frames"]
        assert frames["start"] == 0 and len(frames["images"]) >= 2
        assert all(img.startswith("data:image/png;base64,") for img in frames["images"])
        downloaded = symusic.Score.from_midi(client.get(f"/api/versions/{version['id']}/mid").content)
        assert note_set_of(downloaded) == notes
        assert downloaded.tempos[0].qpm == pytest.approx(tempo, rel=1e-3)

    composed = _generate(client, None, [[0, 32, 0, 127]], seed=3)
    assert composed.status_code == 200, composed.text
    assert composed.json()["mode"] == "unconditional" and composed.json()["version"]["steps"] == 32
    assert composed.json()["version"]["parent"] is None
    listed = client.get("/api/versions").json()
    assert [v["id"] for v in listed] == ["1", "2", "3", "4", "5"]
    again = _generate(client, "1", regions["inpaint"], temperature=1.2).json()["notes"]
    assert client.get("/api/versions/2").json()["notes"] == again


@pytest.mark.data
def test_downloads_png_wav_and_the_preview(studio, midi_bytes, studio_piece) -> None:
    import wave

    client, session = studio
    _open(client, midi_bytes)
    png = client.get("/api/versions/1/png")
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG" and png.headers["content-type"] == "image/png"
    assert 'filename="fractalmidi-v1.png"' in png.headers["content-disposition"]
    wav = client.get("/api/versions/1/wav")
    assert client.get("/api/versions/1/preview").status_code == 404  # only generated versions have one
    generated = _generate(client, "1", [[16, 32, 0, 127]]).json()["version"]
    preview = client.get(f"/api/versions/{generated['id']}/preview")
    if session.wav_available:
        assert wav.status_code == 200 and wav.content[:4] == b"RIFF" and len(wav.content) > 44
        assert generated["preview"] == {"start": 16, "end": 48}  # the region and one bar after it
        assert preview.status_code == 200 and preview.headers["content-type"] == "audio/wav"
        with wave.open(io.BytesIO(preview.content)) as clip:
            seconds = clip.getnframes() / clip.getframerate()
        assert 32 * generated["seconds_per_step"] <= seconds < 32 * generated["seconds_per_step"] + 3  # + release tail
    else:
        assert wav.status_code == 404 and "FluidSynth" in wav.json()["error"]
        assert generated["preview"] is None and preview.status_code == 404
    expected = ["version-1.png", "version-1.mid"] + (["version-1.wav", "version-2.preview.mid", "version-2.preview.wav"]
                                                       if session.wav_available else [])
    assert sorted(p.name for p in session.folder.iterdir()) == sorted(expected)


@pytest.mark.data
def test_a_region_in_a_long_piece_is_generated_in_a_window(loaded, midi_bytes, studio_piece,
                                                           torch_single_thread) -> None:
    session = Session(loaded, limits=Limits(max_window_steps=32))
    try:
        base = session.open_midi(midi_bytes, "piece.mid")
        result = session.generate(base.id, [[40, 44, 50, 70]], FAST, 1)
        assert result["frames"]["start"] == 26  # 4 steps centred in 32: 14 of context either side
        assert len(result["frames"]["images"][0]) > 0
        kept = outside(notes_of(base.roll), mask_of([[40, 44, 50, 70]], studio_piece.steps))
        assert kept and kept <= notes_of(session.version(result["version"]["id"]).roll)
        with pytest.raises(Exception, match="spans 48 steps but the model takes at most 32"):
            session.generate(base.id, [[0, 48, 0, 127]], FAST, 1)
    finally:
        session.close()


@pytest.mark.data
def test_same_seed_same_take(studio, midi_bytes) -> None:
    client, _ = studio
    _open(client, midi_bytes)
    takes = [_generate(client, "1", [[0, 32, 60, 80]], seed=s).json()["notes"] for s in (7, 7, 8)]
    assert takes[0] == takes[1] and takes[0] != takes[2]


@pytest.mark.data
def test_bad_and_oversize_uploads_are_refused(studio, midi_bytes, huge_note_midi, make_midi, tmp_path) -> None:
    client, _ = studio
    cases = [
        (b"", 400, "empty file"),
        (b"RIFF\x00\x00\x00\x00WAVE", 400, "not a MIDI file"),
        (b"MThd\x00\x00\x00\x06\x00", 400, "cannot be opened"),
        (huge_note_midi(tmp_path / "huge.mid").read_bytes(), 400, "too long"),
        (make_midi(tmp_path / "drums.mid", [], drum_notes=[(36, 0, 120, 100)]).read_bytes(), 400, "no notes"),
        (midi_bytes + b"\x00" * LIMITS.max_upload_bytes, 413, f"at most {LIMITS.max_upload_bytes}"),
    ]
    for data, status, message in cases:
        response = _open(client, data, "bad.mid")
        assert response.status_code == status, (message, response.text)
        error = response.json()["error"]
        assert message in error and "\n" not in error
    streamed = client.post("/api/open", content=iter([midi_bytes, b"\x00" * LIMITS.max_upload_bytes]))  # no length
    assert streamed.status_code == 413
    assert client.get("/api/versions").json() == []


@pytest.mark.data
def test_bad_generate_requests_fail_in_one_sentence(studio, midi_bytes) -> None:
    client, session = studio
    _open(client, midi_bytes)
    cases = [
        ({"version": "9", "rects": [[0, 16, 0, 127]]}, 404, "there is no version '9'"),
        ({"version": 1, "rects": [[0, 16, 0, 127]]}, 400, "version must be a version id"),
        ({"version": "1", "rects": []}, 400, "region to generate is empty"),
        ({"version": "1", "rects": [[0, 16, 0, 128]]}, 400, "region pitches 0..128"),
        ({"version": "1", "rects": [[8, 8, 0, 127]]}, 400, "with start < end"),
        ({"version": "1", "rects": [[0, 300, 0, 127]]}, 400, "inside 0..256"),
        ({"version": "1", "rects": [["0", 16, 0, 127]]}, 400, "four whole numbers"),
        ({"version": "1", "rects": [[0, 1, 0, 0]] * 65}, 413, "at most 64"),
        ({"version": "1", "rects": [[0, 160, 0, 127]]}, 400, "the model takes at most 128"),
        ({"version": "1", "rects": [[0, 16, 0, 127]], "options": {"cfg": 2.0}}, 400, "'cfg' is not offered"),
        ({"version": "1", "rects": [[0, 16, 0, 127]], "options": {"temperature": "hot"}}, 400, "must be a number"),
        ({"version": "1", "rects": [[0, 16, 0, 127]], "options": {"num_iter_list": [2, 1]}}, 400,
         "rejected by the fractal family"),
        ({"version": "1", "rects": [[0, 16, 0, 127]], "seed": -1}, 400, "seed must be"),
    ]
    for body, status, message in cases:
        response = client.post("/api/generate", json=body)
        assert response.status_code == status, (message, response.text)
        assert message in response.json()["error"] and "\n" not in response.json()["error"]
    assert client.post("/api/generate", content=b"{nope").json()["error"] == "the request is not valid JSON"
    big = client.post("/api/generate", content=b" " * (2 * 1024 * 1024))
    assert big.status_code == 413
    session._model_lock.acquire()  # a generation in flight
    try:
        busy = _generate(client, "1", [[0, 16, 0, 127]])
        assert busy.status_code == 409 and "already running" in busy.json()["error"]
    finally:
        session._model_lock.release()
    assert [v["id"] for v in client.get("/api/versions").json()] == ["1"]


@pytest.mark.data
def test_nothing_from_a_request_reaches_a_path(studio, midi_bytes) -> None:
    client, session = studio
    assert _open(client, midi_bytes, "../../../etc/evil.mid").json()["version"]["label"] == "opened evil.mid"
    for url in [
        "/api/versions/..%2F..%2F..%2Fetc%2Fpasswd/mid",
        "/api/versions/1/..%2F..%2F..%2Fetc%2Fpasswd",
        "/api/versions/%2Fetc%2Fpasswd/png",
        "/api/versions/1%2F..%2F1/mid",
        "/static/..%2Fsession.py",
        "/static/../session.py",
        "/static/%2E%2E/app.py",
        "/../../etc/passwd",
    ]:
        response = client.get(url)
        assert response.status_code == 404, url
        assert "passwd" not in response.text and "import" not in response.text
    assert client.get("/api/versions/1/py").json()["error"].startswith("a version can be downloaded as mid, wav, png")
    assert client.get("/", headers={"Host": "evil.example"}).status_code == 400  # DNS rebinding
    assert all(p.parent == session.folder and p.name.startswith("version-") for p in session.folder.iterdir())


def test_a_jit_model_takes_its_own_options(midi_bytes, torch_single_thread) -> None:
    """JiT's options through the page's JSON (untrained weights: only the mechanics are checked)."""
    from fractalmidi.inference import LoadedCheckpoint
    from fractalmidi.models import build

    session = Session(LoadedCheckpoint(path=Path("jit-tiny.ckpt"), model=build("jit-tiny").eval(), config={}),
                      limits=LIMITS)
    try:
        with TestClient(create_app(session, allowed_hosts=["testserver"])) as client:
            model = client.get("/api/info").json()["model"]
            options = model["options"]
            assert model["option_kinds"] == {"steps": "integer", "sampler": "text", "start_noise": "number",
                                             "silence_below": "number", "onset_above": "number",
                                             "max_voices": "integer",
                                             "capped_silence_below": "number"}
            assert set(options) == {"steps", "sampler", "start_noise", "silence_below", "onset_above", "max_voices",
                                    "capped_silence_below"}
            assert options["steps"] == session.loaded.model.sample_defaults["steps"]
            _open(client, midi_bytes)
            rects = [[16, 32, 50, 70]]
            body = {"version": "1", "rects": rects, "options": {"steps": 2, "sampler": "euler", "silence_below": 0.3}}
            response = client.post("/api/generate", json=body)
            assert response.status_code == 200, response.text
            assert len(response.json()["frames"]["images"]) >= 2
            kept = outside(notes_of(session.version("1").roll), mask_of(rects, 64))
            assert kept and kept <= notes_of(session.version("2").roll)
            bad = client.post("/api/generate", json={**body, "options": {"sampler": "rk4"}})
            assert bad.status_code == 400 and "sampler 'rk4' is not one of euler, heun" in bad.json()["error"]
            steps = client.post("/api/generate", json={**body, "options": {"steps": 2.5}})
            assert steps.status_code == 400 and "whole number" in steps.json()["error"]
    finally:
        session.close()


def test_without_a_model_the_page_opens_files_but_cannot_generate(midi_bytes) -> None:
    session = Session(None, limits=LIMITS)
    try:
        with TestClient(create_app(session, allowed_hosts=["testserver"])) as client:
            assert client.get("/api/info").json()["model"] is None
            assert _open(client, midi_bytes).status_code == 200
            refused = _generate(client, "1", [[0, 16, 0, 127]])
            assert refused.status_code == 400 and "--checkpoint" in refused.json()["error"]

        def broken():
            raise RuntimeError("disk on fire\nand more")

        session.versions = broken  # a bug inside the server still answers in one sentence
        with TestClient(create_app(session, allowed_hosts=["testserver"]), raise_server_exceptions=False) as client:
            failed = client.get("/api/versions")
            assert failed.status_code == 500
            assert failed.json() == {"error": "the studio failed (RuntimeError: disk on fire)"}
    finally:
        session.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_command_serves_the_page_and_removes_its_folder_on_exit(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "fractalmidi", "studio", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith(f"FractalMIDI Studio: http://127.0.0.1:{port}/"), line + proc.stderr.read()
        assert len(list(tmp_path.iterdir())) == 1  # the session folder
        for _ in range(50):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/") as page:
                    assert b"FractalMIDI Studio" in page.read()
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("the studio did not answer")
        taken = subprocess.run([sys.executable, "-m", "fractalmidi", "studio", "--port", str(port)], env=env,
                               capture_output=True, text=True, timeout=60)
        assert taken.returncode == 2 and "cannot listen on 127.0.0.1" in taken.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert proc.returncode == 0
    assert list(tmp_path.iterdir()) == []
    bad = subprocess.run([sys.executable, "-m", "fractalmidi", "studio", "--port", "70000"], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "--port must be in 1..65535" in bad.stderr


def test_option_kinds_and_coercion_share_one_dispatch() -> None:
    """Every kind the page is told about is also the kind the server reads back (booleans are not integers)."""
    from fractalmidi.errors import UserError
    from fractalmidi.studio.session import coerce_option, option_kind

    cases = [(True, "boolean", False, False), (3, "integer", 4.0, 4), (0.5, "number", 1, 1.0),
             ((8, 4), "list", [2, 2], [2, 2]), ("heun", "text", "euler", "euler")]
    for default, kind, sent, read in cases:
        assert option_kind(default) == kind
        got = coerce_option("x", sent, default)
        assert got == read and type(got) is type(read)
    for default, bad in [(True, 1), (3, 2.5), (0.5, True), ((8, 4), 3), ("heun", 3)]:
        with pytest.raises(UserError, match="sampling option x"):
            coerce_option("x", bad, default)
