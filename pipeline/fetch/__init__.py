"""Fetching a collection: read a list of (id, URL), download each with yt-dlp, normalize it.

`read_items` reads the Trailers12k `metadata.json`, CSV/TSV, JSON, JSONL or a text file of
URLs and refuses malformed rows, unsafe ids and duplicate ids with the file and line;
`select_labelled` keeps the ids of an `mtgc.csv` (in its order) from such a list.

`fetch_collection` turns the items into `OUT/{id}.mp4` (H.264, constant 24 fps) and one row
per id in `OUT/manifest.csv`, with the settings of a `FetchConfig`:

- downloads run in a thread pool (`workers` at once), paced politely: at least `sleep`
  seconds between the starts of two downloads (all workers together) and yt-dlp's pause
  between the requests of one extraction; transient network errors are retried with
  exponential backoff, permanent ones (removed, private, geo-blocked, age-restricted, 404,
  ...) are recorded at once with their reason; repeated "confirm you are not a bot" answers
  stop the run before the site bans the address; a download is stopped when its file passes
  `max_filesize` (announced or not) or when it passes its deadline (`download_deadline`, by
  default sized from the video's duration), and recorded as too-large or too-slow;
- normalization (probe, ffmpeg, check, checksum) runs in worker processes, so several
  trailers re-encode at once on all cores while the next ones download;
- files appear whole or not at all: downloads and re-encodes go to temporary names in OUT
  (marked `.t12k-tmp`) and are renamed when complete; a killed run's leftovers are removed
  when the next run starts (one run per folder at a time, enforced with a lock file, or one
  task per shard: `shard`, `--shard K/N`), and a re-run skips ids whose video is there and
  passes its check;
- Ctrl-C stops downloads and ffmpeg, removes the temporary files and keeps the manifest
  consistent; the paper's quality rules (60 to 210 s, at least 480p) are reported per
  trailer and, with `enforce_quality`, keep failing trailers out of OUT.

The modules, in the order of the data:

- `ids`: the item type, ids from URLs, YouTube video ids;
- `lists`: reading the list files;
- `config`: `FetchConfig`, the settings;
- `quality`: the paper's quality rules;
- `pacing`: pauses between downloads and requests;
- `classify`: what a yt-dlp error means (worth a retry or not, and why);
- `bounds`: the size cap and the deadline of one download (a watchdog that cuts its sockets);
- `download`: one trailer's download with yt-dlp, and its retries;
- `procpool` and `normalizer`: the worker processes that re-encode downloads;
- `records`: the manifest rows and the summary;
- `resume`: the folder lock, a killed run's leftovers, videos already there;
- `scheduler`: the run itself, `fetch_collection`.
"""

from typing import TYPE_CHECKING

from t12k._lazy import lazy_exports

if TYPE_CHECKING:  # imported on first use (t12k._lazy): the package's light modules load alone
    from t12k.pipeline.fetch.command import fetch_collection
    from t12k.pipeline.fetch.config import FetchConfig, default_normalize_workers
    from t12k.pipeline.fetch.ids import FetchItem, id_from_url, youtube_url
    from t12k.pipeline.fetch.lists import collect_items, read_items, select_labelled
    from t12k.pipeline.fetch.pacing import DEFAULT_SLEEP, DEFAULT_SLEEP_REQUESTS
    from t12k.pipeline.fetch.quality import QUALITY_MIN_LINES, QUALITY_SECONDS, quality_report, resolution_lines
    from t12k.pipeline.fetch.records import MANIFEST_FIELDS, FetchSummary

__getattr__ = lazy_exports(
    __name__,
    {
        "FetchConfig": "config",
        "default_normalize_workers": "config",
        "FetchItem": "ids",
        "id_from_url": "ids",
        "youtube_url": "ids",
        "collect_items": "lists",
        "read_items": "lists",
        "select_labelled": "lists",
        "DEFAULT_SLEEP": "pacing",
        "DEFAULT_SLEEP_REQUESTS": "pacing",
        "QUALITY_MIN_LINES": "quality",
        "QUALITY_SECONDS": "quality",
        "quality_report": "quality",
        "resolution_lines": "quality",
        "MANIFEST_FIELDS": "records",
        "FetchSummary": "records",
        "fetch_collection": "command",
    },
)

__all__ = [
    "DEFAULT_SLEEP",
    "DEFAULT_SLEEP_REQUESTS",
    "MANIFEST_FIELDS",
    "QUALITY_MIN_LINES",
    "QUALITY_SECONDS",
    "FetchConfig",
    "FetchItem",
    "FetchSummary",
    "default_normalize_workers",
    "fetch_collection",
    "id_from_url",
    "quality_report",
    "read_items",
    "resolution_lines",
    "select_labelled",
    "collect_items",
    "youtube_url",
]
