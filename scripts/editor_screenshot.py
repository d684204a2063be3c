"""The README's screenshot of ``deepexposure edit``: the page in headless Chromium (Selenium, the system browser).

Usage: ``python scripts/editor_screenshot.py [--photo samples/dicm_02.jpg] [--out docs/images/editor.jpg]
[--segments]``. Starts ``deepexposure edit PHOTO --no-browser`` (the shipped policy seeds the sliders), opens it,
lifts segment 0 by half a stop, optionally shows the segments, and saves the window as JPEG. Needs the ``edit``
extra, selenium, and Debian's ``chromium`` and ``chromium-driver``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]


def _wait(cond, timeout: float = 60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.1)
    raise SystemExit("timed out")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photo", type=Path, default=REPO / "samples" / "dicm_02.jpg")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "images" / "editor.jpg")
    ap.add_argument("--segments", action="store_true", help="show the segments overlay")
    args = ap.parse_args()
    from selenium import webdriver
    from selenium.webdriver import ActionChains
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with tempfile.TemporaryDirectory() as tmp:
        photo = os.path.relpath(args.photo.resolve(), REPO)  # shown as given; nothing is saved by this script
        proc = subprocess.Popen([sys.executable, "-m", "deepexposure", "edit", photo, "--no-browser"], cwd=REPO,
                                env=env, stdout=subprocess.PIPE, text=True)
        try:
            url = None
            while url is None:
                line = proc.stdout.readline()
                if not line:
                    raise SystemExit("the editor did not start")
                m = re.search(r"(http://\S+token=\S+)", line)
                url = m.group(1) if m else None
            opts = Options()
            opts.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
            for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,860",
                      "--force-device-scale-factor=1", "--hide-scrollbars"):
                opts.add_argument(a)
            driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
            try:
                driver.get(url)
                renders = lambda: int(driver.find_element("id", "preview").get_attribute("data-renders"))  # noqa: E731
                _wait(lambda: renders() > 0)
                slider = driver.find_element("id", "ev-0")
                n = renders()
                ActionChains(driver).click_and_hold(slider).move_by_offset(8, 0).release().perform()
                _wait(lambda: renders() > n + 0 and driver.find_element("id", "preview").get_attribute(
                    "data-draft") == "false")
                if args.segments:
                    n = renders()
                    driver.find_element("id", "segments").click()
                    _wait(lambda: renders() > n)
                time.sleep(0.5)
                png = Path(tmp) / "page.png"
                driver.save_screenshot(str(png))
            finally:
                driver.quit()
            args.out.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(args.out), cv2.imread(str(png)), [cv2.IMWRITE_JPEG_QUALITY, 88])
            print(f"wrote {args.out}")
        finally:
            proc.terminate()
            proc.wait(timeout=15)


if __name__ == "__main__":
    main()
