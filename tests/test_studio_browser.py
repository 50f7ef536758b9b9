"""The studio end to end in a real headless Chromium (Debian's chromium + chromium-driver, Selenium):
open a MIDI, paint a pitch band over two bars, regenerate, download the MIDI and check that every
note outside the painted region is unchanged; a screenshot is saved."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the studio needs FastAPI: pip install -e '.[dev,studio]'")
webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test needs selenium: pip install -e '.[dev]'")

CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                  "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--autoplay-policy=no-user-gesture-required", "--window-size=1400,900")
"""Headless, as root, on a closed network (no background connections to refuse)."""
WAIT_S = 60
SPAN = (16, 48)
BAND = (48, 60)
BROWSER_HINT = "Debian's chromium and chromium-driver are not installed (scripts/setup.sh installs them as root)"


def chromium_paths() -> tuple[str, str]:
    """``(chromium, chromedriver)``; skips the test without them (fails under CI, which must have them)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser and driver:
        return browser, driver
    if os.environ.get("CI"):
        pytest.fail(BROWSER_HINT)
    pytest.skip(BROWSER_HINT)


def start_browser(download_dir: Path, profile: Path):
    """A headless Chromium driven by Selenium, downloading into ``download_dir``."""
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_experimental_option("prefs", {"download.default_directory": str(download_dir),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(download_dir)})
    return driver


class LocalServer:
    """The studio app served by uvicorn in a thread on a free loopback port."""

    def __init__(self, session) -> None:
        import uvicorn

        from fractalmidi.studio.app import create_app

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/"
        self.server = uvicorn.Server(uvicorn.Config(create_app(session), log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> LocalServer:
        self.thread.start()
        deadline = time.monotonic() + WAIT_S
        while not self.server.started:
            assert time.monotonic() < deadline, "the studio server did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=WAIT_S)
        self.sock.close()


def wait_for(driver, script: str, what: str, timeout: float = WAIT_S):
    """Poll a JS expression until it is truthy; fail with the page's message otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(f"return {script}")
        if value:
            return value
        time.sleep(0.05)
    message = driver.execute_script("return document.getElementById('message').textContent")
    pytest.fail(f"timed out waiting for {what}; the page says: {message!r}")


def drag(driver, start: tuple[int, int], end: tuple[int, int]) -> None:
    """Press on cell ``(pitch, step)`` ``start`` of the roll, move to ``end``, release."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    canvas = driver.find_element(By.ID, "roll")
    box = driver.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.left, r.top, r.width, "
                                "r.height]", canvas)
    centre = (box[0] + box[2] / 2, box[1] + box[3] / 2)
    a = driver.execute_script("return window.studio.cellCenter(arguments[0], arguments[1])", *start)
    b = driver.execute_script("return window.studio.cellCenter(arguments[0], arguments[1])", *end)
    (ActionChains(driver)
     .move_to_element_with_offset(canvas, round(a["x"] - centre[0]), round(a["y"] - centre[1]))
     .click_and_hold()
     .move_by_offset(round(b["x"] - a["x"]), round(b["y"] - a["y"]))
     .release()
     .perform())


def downloaded(folder: Path, name: str) -> Path:
    path = folder / name
    deadline = time.monotonic() + WAIT_S
    while not (path.is_file() and path.stat().st_size and not list(folder.glob("*.crdownload"))):
        assert time.monotonic() < deadline, f"{name} was not downloaded: {sorted(p.name for p in folder.iterdir())}"
        time.sleep(0.05)
    return path


@pytest.mark.browser
@pytest.mark.data
def test_paint_a_pitch_band_regenerate_and_download(tiny_fractal_checkpoint, studio_piece, tmp_path: Path) -> None:
    import numpy as np
    import symusic
    from selenium.webdriver.common.by import By

    from fractalmidi.inference import load_checkpoint
    from fractalmidi.studio.session import Session

    chromium_paths()
    session = Session(load_checkpoint(tiny_fractal_checkpoint))
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver = None
    try:
        with LocalServer(session) as server:
            driver = start_browser(downloads, tmp_path / "profile")
            driver.get(server.url)
            wait_for(driver, "window.studio && window.studio.state.info", "the page to load")
            driver.execute_script("document.getElementById('opt-num_iter_list').value = '2 1 1'")  # fast on a CPU
            driver.find_element(By.ID, "file").send_keys(str(studio_piece.path))
            wait_for(driver, "window.studio.state.current && window.studio.state.current.notes.length",
                     "the MIDI to open")
            assert driver.find_elements(By.CSS_SELECTOR, "#history li")[0].text == "opened piece.mid"

            driver.execute_script("window.studio.scrollTo(arguments[0], 0)", sum(BAND) // 2)
            driver.find_element(By.CSS_SELECTOR, "input[name=tool][value=span]").click()
            drag(driver, (54, SPAN[0] + 2), (54, SPAN[1] - 3))  # snaps to whole bars: bars 2 and 3
            driver.find_element(By.CSS_SELECTOR, "input[name=tool][value=band]").click()
            drag(driver, (BAND[1], 30), (BAND[0], 30))
            rects = driver.execute_script("return window.studio.regionRects()")
            assert rects == [[SPAN[0], SPAN[1], BAND[0], BAND[1]]]
            assert driver.find_element(By.ID, "generate").text == "Regenerate region"

            driver.find_element(By.ID, "generate").click()
            wait_for(driver, "window.studio.state.versions.length === 2 && !window.studio.state.busy "
                             "&& window.studio.state.current.version.id === '2'", "the generation")
            message = driver.find_element(By.ID, "message")
            assert "error" not in message.get_attribute("class") and "inpaint bars 2-3" in message.text
            assert [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#history li")] == \
                ["opened piece.mid", "inpaint bars 2-3, C3-C4 (seed 0)"]

            driver.find_element(By.ID, "dl-mid").click()
            result = symusic.Score(str(downloaded(downloads, "fractalmidi-v2.mid")))
            driver.save_screenshot(str(tmp_path / "studio.png"))

            current = "window.studio.state.current.version.id"
            driver.find_element(By.ID, "undo").click()  # back to the opened file ...
            wait_for(driver, f"{current} === '1'", "undo")
            driver.find_element(By.ID, "ab").click()  # ... and A/B to the take again
            wait_for(driver, f"{current} === '2'", "A/B")
    finally:
        if driver is not None:
            driver.quit()
        session.close()

    step = result.ticks_per_quarter / 4
    notes = {(n.pitch, round(n.time / step), round(n.end / step), n.velocity) for t in result.tracks for n in t.notes}
    region = np.zeros((128, studio_piece.steps), dtype=bool)
    region[BAND[0] : BAND[1] + 1, SPAN[0] : SPAN[1]] = True
    kept = {n for n in studio_piece.notes if not region[n[0], n[1] : n[2]].any()}
    assert len(kept) == len(studio_piece.notes) - 6  # the chords of bars 2 and 3 were in the region
    assert kept <= notes, f"notes outside the painted region changed: {sorted(kept - notes)[:5]}"
    assert (tmp_path / "studio.png").read_bytes()[:4] == b"\x89PNG"
