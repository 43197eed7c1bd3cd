"""One trailer's page: the normalized video's facts, its genre probabilities (with a checkpoint),
the TransNet V2 curve with its cuts and threshold, and a filmstrip of its shots with the
representative frame of every clip. What is missing or damaged is said where it would show."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from t12k import GENRES
from t12k.errors import describe
from t12k.report.html import bars, curve_svg, esc, human_bytes, note, rel, table, write_page
from t12k.report.thumbs import Strip, make_strip
from t12k.storage import FeatureStore, ShotStore

FPS = 24.0  # the normalized videos' frame rate


@dataclass
class Sources:
    """Where a trailer's pieces are: the fetch rows, the opened stores (the filmstrip's store
    first), the videos, the report folder and, with a checkpoint, the genre predictor."""

    root: Path
    rows: dict[str, dict[str, str]]
    shots: list[ShotStore]
    features: list[FeatureStore]
    videos: dict[str, Path]
    genres: Callable[[str], dict[str, float]] | None = None
    thumbs: bool = True


@dataclass
class TrailerRecord:
    """What the collection pages need of one trailer."""

    mid: str
    status: str = ""
    duration: float | None = None
    shot_lengths: np.ndarray | None = None
    clips: int | None = None
    problems: list[str] = field(default_factory=list)
    genres: dict[str, float] | None = None
    black: int = 0  # clips whose frame is black
    boxed: str = ""  # 'letterboxed', 'pillarboxed' or 'windowboxed' when most clips' frames are

    @property
    def shots(self) -> int | None:
        return None if self.shot_lengths is None else len(self.shot_lengths)


def page_path(root: Path, mid: str) -> Path:
    return root / "t" / f"{mid}.html"


def _num(row: dict[str, str], key: str) -> float | None:
    try:
        return float(row.get(key) or "")
    except ValueError:
        return None


def _facts(mid: str, row: dict[str, str] | None, video: Path | None) -> str:
    if not row:
        return note(f"{mid} has no row in a fetch manifest (videos/manifest.csv): its source facts are unknown")
    w, h = row.get("src_width"), row.get("src_height")
    quality = row.get("quality", "")
    cls = "ok" if quality == "ok" else "bad"
    items = [
        ("status", f"{row.get('status', '')}" + (f": {row['reason']}" if row.get("reason") else "")),
        ("source", f"{w}x{h}, {row.get('src_fps', '?')} fps, {row.get('src_codec', '?')}" if w else "unknown"),
        ("source duration", f"{row['src_duration']} s" if row.get("src_duration") else ""),
        ("normalized", f"{row.get('duration', '?')} s, {row['frames']} frames at 24 fps" if row.get("frames") else ""),
        ("file size", human_bytes(float(row["bytes"])) if row.get("bytes") else ""),
        ("url", row.get("url", "")),
    ]
    out = [(esc(k), esc(v)) for k, v in items if v]
    if quality:
        out.append(("quality (paper's rules)", f"<span class='{cls}'>{esc(quality)}</span>"))
    body = table(["", ""], out, raw=True)
    if video is None and row.get("status") in ("ok", "skipped"):
        body += note(f"the video of {mid} is gone (no {mid}.mp4 in the work folder): no thumbnails")
    return body


def _frame_of(clip: np.ndarray, frames: int | None) -> int:
    f = int(clip[2]) if clip[2] >= 0 else (int(clip[0]) + int(clip[1])) // 2
    return min(f, frames - 1) if frames else f


def _filmstrip(
    mid: str,
    shots: np.ndarray | None,
    clips: np.ndarray,
    strip: Strip,
    path: Path,
    frames: int | None,
) -> str:
    """The shots as boxes, each with the thumbnails of its clips (a clip belongs to the shot its first frame is in)."""
    if shots is None or not len(shots):
        shots = np.array([[0, int(clips[:, 1].max()) if len(clips) else 0]])
    owner = np.searchsorted(shots[:, 0], clips[:, 0], side="right") - 1
    out = ["<div class='strip'>"]
    for s, (start, end) in enumerate(shots):
        mine = np.flatnonzero(owner == s)
        if not len(mine):
            continue
        out.append(f"<div class='shot'><p>shot {s}: frames {start}-{end} ({(end - start + 1) / FPS:.1f} s)</p>")
        for k in mine:
            c = clips[k]
            f = _frame_of(c, frames)
            cap = f"clip {k}: {c[0]}-{c[1]}"
            if strip.looks.get(f) == "black":
                cap += " black"
            if f in strip.cells:
                x, y = strip.offset(f)
                out.append(
                    f"<figure><img class='thumb' src='{rel(strip.path, path)}' alt='clip {k}, frame {f}' "
                    f"style='object-position:-{x}px -{y}px'>"
                    f"<figcaption>{esc(cap)}</figcaption></figure>"
                )
            else:
                out.append(f"<figure><figcaption class='bad'>{esc(cap)}: no frame</figcaption></figure>")
        out.append("</div>")
    out.append("</div>")
    return "".join(out)


def _picture(rec: TrailerRecord, clips: np.ndarray, strip: Strip, frames: int | None) -> str:
    """How the clips' frames look: how many are black, and whether most are letter/pillarboxed."""
    seen = [strip.looks[f] for f in (_frame_of(c, frames) for c in clips) if f in strip.looks]
    if not seen:
        return ""
    rec.black = seen.count("black")
    pictures = [s for s in seen if s != "black"]
    boxes = Counter(s for s in pictures if s)
    if boxes and boxes.most_common(1)[0][1] > len(pictures) / 2:
        rec.boxed = boxes.most_common(1)[0][0]
    said = [f"{rec.black} of {len(seen)} clips' frames are black"] if rec.black else []
    if rec.boxed:
        said.append(f"the picture is {rec.boxed} ({boxes[rec.boxed]} of {len(pictures)} frames have black bars)")
    return f"<p class='bad'>{esc('; '.join(said))}.</p>" if said else "<p class='ok'>No black or boxed frame.</p>"


def _read_shots(src: Sources, mid: str, rec: TrailerRecord) -> tuple[np.ndarray | None, np.ndarray | None, str]:
    for store in src.shots:
        if mid in store:
            try:
                shots, preds = store.trailer(mid)
                return shots, preds, ""
            except Exception as exc:  # noqa: BLE001 - a damaged trailer is shown as such
                rec.problems.append(describe(exc))
                return None, None, note(describe(exc))
    if not src.shots:
        return None, None, note("no shots store in the work folder: no transition curve or shots")
    return None, None, note(f"{mid} is not in the shots store ({src.shots[0].path.name}): no curve or shots")


def _read_clips(src: Sources, mid: str, rec: TrailerRecord) -> tuple[np.ndarray | None, FeatureStore | None, str]:
    notes = ""
    for store in src.features:
        if mid not in store:
            continue
        try:
            return store.read(mid, companion="clips"), store, notes
        except Exception as exc:  # noqa: BLE001
            rec.problems.append(describe(exc))
            notes += note(describe(exc))
    if not src.features:
        notes += note("no feature store in the work folder: no clips to show")
    elif not notes:
        notes += note(f"{mid} is in no feature store: no clips to show")
    return None, None, notes


def _curve(shots: np.ndarray, preds: np.ndarray, threshold: float) -> str:
    cuts = [int(s) for s in shots[1:, 0]]
    return (
        f"<h2>Transitions (TransNet V2)</h2><p>{len(shots)} shots, {len(preds)} frames; "
        f"the curve is the transition probability of each frame, the dashed line the {threshold:g} threshold, "
        "the green lines the cuts.</p>" + curve_svg(preds, cuts, threshold, FPS)
    )


def _genres(src: Sources, mid: str, rec: TrailerRecord) -> str:
    if src.genres is None:
        return ""
    try:
        rec.genres = src.genres(mid)
    except Exception as exc:  # noqa: BLE001
        rec.problems.append(describe(exc))
        return "<h2>Genres</h2>" + note(f"no genre probabilities: {describe(exc)}")
    return "<h2>Genres</h2>" + bars(list(GENRES), [rec.genres[g] for g in GENRES])


def trailer_page(src: Sources, mid: str, neighbours: tuple[str | None, str | None] = (None, None)) -> TrailerRecord:
    """Write t/{mid}.html (and its thumbnails, t/{mid}.jpg); what the collection pages need of it."""
    row = src.rows.get(mid)
    rec = TrailerRecord(mid, status=(row or {}).get("status", ""), duration=_num(row or {}, "duration"))
    path = page_path(src.root, mid)
    video = src.videos.get(mid)
    genres = _genres(src, mid, rec)
    parts = [f"<div class='side'><div><h2>Video</h2>{_facts(mid, row, video)}</div><div>{genres}</div></div>"]
    shots, preds, shot_note = _read_shots(src, mid, rec)
    if shots is not None and preds is not None:
        rec.shot_lengths = (shots[:, 1] - shots[:, 0] + 1).astype(np.int64)
        threshold = float(src.shots[0].settings.get("threshold", 0.5))
        parts.append(_curve(shots, preds, threshold))
    parts.append(shot_note)
    clips, store, clip_note = _read_clips(src, mid, rec)
    parts.append("<h2>Filmstrip</h2>" + clip_note)
    if clips is not None and store is not None:
        rec.clips = len(clips)
        frames = len(preds) if preds is not None else int(_num(row or {}, "frames") or 0) or None
        strip = Strip(path.with_suffix(".jpg"), {}, {})
        if video is not None and src.thumbs:
            try:
                strip = make_strip(video, [_frame_of(c, frames) for c in clips], strip.path)
            except Exception as exc:  # noqa: BLE001
                rec.problems.append(describe(exc))
                parts.append(note(describe(exc)))
        parts.append(
            f"<p>{len(clips)} clips of {esc(store.path.name)}, grouped by shot; each picture is the clip's "
            "representative frame (the middle frame for a 3D backbone).</p>"
        )
        parts.append(_picture(rec, clips, strip, frames))
        parts.append(_filmstrip(mid, shots, clips, strip, path, frames))
    prev, nxt = neighbours
    nav = [f"<a href='{rel(page_path(src.root, p), path)}'>previous: {esc(p)}</a>" for p in [prev] if p]
    nav += [f"<a href='{rel(page_path(src.root, n), path)}'>next: {esc(n)}</a>" for n in [nxt] if n]
    body = f"<nav class='pages'>{' '.join(nav)}</nav>" + "".join(parts)
    write_page(src.root, path, f"Trailer {mid}", body)
    return rec
