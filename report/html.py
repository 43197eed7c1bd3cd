"""The pages' shared parts: the stylesheet, the page frame, escaping, tables and inline SVG.

Every page is static HTML that reads without JavaScript and without a network: one stylesheet
(`style.css`, written once beside the index) and images beside the pages. The small drawings of
a trailer page (its transition-probability curve) are inline SVG written here: thousands of
them are made per report, where a matplotlib figure would cost ~0.1 s each.
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

CSS = """
:root { --fg: #1d232b; --muted: #5b6470; --line: #d6dbe1; --accent: #b03a5b; --bad: #b3261e; --ok: #1b7f3b; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); }
header { background: #20262e; color: #fff; padding: .6em 1em; }
header a { color: #fff; margin-right: 1em; }
main { max-width: 1100px; margin: 0 auto; padding: .5em 1em 2em; }
h1 { font-size: 1.5em; margin: .6em 0 .3em; } h2 { font-size: 1.2em; margin: 1.4em 0 .4em; }
a { color: #1f5fa8; }
.muted { color: var(--muted); } .bad { color: var(--bad); } .ok { color: var(--ok); }
.note { border-left: 4px solid var(--bad); background: #fbeeee; padding: .4em .8em; margin: .6em 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: .4em 0; }
th, td { border-bottom: 1px solid var(--line); padding: .25em .6em; text-align: left; vertical-align: top; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
img.fig { max-width: 100%; height: auto; display: block; margin: .4em 0; }
svg.curve { width: 100%; height: auto; display: block; background: #fafbfc; border: 1px solid var(--line); }
.strip { display: flex; flex-wrap: wrap; gap: .5em; }
.shot { border: 1px solid var(--line); border-radius: 4px; padding: .3em; }
.shot p { margin: 0 0 .2em; font-size: .8em; color: var(--muted); }
.shot figure { display: inline-block; margin: 0 .2em 0 0; }
.shot img.thumb { width: 96px; height: 54px; object-fit: none; display: block; background: #000; }
.shot figcaption { font-size: .7em; color: var(--muted); }
.bar { background: var(--accent); height: .9em; min-width: 1px; }
.barcell { width: 100%; min-width: 100px; }
table.bars { width: 100%; max-width: 520px; }
.side { display: flex; flex-wrap: wrap; gap: 0 2em; align-items: flex-start; }
.side > div { flex: 1 1 320px; min-width: 0; }
nav.pages a, nav.pages span { margin-right: .5em; }
@media (max-width: 600px) { body { font-size: 14px; } main { padding: .3em .5em 1em; } }
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def rel(target: Path, page: Path) -> str:
    """The link from `page` to `target` (both inside the report folder), with / separators."""
    return Path(os.path.relpath(target, page.parent)).as_posix()


COLLECTION_NAV = (("t12k report: collection", "index.html"), ("stores", "stores.html"))
TRAINING_NAV = (("t12k report: training", "index.html"),)


def page(title: str, body: str, root: Path, path: Path, nav: Sequence[tuple[str, str]] = COLLECTION_NAV) -> str:
    """A whole page: the shared stylesheet (root/style.css) and a header of links (`nav`: label and
    file under `root`; by default the collection's index and stores pages)."""
    links = "".join(f"<a href='{rel(root / target, path)}'>{esc(label)}</a>" for label, target in nav)
    css = rel(root / "style.css", path)
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{esc(title)}</title><link rel='stylesheet' href='{css}'></head><body>"
        f"<header>{links}</header>"
        f"<main><h1>{esc(title)}</h1>\n{body}\n</main></body></html>\n"
    )


def write_page(root: Path, path: Path, title: str, body: str, nav: Sequence[tuple[str, str]] = COLLECTION_NAV) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page(title, body, root, path, nav), encoding="utf-8")
    return path


def table(head: Sequence[str], rows: Iterable[Sequence[object]], numeric: Sequence[int] = (), raw: bool = False) -> str:
    """An HTML table; cells escaped unless `raw` (cells already HTML); `numeric` columns right-aligned."""
    cls = [" class='n'" if i in numeric else "" for i in range(len(head))]
    out = ["<div class='scroll'><table><thead><tr>"]
    out += [f"<th{cls[i]}>{esc(h)}</th>" for i, h in enumerate(head)]
    out.append("</tr></thead><tbody>")
    for row in rows:
        cells = (f"<td{cls[i]}>{c if raw else esc(c)}</td>" for i, c in enumerate(row))
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def note(text: str) -> str:
    """A visible warning where something could not be shown (what is missing or damaged)."""
    return f"<p class='note'>{esc(text)}</p>"


def curve_svg(
    values: np.ndarray, cuts: Sequence[int], threshold: float = 0.5, fps: float = 24.0, width: int = 1000
) -> str:
    """The per-frame transition probabilities as an inline SVG: the curve (max per pixel column,
    so no peak is lost), a dashed line at `threshold` and a vertical line at every cut."""
    v = np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0)
    n, h, pad = len(v), 120, 18
    if n == 0:
        return "<p class='muted'>no frames</p>"
    cols = min(n, width)
    edges = np.linspace(0, n, cols + 1).astype(int)
    peaks = np.maximum.reduceat(v, edges[:-1]) if cols < n else v
    xs = np.linspace(0, width, cols) if cols > 1 else np.zeros(1)
    ys = pad + (1 - np.clip(peaks, 0, 1)) * (h - 2 * pad)
    pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys))
    x_of = width / max(n - 1, 1)
    ty = pad + (1 - threshold) * (h - 2 * pad)
    parts = [
        f"<svg class='curve' viewBox='0 0 {width} {h}' role='img' aria-label='transition probability per frame'>",
        *(f"<line x1='{c * x_of:.1f}' y1='{pad}' x2='{c * x_of:.1f}' y2='{h - pad}' stroke='#2a8' />" for c in cuts),
        f"<line x1='0' y1='{ty:.1f}' x2='{width}' y2='{ty:.1f}' stroke='#888' stroke-dasharray='6 4' />",
        f"<polyline fill='none' stroke='#b03a5b' stroke-width='1.5' points='{pts}' />",
        f"<text x='4' y='{ty - 3:.1f}' font-size='11' fill='#555'>{threshold:g}</text>",
    ]
    seconds = n / fps
    step = next(s for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1e9) if seconds / s <= 10)
    for t in np.arange(0, seconds * 0.96, step):  # no label cut by the right edge
        x = t * fps * x_of
        parts.append(f"<text x='{x + 2:.1f}' y='{h - 4}' font-size='11' fill='#555'>{t:g} s</text>")
    parts.append("</svg>")
    return "".join(parts)


def bars(labels: Sequence[str], values: Sequence[float]) -> str:
    """Horizontal bars as a table (label, bar, value): the numbers read without scripts or images."""
    rows = [
        f"<tr><td>{esc(label)}</td><td class='barcell'><div class='bar' style='width:{100 * float(v):.1f}%'></div>"
        f"</td><td class='n'>{float(v):.3f}</td></tr>"
        for label, v in zip(labels, values)
    ]
    return "<div class='scroll'><table class='bars'><tbody>" + "".join(rows) + "</tbody></table></div>"


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
