"""The collection pages: the index (trailers per status and stage, failures grouped by reason,
the paper's quality rules, the distributions, the stores in brief) and the trailer list, paged
so that a 12,000-trailer collection opens at once."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from t12k import GENRES
from t12k.pipeline.fetch.quality import QUALITY_MIN_LINES, QUALITY_SECONDS, rules_text
from t12k.report.figures import clips_png, duration_png, shots_png
from t12k.report.html import esc, note, rel, table, write_page
from t12k.report.stores import StoreFacts
from t12k.report.trailer import TrailerRecord, page_path

PAGE_SIZE = 250  # trailers per list page
SHOWN_IDS = 30  # ids listed per failure group or rule on the index


@dataclass
class Collection:
    """The manifests' view of the collection: stage -> id -> its row."""

    stages: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    records: list[TrailerRecord] = field(default_factory=list)
    pages: set[str] = field(default_factory=set)  # ids with a page


def _reason_key(row: dict[str, str]) -> str:
    if row.get("error"):
        return row["error"]
    reason = row.get("reason", "") or "(no reason recorded)"
    return re.split(r"[:;(\[]", reason, maxsplit=1)[0].strip()[:80] or reason[:80]


def _id_links(ids: Sequence[str], c: Collection, root: Path, path: Path, limit: int | None = SHOWN_IDS) -> str:
    shown = ids if limit is None else ids[:limit]
    links = [f"<a href='{rel(page_path(root, m), path)}'>{esc(m)}</a>" if m in c.pages else esc(m) for m in shown]
    more = f" ... and {len(ids) - len(shown)} more (<a href='{rel(root / 'failures.html', path)}'>all</a>)"
    return ", ".join(links) + (more if len(ids) > len(shown) else "")


def _status_table(c: Collection) -> str:
    statuses = sorted({r["status"] for rows in c.stages.values() for r in rows.values()})
    rows = []
    for stage, by_id in c.stages.items():
        counts = Counter(r["status"] for r in by_id.values())
        rows.append([stage, len(by_id), *(counts.get(s, 0) for s in statuses)])
    return table(["stage", "trailers", *statuses], rows, numeric=range(1, len(statuses) + 2))


def _failures(c: Collection) -> dict[tuple[str, str], list[tuple[str, str]]]:
    groups: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for stage, by_id in c.stages.items():
        for mid, row in by_id.items():
            if row["status"] in ("failed", "rejected"):
                groups[(stage, _reason_key(row))].append((mid, row.get("reason", "")))
    return dict(sorted(groups.items(), key=lambda kv: -len(kv[1])))


def _failures_html(c: Collection, root: Path, path: Path, limit: int | None) -> str:
    groups = _failures(c)
    if not groups:
        return "<p class='ok'>No trailer failed.</p>"
    rows = []
    for (stage, key), items in groups.items():
        ids = [m for m, _ in items]
        rows.append([esc(stage), esc(key), str(len(ids)), esc(items[0][1]), _id_links(ids, c, root, path, limit)])
    return table(["stage", "reason", "trailers", "first reason in full", "ids"], rows, numeric=(2,), raw=True)


def _rule_of(problem: str) -> str:
    return re.sub(r"\s*\(.*\)$", "", problem.strip())


def _quality_html(c: Collection, root: Path, path: Path) -> str:
    fetch = c.stages.get("fetch", {})
    rules: dict[str, list[str]] = defaultdict(list)
    judged = 0
    for mid, row in fetch.items():
        q = row.get("quality", "")
        judged += bool(q)
        if q and q != "ok":
            for problem in q.split(";"):
                rules[_rule_of(problem)].append(mid)
    if not judged:
        return "<p class='muted'>No fetch manifest records quality.</p>"
    breaking = {m for ids in rules.values() for m in ids}
    rules_said = rules_text(QUALITY_SECONDS, QUALITY_MIN_LINES)
    head = f"<p>{len(breaking)} of {judged} fetched trailers break the paper's quality rules ({rules_said}).</p>"
    rows = [[esc(rule), str(len(ids)), _id_links(ids, c, root, path)] for rule, ids in sorted(rules.items())]
    return head + (table(["rule broken", "trailers", "ids"], rows, numeric=(1,), raw=True) if rows else "")


def _picture_html(c: Collection, root: Path, path: Path) -> str:
    """Trailers whose frames are mostly letter/pillarboxed, and those with black clips."""
    boxed: dict[str, list[str]] = defaultdict(list)
    for r in c.records:
        if r.boxed:
            boxed[r.boxed].append(r.mid)
    black = sorted((r for r in c.records if r.black), key=lambda r: -r.black / max(r.clips or 1, 1))
    rows = [[esc(kind), str(len(ids)), _id_links(ids, c, root, path)] for kind, ids in sorted(boxed.items())]
    if black:
        ids = [r.mid for r in black]
        rows.append(["with black clips (most first)", str(len(ids)), _id_links(ids, c, root, path)])
    if not rows:
        return "<p class='ok'>No trailer is letterboxed or pillarboxed, and no clip's frame is black.</p>"
    return table(["picture", "trailers", "ids"], rows, numeric=(1,), raw=True)


def _figures_html(c: Collection, root: Path, path: Path) -> str:
    img = root / "img"
    img.mkdir(parents=True, exist_ok=True)
    out = []
    durations = np.array([r.duration for r in c.records if r.duration is not None], dtype=np.float64)
    lengths = [r.shot_lengths for r in c.records if r.shot_lengths is not None and len(r.shot_lengths)]
    clips = np.array([r.clips for r in c.records if r.clips is not None], dtype=np.int64)
    figs = [
        (durations.size, lambda: duration_png(durations, img / "durations.png"), "trailer durations", "no durations"),
        (
            len(lengths),
            lambda: shots_png(np.concatenate(lengths), len(lengths), img / "shots.png"),
            "shot lengths (Figure 8)",
            "no shots store",
        ),
        (clips.size, lambda: clips_png(clips, img / "clips.png"), "clips per trailer", "no feature store"),
    ]
    for n, draw, alt, missing in figs:
        if n:
            out.append(f"<img class='fig' src='{rel(draw(), path)}' alt='{esc(alt)}' width='700' height='320'>")
        else:
            out.append(note(f"{alt}: {missing} to draw them from"))
    if durations.size:
        out.append(f"<p>Duration: mean {durations.mean():.1f} s, median {np.median(durations):.1f} s.</p>")
    if clips.size:
        out.append(f"<p>Clips per trailer: mean {clips.mean():.1f}, {int(clips.sum())} clips in all.</p>")
    return "".join(out)


def _stores_brief(facts: list[StoreFacts], root: Path, path: Path) -> str:
    if not facts:
        return note("no shots or feature store found in the work folder")
    rows = [
        [
            esc(f.path.name),
            esc(f.kind or "?"),
            esc(f.settings.get("backbone") or f.settings.get("detector") or ""),
            str(f.trailers),
            f"<span class='{'ok' if f.whole else 'bad'}'>{esc(f.health())}</span>",
        ]
        for f in facts
    ]
    link = f"<p><a href='{rel(root / 'stores.html', path)}'>All the stores' facts</a></p>"
    return table(["store", "kind", "backbone / detector", "trailers", "verify"], rows, numeric=(3,), raw=True) + link


def list_pages(c: Collection, root: Path) -> list[Path]:
    """list-1.html, list-2.html, ...: PAGE_SIZE trailers each, with links to every other list page."""
    recs = c.records
    n_pages = max(1, -(-len(recs) // PAGE_SIZE))
    paths = [root / f"list-{i + 1}.html" for i in range(n_pages)]
    with_genres = any(r.genres for r in recs)
    for i, path in enumerate(paths):
        nav = " ".join(
            f"<span>{j + 1}</span>" if j == i else f"<a href='{p.name}'>{j + 1}</a>" for j, p in enumerate(paths)
        )
        rows = []
        for r in recs[i * PAGE_SIZE : (i + 1) * PAGE_SIZE]:
            link = f"<a href='{rel(page_path(root, r.mid), path)}'>{esc(r.mid)}</a>" if r.mid in c.pages else esc(r.mid)
            top = max(GENRES, key=lambda g: r.genres[g]) if r.genres else ""
            row = [link, esc(r.status), "" if r.duration is None else f"{r.duration:.1f}"]
            row += [str(r.shots if r.shots is not None else ""), str(r.clips if r.clips is not None else "")]
            row += [esc(top)] if with_genres else []
            row.append(f"<span class='bad'>{esc('; '.join(r.problems))}</span>" if r.problems else "")
            rows.append(row)
        head = ["trailer", "fetch status", "seconds", "shots", "clips", *(["top genre"] if with_genres else [])]
        head.append("problems")
        first, last = i * PAGE_SIZE + 1, min((i + 1) * PAGE_SIZE, len(recs))
        body = f"<p>Trailers {first}-{last} of {len(recs)}.</p><nav class='pages'>Pages: {nav}</nav>"
        body += table(head, rows, numeric=(2, 3, 4), raw=True)
        write_page(root, path, f"Trailers, page {i + 1} of {n_pages}", body)
    return paths


def index_page(
    c: Collection,
    facts: list[StoreFacts],
    root: Path,
    work: Path,
    problems: list[str],
    runs: Sequence[tuple[str, Path]] = (),
) -> Path:
    """index.html and failures.html (every failed id)."""
    path = root / "index.html"
    lists = list_pages(c, root)
    n_pages = len(lists)
    parts = [f"<p>Work folder <code>{esc(work)}</code>: {len(c.records)} trailers.</p>"]
    parts += [note(p) for p in problems]
    parts.append(f"<p><a href='{lists[0].name}'>All trailers</a> ({n_pages} page{'s' * (n_pages > 1)}).</p>")
    parts.append("<h2>Trailers per status</h2>" + (_status_table(c) if c.stages else note("no manifest found")))
    parts.append("<h2>Failures, by reason</h2>" + _failures_html(c, root, path, SHOWN_IDS))
    parts.append("<h2>Quality</h2>" + _quality_html(c, root, path))
    parts.append("<h2>Picture (from the clips' frames)</h2>" + _picture_html(c, root, path))
    parts.append("<h2>Distributions</h2>" + _figures_html(c, root, path))
    parts.append("<h2>Stores</h2>" + _stores_brief(facts, root, path))
    if runs:
        items = "".join(f"<li><a href='{rel(page, path)}'>{esc(name)}</a></li>" for name, page in runs)
        parts.append(f"<h2>Training runs</h2><ul>{items}</ul>")
    write_page(root, path, "Collection", "".join(parts))
    fail = root / "failures.html"
    write_page(root, fail, "Failures, by reason", _failures_html(c, root, fail, None))
    return path
