"""The report in a real browser: headless Chromium (the system's, driven by Playwright) opens
every page of a run folder's report, at a desktop and a phone width: no console error, no
request leaves the report folder, every image loads, every link resolves to a page, a trailer
page holds one thumbnail per clip, nothing is wider than a phone, and the numbers read with
JavaScript off."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

pytest.register_assert_rewrite("run_corpus", "report_work")

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e .[test])")
if CHROMIUM is None:
    pytest.skip("no chromium on PATH (Debian: apt-get install chromium; .ci/run installs it)", allow_module_level=True)

import report_work as rw  # noqa: E402

from t12k.report import build_report  # noqa: E402
from t12k.storage import FeatureStore  # noqa: E402

# each <img> fetched again by the page and decoded: lazy images below the fold count too
IMAGES_LOAD = """async () => Promise.all([...document.images].map(img => new Promise(done => {
  const probe = new Image();
  probe.onload = () => done([img.getAttribute('src'), probe.naturalWidth]);
  probe.onerror = () => done([img.getAttribute('src'), 0]);
  probe.src = img.src;
})))"""


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The report of the run folder with a training run in it (the three kinds of page)."""
    tmp = tmp_path_factory.mktemp("report")
    work = rw.copy(tmp / "work")
    shutil.copytree(rw.trained().parent, work / "run")
    build_report(work, tmp / "out", rw.trained())
    return tmp / "out"


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def _visit(browser, page_path: Path, width: int, javascript: bool = True) -> tuple[object, list[str], list[str]]:
    context = browser.new_context(viewport={"width": width, "height": 800}, java_script_enabled=javascript)
    page = context.new_page()
    errors: list[str] = []
    outside: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: errors.append(f"failed: {r.url}"))
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith("file://") else None)
    page.goto(page_path.as_uri(), wait_until="load")
    return page, errors, outside


def test_every_page_loads_clean_with_its_images_and_links(report, browser):
    pages = sorted(report.rglob("*.html"))
    assert len(pages) == 7 + 4 + 1  # trailers, index, list-1, failures, stores, the training run
    store = FeatureStore.open(rw.work() / "features" / rw.STORE)
    for path in pages:
        page, errors, outside = _visit(browser, path, 1000)
        images = page.evaluate(IMAGES_LOAD)
        assert all(w > 0 for _, w in images), f"{path.name}: images that do not load: {images}"
        hrefs = page.eval_on_selector_all("a[href]", "els => els.map(a => a.href)")
        for href in hrefs:
            target = Path(unquote(urlparse(href).path))
            assert href.startswith("file://") and target.is_file(), f"{path.name}: dead link {href}"
        css = page.evaluate("getComputedStyle(document.querySelector('header')).backgroundColor")
        assert css == "rgb(32, 38, 46)", f"{path.name}: the stylesheet did not load"
        if path.parent.name == "t" and path.stem in store:
            thumbs = page.locator("img.thumb").count()
            assert thumbs == len(store.read(path.stem)) > 0, path.name
            assert page.locator("svg.curve polyline").count() == 1
        assert not errors and not outside, f"{path.name}: {errors} {outside}"
        page.context.close()


def test_pages_fit_a_phone(report, browser):
    pages = ("index.html", "t/r2.html", "stores.html", "list-1.html", "runs/run/index.html")
    for path in (report / p for p in pages):
        page, errors, _ = _visit(browser, path, 390)
        over = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert over <= 0 and not errors, f"{path.name} is {over} px wider than a phone"
        page.context.close()


def test_numbers_read_without_javascript(report, browser):
    page, errors, _ = _visit(browser, report / "t" / "r1.html", 1000, javascript=False)
    text = page.inner_text("main")
    assert "2 shots, 70 frames" in text and "thriller" in text and "128x72" in text
    assert page.locator("table.bars tr").count() == 10 and not errors
    page.context.close()
