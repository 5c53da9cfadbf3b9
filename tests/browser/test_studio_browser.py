"""The Studio in a real browser: Voila serves it, Chromium trains from the Train button."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "studio.png"


def _offline_icon_font(msg) -> bool:
    # Voila's widget manager asks a CDN for Font Awesome; offline that one request fails.
    # Only that resource failure is tolerated; every other console error fails the test.
    url = (msg.location or {}).get("url", "")
    return "ERR_NAME_NOT_RESOLVED" in msg.text and "fontawesome" in url


def _number(text: str) -> float:
    m = re.search(r"([0-9]*\.[0-9]+)", text)
    return float(m.group(1)) if m else -1.0


def test_train_then_stop_in_voila(voila_url, browser):
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"{m.text} @ {(m.location or {}).get('url', '')}")
            if m.type == "error" and not _offline_icon_font(m) else None)
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    page.goto(voila_url, timeout=120_000)

    train = page.locator(".td-train")
    train.wait_for(timeout=120_000)
    # The first screen: digits task, a sample grid, the default chain, a cosine schedule.
    assert "image-classification" in page.locator("select").first.input_value()
    page.locator(".td-samples").wait_for()
    assert page.locator(".td-chain").inner_text().strip() == "clip_norm(1.0) → adam → scale_lr(3e-3)"
    page.wait_for_selector(".td-schedule-chart .scatterlayer .trace path.js-line", timeout=60_000)
    page.wait_for_selector(".td-train-chart .main-svg", timeout=60_000)

    # The augmentation preview: adding a step from the palette, then reseeding, redraws the grid.
    grid = page.locator("img.td-aug-grid")
    page.wait_for_function("() => { const g = document.querySelector('img.td-aug-grid'); return g && g.src; }",
                           timeout=60_000)
    steps = page.locator(".td-aug-step").count()
    before = grid.get_attribute("src")
    page.locator(".td-aug-picker select").select_option("flip_y")
    page.locator(".td-aug-add").click()
    page.wait_for_function(f"() => document.querySelectorAll('.td-aug-step').length == {steps + 1}", timeout=30_000)
    page.wait_for_function("(b) => document.querySelector('img.td-aug-grid').src != b", arg=before, timeout=30_000)
    before = grid.get_attribute("src")
    page.locator(".td-aug-reseed").click()
    page.wait_for_function("(b) => document.querySelector('img.td-aug-grid').src != b", arg=before, timeout=30_000)
    assert "flip_y" in page.locator(".td-aug-timing-box").inner_text()

    # Plenty of epochs, so the run is still going when Stop is pressed.
    epochs = page.locator(".td-epochs input")
    epochs.fill("200")
    epochs.press("Enter")
    train.click()

    page.wait_for_function(
        """() => { const el = document.querySelector('.td-accuracy');
                   const m = el && el.innerText.match(/([0-9]*\\.[0-9]+)/);
                   return m && parseFloat(m[1]) > 0.9; }""", timeout=180_000, polling=250)
    # The label and the chart are separate widgets; plotly draws a moment after the label.
    # Row 2 of the chart (axes x2/y2) holds the accuracy; row 1 the losses.
    page.wait_for_selector(".td-train-chart .subplot.x2y2 .scatterlayer .trace .points path", timeout=30_000)
    page.wait_for_selector(".td-train-chart .subplot.xy .scatterlayer .trace path.js-line", timeout=30_000)
    # The schedule plot, a second figure updated from the trainer thread, marks the run's step.
    page.wait_for_function(
        """() => Array.from(document.querySelectorAll('.td-schedule-chart .annotation-text'))
                     .some(el => /^\\s*step [0-9]+$/.test(el.textContent))""", timeout=30_000, polling=250)
    # The epoch table fills in, and the prediction grid after an epoch is drawn.
    page.wait_for_function("() => document.querySelectorAll('.td-epoch-table tr').length >= 2", timeout=30_000)
    page.wait_for_function("() => { const p = document.querySelector('img.td-predictions'); return p && p.src; }",
                           timeout=30_000)
    assert "status: running" in page.locator(".td-status").inner_text()
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    page.locator(".td-stop").click()
    page.wait_for_function("() => document.querySelector('.td-status').innerText.includes('stopped')",
                           timeout=30_000, polling=100)
    progress = page.locator(".td-progress").inner_text()
    assert not progress.startswith("epoch 200/200"), progress
    assert _number(page.locator(".td-accuracy").inner_text()) > 0.9
    assert errors == [], f"JavaScript errors in the page: {errors}"
    page.close()
