"""`t12k download-reps` against a local HTTP server on 127.0.0.1 (no internet): md5 checks,
resumed transfers (HTTP Range), dropped connections, servers that ignore ranges, and safe
extraction of hostile tarballs."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import zarr

from t12k.cli import main
from t12k.divita.data import load_table
from t12k.errors import T12kError
from t12k.pipeline.published import PUBLISHED_FILES, PublishedFile, download_published, safe_extract, select_files

STORE = "trailers_i_test_fpc24.zarr"


class _Server:
    """Serves `files` (name -> bytes) with Range support; records each request's path and
    Range header; `drop_first` closes the first response of a file half-way; `no_range`
    makes it ignore Range (always 200, the whole file)."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.drop_first: set[str] = set()
        self.no_range = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.split("?")[0].lstrip("/").split("/")[-1]
                rng = self.headers.get("Range")
                server.requests.append((name, rng))
                if name not in server.files:
                    self.send_error(404)
                    return
                body = server.files[name]
                start = 0
                if rng and not server.no_range:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                part = body[start:]
                self.send_header("Content-Length", str(len(part)))
                self.end_headers()
                if name in server.drop_first:
                    server.drop_first.discard(name)
                    self.wfile.write(part[: len(part) // 3])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(part)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/record/files"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def add(self, name: str, data: bytes) -> PublishedFile:
        self.files[name] = data
        return PublishedFile(name, hashlib.md5(data).hexdigest())


@pytest.fixture
def server():
    s = _Server()
    s.thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def _tar(entries) -> bytes:
    """A tar.gz of (name, bytes | None for a folder | ('sym'|'hard', target))."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif isinstance(data, tuple):
                info.type = tarfile.SYMTYPE if data[0] == "sym" else tarfile.LNKTYPE
                info.linkname = data[1]
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture(scope="module")
def store_tarball(tmp_path_factory) -> tuple[bytes, dict]:
    """A published-layout store (zarr format 2), tarred with a ./ prefix, and its arrays."""
    root = tmp_path_factory.mktemp("store")
    rng = np.random.default_rng(0)
    arrays = {f"m{i}": rng.normal(size=(int(rng.integers(3, 40)), 6)).astype(np.float32) for i in range(4)}
    g = zarr.open_group(str(root / STORE), mode="w", zarr_format=2)
    g.attrs["num_features"] = 6
    for mid, a in arrays.items():
        g.create_array(mid, shape=a.shape, dtype="float32", chunks=(16, 6))[...] = a
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(root / STORE, arcname=f"./{STORE}")
    return buf.getvalue(), arrays


MTGC = b"mid,action\n1,0\n" * 500


def test_download_verify_extract_and_skip(server, store_tarball, tmp_path):
    data, arrays = store_tarball
    catalog = [server.add("mtgc.csv", MTGC), server.add(f"{STORE}.tar.gz", data)]
    out = tmp_path / "t12k-data"
    summary = download_published(out, base_url=server.url, catalog=catalog, progress=False, log=lambda m: None)
    assert summary.done == ["mtgc.csv", STORE]
    assert summary.totals == {"downloaded": f"{(len(MTGC) + len(data)) / 1e6:.1f} MB"}
    assert (out / "mtgc.csv").read_bytes() == MTGC
    assert not (out / f"{STORE}.tar.gz").exists() and not list(out.glob("*.part")) and not list(out.glob(".*"))
    table = load_table(out / STORE, list(arrays))
    for i, a in enumerate(arrays.values()):
        o, n = int(table.offsets[i]), int(table.lengths[i])
        np.testing.assert_array_equal(table.feats[o : o + n].numpy(), a)
    assert [r for r, _ in server.requests] == ["mtgc.csv", f"{STORE}.tar.gz"]
    # everything in place: nothing is fetched again
    again = download_published(out, base_url=server.url, catalog=catalog, progress=False, log=lambda m: None)
    assert again.skipped == ["mtgc.csv", STORE] and again.done == [] and len(server.requests) == 2
    assert again.text().startswith("download-reps: 0 fetched, 2 already present, 0 failed")


def test_a_partial_file_is_resumed_with_a_range_request(server, tmp_path):
    payload = np.random.default_rng(1).bytes(3_000_000)
    catalog = [server.add("mtgc.csv", payload)]
    (tmp_path / "mtgc.csv.part").write_bytes(payload[:1_234_567])
    download_published(tmp_path, base_url=server.url, catalog=catalog, progress=False, log=lambda m: None)
    assert server.requests == [("mtgc.csv", "bytes=1234567-")]
    assert (tmp_path / "mtgc.csv").read_bytes() == payload


def test_a_dropped_connection_resumes_where_it_stopped(server, tmp_path):
    payload = np.random.default_rng(2).bytes(2_500_000)
    catalog = [server.add("mtgc.csv", payload)]
    server.drop_first.add("mtgc.csv")
    download_published(tmp_path, base_url=server.url, catalog=catalog, progress=False, log=lambda m: None, backoff=0)
    assert len(server.requests) == 2 and server.requests[0] == ("mtgc.csv", None)
    assert server.requests[1][1] is not None and server.requests[1][1].startswith("bytes=")
    assert int(server.requests[1][1][6:-1]) > 0
    assert (tmp_path / "mtgc.csv").read_bytes() == payload


def test_a_server_ignoring_ranges_restarts_the_file(server, tmp_path):
    payload = np.random.default_rng(3).bytes(500_000)
    catalog = [server.add("mtgc.csv", payload)]
    server.no_range = True
    (tmp_path / "mtgc.csv.part").write_bytes(b"garbage that is not the start of the file")
    download_published(tmp_path, base_url=server.url, catalog=catalog, progress=False, log=lambda m: None)
    assert (tmp_path / "mtgc.csv").read_bytes() == payload


def test_md5_mismatch_is_refused_and_nothing_kept(server, tmp_path):
    server.add("mtgc.csv", b"not the published file\n")
    catalog = [PublishedFile("mtgc.csv", "0" * 32)]
    with pytest.raises(T12kError, match=r"mtgc\.csv .* has md5 [0-9a-f]{32} .*expected 0{32}.*deleted"):
        download_published(tmp_path, base_url=server.url, catalog=catalog, progress=False, log=lambda m: None)
    assert list(tmp_path.iterdir()) == []


def test_http_errors_name_the_url(server, tmp_path):
    with pytest.raises(T12kError, match=r"mtgc\.csv\?download=1 answered HTTP 404.*--base-url"):
        download_published(
            tmp_path,
            base_url=server.url,
            catalog=[PublishedFile("mtgc.csv", "0" * 32)],
            progress=False,
            log=lambda m: None,
        )
    with pytest.raises(T12kError, match="failed 2 times"):
        download_published(
            tmp_path,
            base_url="http://127.0.0.1:9/none",
            retries=1,
            backoff=0,
            timeout=2,
            catalog=[PublishedFile("mtgc.csv", "0" * 32)],
            progress=False,
            log=lambda m: None,
        )


@pytest.mark.parametrize(
    "entries,match",
    [
        ([(f"{STORE}/.zgroup", b"{}"), ("../evil.txt", b"x")], "leaves the target folder"),
        ([(f"{STORE}/a/../../../evil.txt", b"x")], "leaves the target folder"),
        ([("/tmp/evil.txt", b"x")], "absolute path"),
        ([(STORE, None), (f"{STORE}/link", ("sym", "/etc/passwd"))], "a link"),
        ([(STORE, None), (f"{STORE}/hard", ("hard", "/etc/passwd"))], "a link"),
        # links that stay inside the folder, which tarfile's data filter alone would allow
        ([(STORE, None), (f"{STORE}/.zgroup", b"{}"), (f"{STORE}/hard", ("hard", f"{STORE}/.zgroup"))], "a link"),
        ([(STORE, None), (f"{STORE}/.zgroup", b"{}"), (f"{STORE}/sym", ("sym", ".zgroup"))], "a link"),
    ],
)
def test_hostile_archives_are_refused(server, tmp_path, entries, match):
    data = _tar(entries)
    catalog = [server.add(f"{STORE}.tar.gz", data)]
    out = tmp_path / "data"
    with pytest.raises(T12kError, match=match):
        download_published(out, base_url=server.url, catalog=catalog, progress=False, log=lambda m: None)
    assert not (tmp_path / "evil.txt").exists() and not (out / STORE).exists()
    assert [p.name for p in out.iterdir()] == [f"{STORE}.tar.gz"]  # verified archive kept, staging removed


def test_safe_extract_keeps_files_and_folders(tmp_path):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(_tar([("./top", None), ("top/sub/f.bin", b"\x00\x01"), ("top/g.txt", b"hi")]))
    assert safe_extract(archive, tmp_path / "x") == ["top"]
    assert (tmp_path / "x" / "top" / "sub" / "f.bin").read_bytes() == b"\x00\x01"
    archive.write_bytes(_tar([("other/f", b"1")]))
    with pytest.raises(T12kError, match="does not contain"):
        from t12k.pipeline.published import _install_archive

        _install_archive(archive, PublishedFile("top.tar.gz", ""), tmp_path / "y")


def test_catalog_and_cli(server, tmp_path, capsys):
    assert [f.name for f in PUBLISHED_FILES][0] == "mtgc.csv" and len(PUBLISHED_FILES) == 7
    assert {f.target for f in PUBLISHED_FILES[1:]} == {
        "trailers_i_shufflenet_fpc24.zarr",
        "trailers_k_shufflenet_fps24_fpc24.zarr",
        "trailers_i_resnet_fpc24.zarr",
        "trailers_k_r2plus1d_fps24_fpc24.zarr",
        "trailers_i_swin_fpc24.zarr",
        "trailers_ik_swin_fps24_fpc24.zarr",
    }
    assert [f.name for f in select_files(["mtgc.csv", "trailers_i_resnet_fpc24"])] == [
        "mtgc.csv",
        "trailers_i_resnet_fpc24.zarr.tar.gz",
    ]
    assert main(["download-reps", "--list"]) == 0
    assert "d730579950345b2c0f9c4a9779bd9d44  mtgc.csv" in capsys.readouterr().out
    server.add("mtgc.csv", b"a local file that is not the published mtgc.csv\n")
    code = main(["download-reps", "--base-url", server.url, "--only", "mtgc.csv", "--out", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "expected d730579950345b2c0f9c4a9779bd9d44" in err
    assert main(["download-reps", "--only", "trailers_x", "--out", str(tmp_path)]) == 2
    assert "not a published file" in capsys.readouterr().err


# ---- a data folder that holds what t12k did not put there --------------------------------------


def _quiet_run(out, server, catalog, **settings):
    said: list[str] = []
    download_published(out, base_url=server.url, catalog=catalog, progress=False, log=said.append, **settings)
    return said


def test_a_link_planted_at_the_part_file_is_not_written_through(server, tmp_path):
    payload = np.random.default_rng(4).bytes(300_000)
    catalog = [server.add("mtgc.csv", payload)]
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"someone else's file\n")
    out = tmp_path / "data"
    out.mkdir()
    (out / "mtgc.csv.part").symlink_to(victim)
    said = _quiet_run(out, server, catalog)
    assert victim.read_bytes() == b"someone else's file\n"
    assert (out / "mtgc.csv").read_bytes() == payload and not (out / "mtgc.csv").is_symlink()
    assert server.requests == [("mtgc.csv", None)]  # from the start, not from the victim's size
    assert any("mtgc.csv.part was a symbolic link" in m and "removed the link" in m for m in said)


def test_a_link_planted_after_the_look_makes_the_open_fail(tmp_path):
    from t12k.pipeline.published import _open_nofollow

    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"keep")
    (tmp_path / "x.part").symlink_to(victim)
    with pytest.raises(T12kError, match=r"x\.part is a symbolic link, which t12k never makes; remove it"):
        _open_nofollow(tmp_path / "x.part", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "wb")
    assert victim.read_bytes() == b"keep"


def test_a_link_planted_at_the_staging_folder_is_not_extracted_into(server, store_tarball, tmp_path):
    data, arrays = store_tarball
    catalog = [server.add(f"{STORE}.tar.gz", data)]
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("mine")
    out = tmp_path / "data"
    out.mkdir()
    (out / f".{STORE}.extracting").symlink_to(victim, target_is_directory=True)  # the name earlier versions used
    _quiet_run(out, server, catalog)
    assert [p.name for p in victim.iterdir()] == ["precious.txt"] and (victim / "precious.txt").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == [STORE]  # the link removed, nothing moved out of its target
    assert load_table(out / STORE, list(arrays)).lengths.tolist() == [len(a) for a in arrays.values()]


def test_a_link_at_the_store_name_is_replaced_not_emptied(server, store_tarball, tmp_path):
    data, arrays = store_tarball
    catalog = [server.add(f"{STORE}.tar.gz", data)]
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    out = tmp_path / "data"
    out.mkdir()
    (out / STORE).symlink_to(victim)  # not a folder: the store is not in place
    _quiet_run(out, server, catalog)
    assert victim.read_text() == "mine" and (out / STORE).is_dir() and not (out / STORE).is_symlink()


def test_members_outside_the_store_are_skipped_and_said(server, tmp_path):
    entries = [
        (f"./{STORE}/.zgroup", b"{}"),
        ("mtgc.csv", b"not the labels\n"),
        ("trailers_i_resnet_fpc24.zarr/.zgroup", b"{}"),
        (f"{STORE}/../sibling.txt", b"x"),
    ]
    catalog = [server.add(f"{STORE}.tar.gz", _tar(entries))]
    out = tmp_path / "data"
    out.mkdir()
    (out / "mtgc.csv").write_bytes(MTGC)
    said = _quiet_run(out, server, catalog)
    assert (out / "mtgc.csv").read_bytes() == MTGC  # a sibling in OUT is not replaced
    assert sorted(p.name for p in out.iterdir()) == ["mtgc.csv", STORE]
    assert [p.name for p in (out / STORE).iterdir()] == [".zgroup"]
    [line] = [m for m in said if "skipped" in m]
    assert line.startswith(f"{STORE}.tar.gz: skipped 3 member(s) outside {STORE}/")
    assert "mtgc.csv" in line and "trailers_i_resnet_fpc24.zarr/.zgroup" in line and "sibling.txt" in line


@pytest.mark.parametrize("kind", ["ratio", "absolute"])
def test_a_tar_bomb_is_refused_and_leaves_nothing(server, tmp_path, kind):
    settings = {}
    if kind == "ratio":  # 4 MiB of zeros in a few KiB: more than 20 times the archive
        data = _tar([(f"{STORE}/.zgroup", b"{}"), (f"{STORE}/0.0", bytes(4 << 20))])
    else:  # incompressible, but more than --max-expanded
        data = _tar([(f"{STORE}/0.0", np.random.default_rng(5).bytes(200_000))])
        settings = {"max_expanded": 100 << 10}
    catalog = [server.add(f"{STORE}.tar.gz", data)]
    out = tmp_path / "data"
    with pytest.raises(T12kError, match=r"expands to more than .* refusing it as a tar bomb") as err:
        _quiet_run(out, server, catalog, **settings)
    assert "\n" not in str(err.value)
    assert [p.name for p in out.iterdir()] == [f"{STORE}.tar.gz"]  # nothing extracted, no staging folder left


def test_max_expanded_option():
    import argparse

    from t12k.pipeline.published import MAX_EXPANDED, DownloadConfig
    from t12k.settings import add_settings, settings_from

    p = argparse.ArgumentParser()
    add_settings(p, DownloadConfig)
    assert DownloadConfig(**settings_from(p.parse_args(["--max-expanded", "100k"]), DownloadConfig)).max_expanded == (
        100 << 10
    )
    assert DownloadConfig().max_expanded == MAX_EXPANDED == 64 << 30
    with pytest.raises(T12kError, match="--max-expanded must be a positive size, e.g. 64G; got 0"):
        DownloadConfig(max_expanded=0).validate()
