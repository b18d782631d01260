"""End to end in a real browser: `cnnlab serve` on a free loopback port, headless Chromium draws a
digit with mouse events, and the page must show a prediction and 10 bars. The page is opened from
the URL the server prints, with its token, as a person would; the Train tab then trains with it.

Chromium is Debian's (``make test`` installs the ``chromium`` package when it is missing), driven by
the playwright package with ``executable_path``: no browser is downloaded. The screenshot is kept as
a test artefact in ``test-artifacts/serve-page.png``.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cnnlab.training.presets import PRESETS
from tests.helpers import free_port, wait_until_up

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# Chromium flags for a sandboxed, offline machine: no background connections, no GPU, a fresh profile.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def chromium_path() -> str:
    found = os.environ.get("CNNLAB_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("Chromium not found: install Debian's 'chromium' package (make test does) or set CNNLAB_CHROMIUM")
    return found


@pytest.fixture(scope="module")
def server(mnist_run, tmp_path_factory):
    """`cnnlab serve` in its own process, on a free port; yields the page's URL, and the URL it
    printed: the same with ``?token=...``, the token that lets the page start and stop trainings."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "cnnlab", "serve", str(mnist_run), "--port", str(port),
                                "--workers", "1",
                                "--runs", str(tmp_path_factory.mktemp("browser") / "page-runs")],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_up(url + "healthz", process)
        printed = re.search(r" at (http://\S+)  \(", process.stdout.readline())[1]
        assert printed.startswith(url + "?token=")
        yield url, printed
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_drawing_a_digit_shows_a_prediction_and_ten_bars(server):
    from playwright.sync_api import expect, sync_playwright

    url, printed = server

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone-sized screen
        failed, refused = [], []
        page.on("requestfailed", lambda request: failed.append(request.url))
        page.on("response", lambda response: response.status >= 400 and refused.append((response.status, response.url)))
        page.goto(printed)
        expect(page.locator("#model-facts")).to_contain_text("cnn-fast")
        assert page.url == url, "the token is taken out of the address bar"
        # Before any drawing: a placeholder, not an <img> without a source (a broken-image icon).
        expect(page.locator("#seen")).to_be_hidden()
        expect(page.locator("#seen-empty")).to_be_visible()
        box = page.locator("#pad").bounding_box()
        assert box["x"] + box["width"] <= 390, "the canvas must fit a phone's width"
        draw_a_one(page, box)
        expect(page.locator("#label")).to_have_text("1", timeout=10_000)
        bars = page.locator("#bars .bar")
        expect(bars).to_have_count(10)
        top = page.locator("#bars .bar.top")
        assert top.get_attribute("data-label") == "1"
        page.wait_for_timeout(300)  # the bars' width transition
        fill, track = (top.locator(part).bounding_box()["width"] for part in (".fill", ".track"))
        assert fill > 0.5 * track, "the most likely class's bar is drawn at its probability's length"
        assert page.locator("#seen").get_attribute("src").startswith("data:image/png;base64,")
        expect(page.locator("#seen")).to_be_visible()
        expect(page.locator("#seen-empty")).to_be_hidden()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "serve-page.png"), full_page=True)
        page.click("#clear")
        expect(page.locator("#label")).to_have_text("\u2013")
        page.click("#tab-train-button")  # the Train tab fits the phone too: nothing wider than the screen
        expect(page.locator("#t-preset option")).to_have_count(len(PRESETS))
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.screenshot(path=str(ARTIFACTS / "train-tab-phone.png"), full_page=True)
        browser.close()
    assert not failed, f"requests failed: {failed}"
    assert not refused, f"the page's own requests were refused (the console shows them): {refused}"


def test_inside_the_network_shows_every_layer_a_heatmap_and_values_on_hover(server):
    from playwright.sync_api import expect, sync_playwright

    url, _ = server

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(url)  # predictions need no token
        expect(page.locator("#method option")).to_have_count(4)
        expect(page.locator("#heatmap")).to_be_hidden()
        draw_a_one(page, page.locator("#pad").bounding_box())
        expect(page.locator("#label")).to_have_text("1", timeout=10_000)
        expect(page.locator("#heatmap")).to_be_visible()
        layers = page.locator("#layers figure")
        expect(layers).to_have_count(4)  # cnn-fast: 2 conv layers, 2 dense
        expect(layers.nth(0).locator("figcaption")).to_contain_text("conv 1: 16 maps of 20x20")
        expect(layers.nth(3).locator("figcaption")).to_contain_text("dense 2: a score per class")
        maps = layers.nth(1).locator("img")
        expect(maps).to_be_visible()
        page.wait_for_function("document.querySelector('#layers figure:nth-child(2) img').naturalWidth > 0")
        maps.hover(position={"x": 2, "y": 2})  # the first map's corner (scrolled into view)
        expect(page.locator("#tip")).to_be_visible()
        expect(page.locator("#tip")).to_contain_text("conv 2, channel 1 of 32:")
        bars = layers.nth(3).locator("canvas")
        bars.hover(position={"x": bars.bounding_box()["width"] * 0.15, "y": 40})  # the second of 10 classes
        expect(page.locator("#tip")).to_contain_text("dense 2, class 1:")
        before = page.locator("#heatmap").get_attribute("src")
        page.select_option("#method", "gradcam")
        expect(page.locator("#heatmap")).not_to_have_attribute("src", before, timeout=10_000)
        expect(page.locator("#heat-legend")).to_contain_text("where the last conv block looked")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "inside-the-network.png"), full_page=True)
        browser.close()


@pytest.mark.parametrize("note", [None, "this server runs 2 worker processes; training from this page needs one "
                                          "to own it: start cnnlab serve --workers 1"])
def test_a_server_without_the_train_tab_shows_none(server, note):
    """What --no-train's server answers (GET /api/model's training: false, /api/train/options 404),
    and one with several workers (the same, and a note that says how to get the Train tab)."""
    from playwright.sync_api import expect, sync_playwright

    _, printed = server

    def without_training(route):
        if route.request.url.endswith("/api/model"):
            route.fulfill(json={**route.fetch().json(), "training": False, **({"training_note": note} if note else {})})
        else:
            route.fulfill(status=404, json={"error": "Not Found"})

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.route("**/api/model", without_training)
        page.route("**/api/train/options", without_training)
        page.goto(printed)
        expect(page.locator("#model-facts")).to_contain_text("cnn-fast")
        expect(page.locator("#tab-train-button")).to_be_hidden()
        expect(page.locator("#tab-use-button")).to_be_visible()
        if note:
            expect(page.locator("#training-note")).to_have_text(f"No Train tab: {note}.")
            page.screenshot(path=str(ARTIFACTS / "no-train-tab-with-workers.png"))
        else:
            expect(page.locator("#training-note")).to_be_hidden()
        browser.close()


def test_the_train_tab_trains_while_the_page_watches_then_serves_the_new_model(server):
    """Runs last among the page's tests: it replaces the model the server answers with. The page
    opened from the printed URL trains with its token; one opened without it is refused, and says
    where the token is."""
    from playwright.sync_api import expect, sync_playwright

    url, printed = server

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        # A page opened without the token (each tab keeps its own) says where it is, and cannot start.
        stranger = browser.new_page()
        stranger.goto(url)
        stranger.click("#tab-train-button")
        expect(stranger.locator("#t-status")).to_contain_text("needs the server's token: open the URL that cnnlab "
                                                              "serve printed")
        stranger.click("#t-start")
        expect(stranger.locator("#t-status")).to_contain_text("needs its token: open the URL that cnnlab serve "
                                                              "printed (http://127.0.0.1:")
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(printed)
        page.click("#tab-train-button")
        expect(page.locator("#tab-train")).to_be_visible()
        expect(page.locator("#t-preset option")).to_have_count(len(PRESETS))
        page.fill("#t-epochs", "3")
        page.fill("#t-limit", "6000")
        page.click("#t-start")
        expect(page.locator("#t-stop")).to_be_enabled(timeout=30_000)  # a child process starts the training
        expect(page.locator("#t-lines")).to_contain_text("Training cnn-fast", timeout=30_000)
        # Points arrive while it runs: read them twice, a second apart, before the run ends.
        first = page.evaluate("points.length")
        page.wait_for_timeout(1000)
        later, lines = page.evaluate("points.length"), page.locator("#t-lines").text_content()
        assert later > first and "Test error" not in lines, (first, later, lines)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "train-tab-running.png"), full_page=True)
        # A second start, from another page, while this one runs: 409, said on that page.
        other = browser.new_page()
        other.goto(printed)
        other.click("#tab-train-button")
        # It shows the training under way once loaded (else its late start would cover the answer below).
        expect(other.locator("#t-status")).to_contain_text("Training into")
        other.evaluate("document.getElementById('train-form').requestSubmit()")
        expect(other.locator("#t-status")).to_contain_text("already running")
        expect(page.locator("#t-status")).to_contain_text("Done:", timeout=120_000)
        expect(page.locator("#t-lines")).to_contain_text("Epoch 3/3")
        expect(page.locator("#t-filters-caption")).to_have_text("First-layer filters after epoch 3")
        page.screenshot(path=str(ARTIFACTS / "train-tab-done.png"), full_page=True)
        # The new model answers a new drawing.
        page.click("#tab-use-button")
        expect(page.locator("#model-facts")).to_contain_text("page-fast-mnist")
        draw_a_one(page, page.locator("#pad").bounding_box())
        expect(page.locator("#label")).to_have_text("1", timeout=10_000)
        browser.close()


def test_the_api_docs_render_with_the_network_blocked(server):
    """/docs is Swagger UI; its script and styles come from the app, so it renders offline."""
    from playwright.sync_api import expect, sync_playwright

    url, _ = server

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page()
        elsewhere = []

        def only_the_app(route):
            if route.request.url.startswith(url):
                route.continue_()
            else:
                elsewhere.append(route.request.url)
                route.abort()

        page.route("**/*", only_the_app)
        page.goto(url + "docs")
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("cnnlab", timeout=10_000)
        expect(page.locator(".opblock-summary-path", has_text="/api/predict")).to_be_visible()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "api-docs.png"), full_page=True)
        browser.close()
    assert not elsewhere, f"the docs page asked for something outside the app: {elsewhere}"


def draw_a_one(page, box: dict) -> None:
    """A vertical stroke down the middle of the canvas, with mouse events."""
    x = box["x"] + box["width"] / 2
    top, bottom = box["y"] + box["height"] * 0.15, box["y"] + box["height"] * 0.85
    page.mouse.move(x, top)
    page.mouse.down()
    for step in range(1, 21):
        page.mouse.move(x + step * 0.4, top + (bottom - top) * step / 20)
    page.mouse.up()
