"""fetch's inputs: the Trailers12k metadata.json, mtgc.csv plus a URL table, YouTube id
fields, dotted JSON fields, and malformed rows reported with their line."""

from __future__ import annotations

import json

import pytest

from t12k import GENRES
from t12k.errors import T12kError
from t12k.pipeline.fetch import FetchItem, collect_items, read_items, select_labelled

YT = "https://www.youtube.com/watch?v="


def _entry(imdb_id, *youtube_ids, title="A film"):
    return {
        "imdb": {"id": imdb_id, "title": title, "genres": ["Drama"]},
        "youtube": {"trailers": [{"id": y, "title": f"{title} trailer"} for y in youtube_ids]},
    }


def test_trailers12k_metadata_json(tmp_path):
    # The published shape as far as we know it: {"trailers12k": {KEY: {"imdb": {"id": ...},
    # "youtube": {"trailers": [{"id": YOUTUBE_ID}, ...]}}}} with IMDb ids without 'tt'.
    meta = {
        "trailers12k": {
            "0": _entry("0347149", "dQw4w9WgXcQ", "aaaaaaaaaaa"),
            "1": _entry(110912, "-bcdefghijk"),
            "2": _entry("tt10872600", "zzzzzzzzzzz"),
        }
    }
    p = tmp_path / "metadata.json"
    p.write_text(json.dumps(meta, indent=2))
    assert read_items(p) == [
        FetchItem("tt0347149", YT + "dQw4w9WgXcQ"),  # the first trailer is the curated one
        FetchItem("tt0110912", YT + "-bcdefghijk"),
        FetchItem("tt10872600", YT + "zzzzzzzzzzz"),
    ]
    # the entries alone (no "trailers12k" wrapper), keyed by IMDb id, and a list of entries
    q = tmp_path / "entries.json"
    q.write_text(json.dumps({"tt0347149": {"youtube": {"trailers": [{"id": "dQw4w9WgXcQ"}]}}}))
    assert read_items(q) == [FetchItem("tt0347149", YT + "dQw4w9WgXcQ")]
    r = tmp_path / "list.json"
    r.write_text(json.dumps([_entry("0347149", "dQw4w9WgXcQ")]))
    assert read_items(r) == [FetchItem("tt0347149", YT + "dQw4w9WgXcQ")]
    # dotted fields choose other parts of an entry
    s = tmp_path / "other.json"
    s.write_text(json.dumps({"trailers12k": {"k1": _entry("1", "dQw4w9WgXcQ", "aaaaaaaaaaa")}}))
    assert read_items(s, id_field="imdb.id", url_field="youtube.trailers.1.id") == [FetchItem("1", YT + "aaaaaaaaaaa")]


@pytest.mark.parametrize(
    "content,pattern",
    [
        (
            '{"trailers12k": {\n "0": {"imdb": {"id": "1"}, "youtube": {"trailers": [{"id": "dQw4w9WgXcQ"}]}},\n'
            ' "1": {"imdb": {"id": "2"}, "youtube": {"trailers": []}}\n}}',
            r"metadata.json:3: the entry has no YouTube trailer",
        ),
        (
            '{"trailers12k": {\n "0": {"imdb": {"id": "1"}, "youtube": {"trailers": [{"id": "dQw4w9WgXcQ"}]}},\n'
            ' "1": {"imdb": {"id": "0000001"}, "youtube": {"trailers": [{"id": "aaaaaaaaaaa"}]}}\n}}',
            r"id 'tt0000001' appears on lines 2 and 3",
        ),
        (
            '{"trailers12k": {\n "0": {"imdb": {"id": "1"}, "youtube": {"trailers": [{"id": "not an id"}]}}\n}}',
            r"metadata.json:2: 'not an id' is not a URL",
        ),
        (
            '{"trailers12k": {\n "0": {"imdb": {"id": "1"},\n "youtube": {"trailers": [{"id": "dQw4w9WgXcQ"}]}}\n,,}}',
            r"metadata.json:4: invalid JSON",
        ),
        (
            '{"trailers12k": {\n "../x": {"youtube": {"trailers": [{"id": "dQw4w9WgXcQ"}]}}\n}}',
            r"metadata.json:2: invalid trailer id '../x'",
        ),
        ('{"trailers12k": 7}', r"metadata.json:1: 'trailers12k' holds no entries"),
        ('{"movies": [1, 2]}', r"metadata.json:1: expected a JSON list of objects .* or the Trailers12k metadata.json"),
    ],
)
def test_metadata_json_errors_name_the_line(tmp_path, content, pattern):
    p = tmp_path / "metadata.json"
    p.write_text(content)
    with pytest.raises(T12kError, match=pattern) as err:
        read_items(p)
    assert "\n" not in str(err.value)


def _mtgc(path, mids):
    header = ["mid", *GENRES, "split0", "split1", "split2"]
    rows = [",".join([m] + ["1"] + ["0"] * 9 + ["0", "1", "2"]) for m in mids]
    path.write_text(",".join(header) + "\n" + "\n".join(rows) + "\n")
    return path


def test_mtgc_plus_url_table(tmp_path):
    labels = _mtgc(tmp_path / "mtgc.csv", ["tt0000003", "tt0347149", "tt0000002"])
    table = tmp_path / "urls.csv"
    # a URL table keyed by bare IMDb numbers, with bare YouTube ids, and an id mtgc.csv lacks
    table.write_text("mid,youtube_id\n347149,dQw4w9WgXcQ\n0000003,aaaaaaaaaaa\ntt0999999,bbbbbbbbbbb\n")
    items = read_items(table)
    assert items[0] == FetchItem("347149", YT + "dQw4w9WgXcQ")
    assert select_labelled(items, labels) == [
        FetchItem("tt0000003", YT + "aaaaaaaaaaa"),
        FetchItem("tt0347149", YT + "dQw4w9WgXcQ"),
        FetchItem("tt0000002", ""),
    ]  # no URL: recorded as failed by fetch
    with pytest.raises(T12kError, match="labels file .* not found"):
        select_labelled(items, tmp_path / "nope.csv")


def test_lists_and_labels_with_a_byte_order_mark(tmp_path):
    # Excel's "CSV UTF-8" and Notepad write a byte-order mark first: `fetch ITEMS --labels` reads both files
    bom = b"\xef\xbb\xbf"
    labels = tmp_path / "mtgc.csv"
    labels.write_bytes(bom + _mtgc(tmp_path / "plain.csv", ["tt0000003", "tt0347149"]).read_bytes())
    table = tmp_path / "urls.csv"
    table.write_bytes(bom + b"mid,youtube_id\ntt0347149,dQw4w9WgXcQ\ntt0000003,aaaaaaaaaaa\n")
    assert collect_items(table, labels=labels) == [
        FetchItem("tt0000003", YT + "aaaaaaaaaaa"),
        FetchItem("tt0347149", YT + "dQw4w9WgXcQ"),
    ]


def test_mtgc_csv_given_as_the_list_is_explained(tmp_path):
    labels = _mtgc(tmp_path / "mtgc.csv", ["tt0000001"])
    with pytest.raises(T12kError, match="looks like an mtgc.csv .* with --labels"):
        read_items(labels)


def test_youtube_id_fields_and_fallbacks(tmp_path):
    p = tmp_path / "yt.csv"
    p.write_text("id,yt_id\nm1,dQw4w9WgXcQ\nm2,https://youtu.be/aaaaaaaaaaa\n")
    assert read_items(p) == [FetchItem("m1", YT + "dQw4w9WgXcQ"), FetchItem("m2", "https://youtu.be/aaaaaaaaaaa")]
    q = tmp_path / "named.jsonl"
    q.write_text('{"movie": "m1", "trailer": {"youtube": "dQw4w9WgXcQ"}}\n')
    assert read_items(q, id_field="movie", url_field="trailer.youtube") == [FetchItem("m1", YT + "dQw4w9WgXcQ")]
    r = tmp_path / "bare.csv"  # a bare id in a field that is not a YouTube one: refused with a hint
    r.write_text("id,url\nm1,dQw4w9WgXcQ\n")
    with pytest.raises(T12kError, match=r"bare.csv:2: 'dQw4w9WgXcQ' is not a URL .*youtube_id"):
        read_items(r)


@pytest.mark.parametrize(
    "name,content,pattern",
    [
        ("quote.csv", 'id,url\na,http://h/a.mp4\nb,"http://h/b.mp4\nc,http://h/c.mp4\n', r"quote.csv:3: malformed CSV"),
        ("junk_after_quote.csv", 'id,url\na,"http://h/a.mp4"x\n', r"junk_after_quote.csv:2: malformed CSV"),
        ("nul.csv", "id,url\na,http://h/a.mp4\nb,http://h/\x00b.mp4\n", r"nul.csv:3: the file contains NUL bytes"),
        ("number_url.json", '[\n{"id": "a", "url": 5}\n]', r"number_url.json:2: the URL 5 is not a string"),
        (
            "list_line.jsonl",
            '{"id": "a", "url": "http://h/a.mp4"}\n["http://h/b.mp4"]\n',
            r"list_line.jsonl:2: expected an object",
        ),
        (
            "abs.jsonl",
            '{"id": "/etc/passwd", "url": "http://h/a.mp4"}\n',
            r"abs.jsonl:1: invalid trailer id '/etc/passwd'",
        ),
        ("dots.json", '[{"id": "..", "url": "http://h/a.mp4"}]', r"dots.json:1: invalid trailer id '..'"),
        ("hidden.csv", "id,url\n.hidden,http://h/a.mp4\n", r"hidden.csv:2: invalid trailer id '.hidden'"),
        (
            "dup.jsonl",
            '{"id": "a", "url": "http://h/1.mp4"}\n\n{"id": "a", "url": "http://h/2.mp4"}\n',
            r"id 'a' appears on lines 1 and 3",
        ),
        (
            "trailing.json",
            '[{"id": "a", "url": "http://h/a.mp4"}]\n]',
            r"trailing.json:2: extra data after the JSON list",
        ),
    ],
)
def test_more_malformed_rows_name_their_line(tmp_path, name, content, pattern):
    p = tmp_path / name
    p.write_text(content)
    with pytest.raises(T12kError, match=pattern) as err:
        read_items(p)
    assert "\n" not in str(err.value) and str(p) in str(err.value)
