"""Studio latency: from clicking "Generate" to the result playing, in a real headless Chromium.

Opens a Bach chorale bundled with music21, selects a 4-bar time span (64 steps, all pitches),
clicks Generate and reads the page's own timings: the response (model + notes + frames) and
the moment playback of the new version is scheduled (the server's FluidSynth WAV fetched and
decoded, or the in-browser synth). Both audio paths when FluidSynth is installed. A trained
checkpoint, or an untrained preset (``--preset``: sampling time does not depend on the
weights, so this times a model size that has no checkpoint yet). Optionally saves a
screenshot of the page after the last take. Appends a section to benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/bench_studio.py --checkpoint runs/fractal_tiny --screenshot docs/studio.png --append
    .venv/bin/python benchmarks/bench_studio.py --preset fractal-default --append
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from fractalmidi.studio.server import DEFAULT_THREADS

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
sys.path.insert(0, str(ROOT / "tests"))  # the browser helpers of the end-to-end test

REGION_BAR = 3
"""The selected span starts at this bar (1-based) ..."""
REGION_BARS = 4
"""... and lasts this many bars (64 steps of the 16th grid)."""
SHOT_AFTER_S = 1.5
"""The screenshot is taken this long after the result starts playing."""


def load(args):
    from fractalmidi.inference import LoadedCheckpoint, load_checkpoint

    if args.checkpoint:
        return load_checkpoint(args.checkpoint)
    from fractalmidi.models import build

    return LoadedCheckpoint(path=Path(f"{args.preset} (untrained)"), model=build(args.preset).eval(), config={})


def chorale_midi(folder: Path) -> Path:
    from fractalmidi.data.roll import write_midi
    from fractalmidi.data.sources import bach_chorale_paths, corpus_score

    path = folder / "chorale.mid"
    write_midi(corpus_score(bach_chorale_paths()[0]), path)
    return path


def takes(driver, session, repeats: int, shot: Path) -> list[dict[str, float]]:
    """Click Generate ``repeats`` times on the selected span; the page's timings of each take. The
    page is saved to ``shot`` while the last take plays."""
    from selenium.webdriver.common.by import By

    from test_studio_browser import wait_for

    rows = []
    for _ in range(repeats):
        count = driver.execute_script("return window.studio.state.versions.length")
        driver.execute_script("window.studio.state.lastLatencyMs = null")
        driver.find_element(By.ID, "generate").click()
        wait_for(driver, f"window.studio.state.versions.length === {count + 1} && window.studio.state.lastLatencyMs",
                 "the result to play", timeout=600)
        timing = driver.execute_script("const s = window.studio.state; return [s.lastGenerateMs, s.lastLatencyMs]")
        model_s = session.versions()[-1].elapsed_s
        rows.append({"model_s": model_s, "response_s": timing[0] / 1000, "playing_s": timing[1] / 1000})
        time.sleep(SHOT_AFTER_S)  # the playhead moves on a little
        driver.save_screenshot(str(shot))
        driver.find_element(By.ID, "play").click()  # stop before the next take
        time.sleep(0.2)
    return rows


def run_path(args, loaded, midi: Path, workdir: Path, wav: bool) -> tuple[list[dict[str, float]], Path]:
    from selenium.webdriver.common.by import By

    from fractalmidi.studio.session import Session
    from test_studio_browser import LocalServer, drag, start_browser, wait_for

    session = Session(loaded)
    session.wav_available = session.wav_available and wav
    shot = workdir / f"studio-{'wav' if wav else 'synth'}.png"
    driver = None
    try:
        with LocalServer(session) as server:
            driver = start_browser(workdir / "downloads", workdir / f"profile-{wav}")
            driver.get(server.url)
            wait_for(driver, "window.studio && window.studio.state.info", "the page")
            driver.find_element(By.ID, "file").send_keys(str(midi))
            wait_for(driver, "window.studio.state.current", "the MIDI to open")
            first = (REGION_BAR - 1) * 16
            driver.execute_script("window.studio.scrollTo(60, 0)")
            driver.find_element(By.CSS_SELECTOR, "input[name=tool][value=span]").click()
            drag(driver, (60, first + 1), (60, first + REGION_BARS * 16 - 2))
            rects = driver.execute_script("return window.studio.regionRects()")
            assert rects == [[first, first + REGION_BARS * 16, 0, 127]], rects
            rows = takes(driver, session, args.repeats, shot)
    finally:
        if driver is not None:
            driver.quit()
        session.close()
    return rows, shot


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a trained checkpoint or run folder")
    source.add_argument("--preset", help="an untrained preset (timing only), e.g. fractal-default")
    parser.add_argument("--repeats", type=int, default=3, help="takes per audio path (default 3)")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="torch threads, as `studio --threads`")
    parser.add_argument("--screenshot", type=Path, help="save the page after the last FluidSynth take here")
    parser.add_argument("--append", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    loaded = load(args)
    model = loaded.model
    load_before = os.getloadavg()
    lines = []
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        (workdir / "downloads").mkdir()
        midi = chorale_midi(workdir)
        from fractalmidi.studio.session import Session

        probe = Session(None)
        paths = [True, False] if probe.wav_available else [False]
        probe.close()
        for wav in paths:
            rows, shot = run_path(args, loaded, midi, workdir, wav)
            if wav and args.screenshot:
                args.screenshot.parent.mkdir(parents=True, exist_ok=True)
                args.screenshot.write_bytes(shot.read_bytes())
            for key in ("model_s", "response_s", "playing_s"):
                values = [r[key] for r in rows]
                lines.append(f"| {'FluidSynth WAV' if wav else 'in-browser synth'} | {key.replace('_s', '')} | "
                             f"{statistics.median(values):.2f} | {min(values):.2f} | {max(values):.2f} |")
    load_after = os.getloadavg()
    options = {k: v for k, v in model.sample_defaults.items() if k in ("num_iter_list", "steps", "temperature")}
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = "\n".join([
        f"## studio: Generate -> hearing the result, {REGION_BARS}-bar region ({now})",
        "",
        f"Machine: {os.cpu_count()}-core CPU, no GPU; torch {torch.__version__}, {torch.get_num_threads()} threads. "
        f"Load average {load_before[0]:.1f} before, {load_after[0]:.1f} after. Model: {model.preset} "
        f"({'checkpoint ' + str(args.checkpoint) if args.checkpoint else 'untrained weights: timing only'}), "
        f"sampling {options}. Piece: the first music21 Bach chorale; region: bars "
        f"{REGION_BAR}-{REGION_BAR + REGION_BARS - 1}, "
        f"all pitches; {args.repeats} takes per audio path in headless Chromium.",
        f"Command: `.venv/bin/python benchmarks/bench_studio.py {' '.join(sys.argv[1:])}`",
        "",
        "model = the sampler alone (server); response = click to the new version in the page (model, notes, frames); "
        "playing = click to playback scheduled (response, frames shown, WAV rendered + fetched + decoded or synth set "
        "up).",
        "",
        "| audio | seconds | median | min | max |",
        "|---|---|---|---|---|",
        *lines,
        "",
    ])
    print(section)
    if args.append:
        with RESULTS.open("a") as handle:
            handle.write("\n" + section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
