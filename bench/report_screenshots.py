"""Screenshots of the three kinds of report page, taken in headless Chromium (Playwright
driving the system's chromium: no browser download).

    python bench/report_screenshots.py REPORT_DIR [--trailer ID] [--run-report RUN_REPORT_DIR] [--out DIR]

writes collection.png (index.html), trailer.png (the first trailer page with a filmstrip, or
--trailer's) and training.png (--run-report's index, else the first training run of the report),
each at a phone width too (*-phone.png). `t12k demo`'s report has all three:

    python bench/report_screenshots.py demo-out/report --trailer real000
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        raise SystemExit("no chromium on PATH; install it (Debian: apt-get install chromium)")
    return exe


def first_trailer_with_thumbs(report: Path) -> Path:
    for page in sorted((report / "t").glob("*.html")):
        if "class='thumb'" in page.read_text(encoding="utf-8"):
            return page
    raise SystemExit(f"no trailer page with thumbnails in {report}")


def shoot(pages: dict[str, Path], out: Path, width: int, height: int = 900) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    written = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        for name, page_path in pages.items():
            for suffix, w in (("", width), ("-phone", 390)):
                page = browser.new_page(viewport={"width": w, "height": height})
                page.goto(page_path.resolve().as_uri())
                page.evaluate("document.querySelectorAll('img').forEach(i => i.loading = 'eager')")
                page.wait_for_load_state("networkidle")
                target = out / f"{name}{suffix}.png"
                page.screenshot(path=str(target), full_page=False)
                page.close()
                written.append(target)
        browser.close()
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", type=Path, help="folder written by `t12k report WORK`")
    ap.add_argument("--run-report", type=Path, help="folder written by `t12k report RUN_DIR`")
    ap.add_argument("--out", type=Path, default=Path("report-screenshots"))
    ap.add_argument("--width", type=int, default=1000)
    ap.add_argument("--height", type=int, default=900)
    ap.add_argument("--trailer", help="the trailer whose page to take (default: the first with thumbnails)")
    a = ap.parse_args()
    trailer = a.report / "t" / f"{a.trailer}.html" if a.trailer else first_trailer_with_thumbs(a.report)
    pages = {"collection": a.report / "index.html", "trailer": trailer}
    runs = sorted(a.report.glob("runs/*/index.html"))  # a work folder's training runs have pages in its report
    if a.run_report or runs:
        pages["training"] = a.run_report / "index.html" if a.run_report else runs[0]
    for path in shoot(pages, a.out, a.width, a.height):
        print(path)


if __name__ == "__main__":
    main()
