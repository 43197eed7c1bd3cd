"""`t12k predict --html PAGE`: one trailer's page, standalone (its stylesheet inline): the ten
genre bars, the shots and clips the prediction came from, and the seconds each step took."""

from __future__ import annotations

from pathlib import Path

from t12k import GENRES
from t12k.report.html import CSS, bars, esc, table


def predict_page(res: dict, path: Path) -> Path:
    """Write the page of `predict_trailer`'s result `res` to `path`."""
    probs = res["probabilities"]
    order = sorted(GENRES, key=lambda g: -probs[g])
    facts = [
        ("source", res.get("source", "")),
        ("shots", res.get("shots", "")),
        ("frames", res.get("frames", "")),
        ("clips", res.get("clips", "")),
        *((f"seconds: {k}", f"{v:.1f}") for k, v in (res.get("seconds") or {}).items()),
    ]
    title = f"Genres of {Path(str(res.get('source', 'trailer'))).name}"
    body = (
        "<h2>Genre probabilities</h2>"
        + bars(order, [probs[g] for g in order])
        + "<h2>Trailer</h2>"
        + table(["", ""], facts)
    )
    html = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"<main><h1>{esc(title)}</h1>{body}</main></body></html>\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path
