"""The editor end to end in a real headless browser: the system Chromium (Debian's `chromium` and
`chromium-driver` packages) driven by Selenium. Load the page, drag a slider, see the preview change, toggle the
views, save, answer the overwrite question, and compare the saved photo with `render --recipe`.

Skipped, with the reason, when Selenium, Chromium or chromedriver is missing (`apt-get install chromium
chromium-driver`); .ci/run installs them when it can.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("starlette", reason="starlette (the 'edit' extra) is not installed: browser test skipped")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed: browser test skipped")

from deepexposure.apps.cli import main  # noqa: E402
from deepexposure.image.io import read_photo  # noqa: E402
from deepexposure.image.recipe import Recipe  # noqa: E402
from test_editor import SAMPLE, start_editor, stop  # noqa: E402

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
DRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason=f"no headless browser: chromium {'found' if CHROMIUM else 'missing'}, chromedriver "
           f"{'found' if DRIVER else 'missing'} (apt-get install chromium chromium-driver)")


def _browser():
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,860",
                "--force-device-scale-factor=1", "--disable-extensions", "--no-first-run"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(DRIVER), options=opts)  # the system driver: no download


def _wait(what, timeout: float = 60, step: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {getattr(what, '__name__', what)}")


@contextlib.contextmanager
def opened_editor(tmp_path):
    """``edit`` on a copy of the sample (renderer local) and a headless browser on its page, first render shown:
    yields (server process, driver, the photo's path); both are closed afterwards."""
    src = tmp_path / "photo.jpg"
    shutil.copy(SAMPLE, src)
    proc, url = start_editor([str(src), "--renderer", "local"], tmp_path)
    driver = None
    try:
        driver = _browser()
        driver.get(url)
        _wait(lambda: _settled(driver, 0))
        yield proc, driver, src
    finally:
        if driver is not None:
            driver.quit()
        stop(proc)


def _renders(driver) -> int:
    return int(driver.find_element("id", "preview").get_attribute("data-renders") or 0)


def _settled(driver, after: int) -> bool:
    """A render newer than ``after`` is shown, it is not a draft, and nothing is in flight or waiting."""
    img = driver.find_element("id", "preview")
    return (_renders(driver) > after and img.get_attribute("data-draft") == "false"
            and driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", img))


def _pixels(driver) -> np.ndarray:
    """The preview as shown (decoded by the browser, read back through a canvas)."""
    data = driver.execute_script(
        "const img = document.getElementById('preview');"
        "const c = document.createElement('canvas'); c.width = img.naturalWidth; c.height = img.naturalHeight;"
        "const x = c.getContext('2d'); x.drawImage(img, 0, 0);"
        "return [c.width, c.height, Array.from(x.getImageData(0, 0, c.width, c.height).data)];")
    w, h, flat = data
    return np.asarray(flat, np.uint8).reshape(h, w, 4)[..., :3]


def test_edit_in_a_real_browser(tmp_path):
    with opened_editor(tmp_path) as (_, driver, src):
        sliders = driver.find_elements("css selector", "#sliders input[type=range]")
        state = json.loads(driver.execute_script(
            "return fetch('api/state', {headers: {'X-Token': document.body.dataset.token}}).then(r => r.text())"))
        assert len(sliders) == len(state["evs"]) >= 2  # one slider per segment, seeded by the policy
        assert [float(s.get_attribute("value")) for s in sliders] == pytest.approx(state["evs"], abs=0.05)
        first = _pixels(driver)
        assert first.shape == (480, 640, 3)

        # drag the first slider to the right: the preview re-renders and gets brighter
        from selenium.webdriver import ActionChains

        n = _renders(driver)
        label = driver.find_element("id", "ev-0-value").text
        ActionChains(driver).click_and_hold(sliders[0]).move_by_offset(60, 0).release().perform()
        _wait(lambda: _settled(driver, n))
        assert driver.find_element("id", "ev-0-value").text != label
        moved = _pixels(driver)
        assert np.abs(moved.astype(int) - first).mean() > 1 and moved.mean() > first.mean()
        assert "rendered in" in driver.find_element("id", "status").text

        # before / after and segments views
        n = _renders(driver)
        driver.find_element("id", "before").click()
        _wait(lambda: _settled(driver, n) and driver.find_element("id", "preview").get_attribute("data-view") == "before")
        assert driver.find_element("id", "badge").is_displayed()
        before = _pixels(driver)
        original = read_photo(src).pixels * 255
        assert np.abs(before.astype(float) - original).mean() < 4 < np.abs(moved.astype(float) - original).mean()
        n = _renders(driver)
        driver.find_element("id", "before").click()
        driver.find_element("id", "segments").click()
        _wait(lambda: _settled(driver, n)
              and driver.find_element("id", "preview").get_attribute("data-view") == "segments")
        driver.find_element("id", "segments").click()
        hist = driver.execute_script(
            "const c = document.getElementById('histogram');"
            "return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data).some(v => v > 0);")
        assert hist  # the luminance histogram is drawn

        # save: full resolution + recipe; then the overwrite question, declined
        name = driver.find_element("id", "out-name")
        name.clear()
        name.send_keys("edited.png")
        driver.find_element("id", "save").click()
        _wait(lambda: "saved" in driver.find_element("id", "save-status").text.split(" ")[0])
        saved, recipe_file = tmp_path / "edited.png", tmp_path / "edited.recipe.json"
        assert saved.is_file() and recipe_file.is_file()
        digest = hashlib.sha256(saved.read_bytes()).hexdigest()
        driver.find_element("id", "save").click()
        alert = _wait(lambda: _alert(driver))
        assert "already exist" in alert.text
        alert.dismiss()
        _wait(lambda: "not saved" in driver.find_element("id", "save-status").text)
        assert hashlib.sha256(saved.read_bytes()).hexdigest() == digest
        driver.save_screenshot(str(tmp_path / "page.png"))

    recipe = Recipe.load(recipe_file)
    assert recipe.renderer == "local" and recipe.evs[0] > state["evs"][0]
    again = tmp_path / "again.png"
    res = CliRunner().invoke(main, ["render", str(src), "--recipe", str(recipe_file), "-o", str(again)])
    assert res.exit_code == 0, res.output
    assert np.array_equal(read_photo(saved).pixels, read_photo(again).pixels)  # the saved photo = render --recipe


def _alert(driver):
    from selenium.common.exceptions import NoAlertPresentException

    try:
        alert = driver.switch_to.alert
        alert.text  # noqa: B018 - raises when there is none
        return alert
    except NoAlertPresentException:
        return None
