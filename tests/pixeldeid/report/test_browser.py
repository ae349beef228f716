"""The report renders in headless Chromium offline: no console error, every image loaded."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def test_report_renders_in_headless_chromium(mixed_report: Path, tmp_path: Path):
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"{CHROMIUM} not installed (Debian chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    # a copy away from the output folder proves the report carries everything it shows
    site = tmp_path / "site"
    shutil.copytree(mixed_report.parent, site)
    messages: list[str] = []
    failed: list[str] = []
    external: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console", lambda m: messages.append(f"{m.type}: {m.text}")
                    if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
            page.on("requestfailed", lambda r: failed.append(r.url))
            page.on("request", lambda r: external.append(r.url)
                    if not r.url.startswith("file://") else None)
            page.goto((site / "index.html").as_uri(), wait_until="load")
            images = page.evaluate(
                "() => Array.from(document.images).map(i => [i.getAttribute('src'), "
                "i.complete, i.naturalWidth, i.naturalHeight])")
            title = page.title()
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            if os.environ.get("PIXELDEID_KEEP_SCREENSHOT"):
                shutil.copyfile(shot, os.environ["PIXELDEID_KEEP_SCREENSHOT"])
        finally:
            browser.close()
    assert title == "pixeldeid QC report"
    assert messages == [] and failed == [] and external == []
    assert len(images) >= 4
    for src, complete, w, h in images:
        assert complete and w > 0 and h > 0, src
    import numpy as np
    from PIL import Image

    with Image.open(shot) as im:
        assert im.width == 1200 and im.height > 900  # the whole page, longer than one screen
        assert len(np.unique(np.asarray(im.convert("L")))) > 10  # not blank
