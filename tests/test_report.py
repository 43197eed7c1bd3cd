"""`t12k report WORK`: the pages of a real run folder (the `t12k run` test corpus), their
numbers checked against the stores and manifests; bad input (a damaged store, a video gone,
no stores, nothing at all) still gives a report that says what is missing; `--checkpoint`
puts genre bars on the trailer pages; `predict --html` writes a page with ten bars."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
from conftest import shot_frames as rc_frames
from conftest import write_h264
from PIL import Image

pytest.register_assert_rewrite("run_corpus", "report_work")
import report_work as rw  # noqa: E402
import run_corpus as rc  # noqa: E402

from t12k import GENRES, T12kError  # noqa: E402
from t12k.cli import main  # noqa: E402
from t12k.report import build_report  # noqa: E402
from t12k.report import collection as collection_module  # noqa: E402
from t12k.storage import FeatureStore, ShotStore  # noqa: E402

THUMB = re.compile(r"<img class='thumb' src='([^']+)'[^>]*object-position:-(\d+)px -(\d+)px")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    summary = build_report(rw.work(), out)
    return out, summary


def test_trailer_pages_show_every_clip_shot_and_fact(report):
    out, summary = report
    work = rw.work()
    assert summary.index == out / "index.html" and summary.trailers == 7 and not summary.problems
    store = FeatureStore.open(work / "features" / rw.STORE)
    shots = ShotStore.open(work / "shots.zarr")
    for i, (mid, lengths) in enumerate(rc.GOOD.items()):
        page = (out / "t" / f"{mid}.html").read_text()
        clips = store.read(mid, companion="clips")
        thumbs = THUMB.findall(page)
        assert len(thumbs) == len(clips) > 0  # one thumbnail per clip
        with Image.open(out / "t" / f"{mid}.jpg") as im:  # the trailer's strip: 96x54 cells, 16 a row
            assert im.format == "JPEG" and im.size == (16 * 96, 54)
            strip = np.asarray(im.convert("RGB")).astype(int)
        frames = rc_frames(lengths, seed=10 + i)
        for k, ((src, x, y), clip) in enumerate(zip(thumbs, clips)):
            assert src == f"{mid}.jpg" and (int(x), int(y)) == (96 * k, 0)  # the clips' frames, in order
            shown, truth = strip[int(y) + 5, int(x) + 5], frames[clip[2]][3, 3]  # the representative frame's colour
            assert np.abs(shown - truth).sum() < 40, (mid, k, shown, truth)
        n_shots = len(shots.shots(mid))
        assert n_shots == len(lengths) and f"{n_shots} shots, {sum(lengths)} frames" in page
        assert page.count("stroke='#2a8'") == n_shots - 1  # a line per cut
        assert "128x72, 24.000 fps, h264" in page and "below 480p (72p)" in page
    # a trailer that failed to download has a page saying why
    assert "not-found (HTTP 404" in (out / "t" / "missing.html").read_text()


def test_the_collection_page_counts_statuses_failures_and_quality(report):
    out, _ = report
    index = (out / "index.html").read_text()
    assert re.search(r"<td>fetch</td><td class='n'>7</td><td class='n'>2</td><td class='n'>5</td>", index)
    assert "<td>not-found</td><td class='n'>1</td>" in index and "<td>not-a-video</td>" in index
    assert "5 of 5 fetched trailers break the paper's quality rules" in index
    assert "<td>below 480p</td><td class='n'>5</td>" in index and "<td>shorter than 60 s</td>" in index
    for png in ("durations", "shots", "clips"):
        with Image.open(out / "img" / f"{png}.png") as im:
            assert im.width > 300
    listing = (out / "list-1.html").read_text()
    assert listing.count("<a href='t/") == 7
    stores = (out / "stores.html").read_text()
    assert "shufflenet2d" in stores and "Shot-24, 24 fps, histogram frame" in stores
    assert stores.count("<span class='ok'>whole</span>") == 2
    n_clips = sum(len(a) for a in FeatureStore.open(rw.work() / "features" / rw.STORE).load_all().values())
    assert f"<td class='n'>5</td><td class='n'>{n_clips}</td>" in stores


def test_the_list_is_paged(tmp_path, monkeypatch):
    monkeypatch.setattr(collection_module, "PAGE_SIZE", 3)
    build_report(rw.work(), tmp_path, verify=False, thumbs=False)
    pages = sorted(tmp_path.glob("list-*.html"))
    assert [p.name for p in pages] == ["list-1.html", "list-2.html", "list-3.html"]
    assert "Trailers 7-7 of 7." in pages[2].read_text() and "href='list-1.html'" in pages[2].read_text()


def test_bad_input_is_said_where_it_would_show(tmp_path):
    work = rw.copy(tmp_path / "work")
    (work / "videos" / "r3.mp4").unlink()
    for chunk in (work / "features" / rw.STORE / "r2").glob("0*"):
        chunk.unlink()  # r2's features lose their chunk file
    summary = build_report(work, tmp_path / "out")
    r3 = (tmp_path / "out" / "t" / "r3.html").read_text()
    assert "the video of r3 is gone" in r3 and "no frame" in r3 and not THUMB.findall(r3)
    stores = (tmp_path / "out" / "stores.html").read_text()
    assert "1 of 5 trailers damaged" in stores and "Damaged in trailers_i_shufflenet_fpc24.zarr" in stores
    assert len(THUMB.findall((tmp_path / "out" / "t" / "r1.html").read_text())) == 4  # the others are whole
    assert summary.trailers == 7


def test_an_unreadable_store_and_no_stores(tmp_path):
    work = rw.copy(tmp_path / "work")
    (work / "shots.zarr" / ".zattrs").unlink()  # the shots store's attributes are lost
    build_report(work, tmp_path / "a")
    index = (tmp_path / "a" / "index.html").read_text()
    assert "shots.zarr: cannot be read" in index and "verify --repair" in index
    assert "no shots store in the work folder" in (tmp_path / "a" / "t" / "r1.html").read_text()
    shutil.rmtree(work / "shots.zarr")
    shutil.rmtree(work / "features")
    build_report(work, tmp_path / "b")
    assert "no shots or feature store found" in (tmp_path / "b" / "index.html").read_text()
    assert "no feature store in the work folder" in (tmp_path / "b" / "t" / "r1.html").read_text()


def test_nothing_to_read_is_an_error(tmp_path, capsys):
    with pytest.raises(T12kError, match="nothing to report in"):
        build_report(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(T12kError, match="report folder .*file.* pass another --out"):
        build_report(rw.work(), tmp_path / "file")
    assert main(["report", str(tmp_path / "absent"), "--quiet"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_the_command_prints_where_the_report_is(tmp_path, capsys):
    assert main(["report", str(rw.work()), "--out", str(tmp_path / "r"), "--quiet", "--no-verify"]) == 0
    out = capsys.readouterr().out
    assert "report: 7 trailer pages" in out and str(tmp_path / "r" / "index.html") in out


def test_checkpoint_puts_genres_on_the_pages(tmp_path):
    from t12k.divita.train import load_model, predict_features

    ckpt = rw.trained()
    build_report(rw.work(), tmp_path, ckpt, verify=False, thumbs=False)
    page = (tmp_path / "t" / "r1.html").read_text()
    shown = [float(v) for v in re.findall(r"<td class='n'>([01]\.\d{3})</td></tr>", page)]
    model, _ = load_model(ckpt)
    feats = FeatureStore.open(rw.work() / "features" / rw.STORE).read("r1")
    want = predict_features(model, feats, None)
    assert len(shown) == len(GENRES) and np.allclose(shown, want, atol=5e-4)
    assert "top genre" in (tmp_path / "list-1.html").read_text()
    # a checkpoint that cannot be read: the report says so and builds
    build_report(rw.work(), tmp_path / "bad", tmp_path / "nope.pt", verify=False, thumbs=False)
    assert "no genre probabilities" in (tmp_path / "bad" / "index.html").read_text()


def test_predict_page_has_ten_bars(tmp_path):
    from t12k.report.predict_page import predict_page

    probs = {g: i / 10 for i, g in enumerate(GENRES)}
    res = {"source": "x.mp4", "shots": 3, "frames": 70, "clips": 4, "probabilities": probs, "seconds": {"total": 1.0}}
    page = predict_page(res, tmp_path / "p.html").read_text()
    assert page.count("class='bar'") == 10 and "<style>" in page and "stylesheet" not in page
    assert page.index(">thriller<") < page.index(">action<")  # most probable first


def test_predict_writes_the_page(tmp_path, capsys):
    video = rw.work() / "videos" / "r1.mp4"
    assert (
        main(
            [
                "predict",
                str(video),
                "--checkpoint",
                str(rw.trained()),
                "--device",
                "cpu",
                "--html",
                str(tmp_path / "p.html"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert f"page: {tmp_path / 'p.html'}" in out
    page = (tmp_path / "p.html").read_text()
    assert page.count("class='bar'") == 10 and "<td>shots</td><td>2</td>" in page


def test_thumbnails_of_many_frames_from_one_pass(tmp_path):
    from t12k.report.thumbs import make_strip

    frames = rc_frames([90, 90], seed=3)
    video = write_h264(tmp_path / "v.mp4", frames)  # 180 frames
    wanted = list(range(180))  # more frames than ffmpeg's expressions nest (100)
    strip = make_strip(video, wanted + [500], tmp_path / "s.jpg")  # frame 500 is past the end
    assert sorted(strip.cells) == wanted and strip.offset(95) == ((95 % 16) * 96, (95 // 16) * 54)
    with Image.open(tmp_path / "s.jpg") as im:
        img = np.asarray(im.convert("RGB")).astype(int)
    assert img.shape == (12 * 54, 16 * 96, 3)  # 181 cells asked: 12 rows
    x, y = strip.offset(95)
    assert np.abs(img[y + 5, x + 5] - frames[95][3, 3]).sum() < 40  # frame 95 is the second shot's colour
    mtime = (tmp_path / "s.jpg").stat().st_mtime_ns
    assert make_strip(video, wanted + [500], tmp_path / "s.jpg").cells == strip.cells  # asked again: reused
    assert (tmp_path / "s.jpg").stat().st_mtime_ns == mtime


def test_a_training_run_and_an_experiment(tmp_path):
    from t12k.divita.experiment import RunSpec, run_experiment
    from t12k.divita.runfiles import read_metrics

    run = rw.trained().parent
    summary = build_report(run, tmp_path / "run")
    assert summary.kind == "training" and "report of the training" in summary.text()
    page = (tmp_path / "run" / "index.html").read_text()
    metrics, best = read_metrics(run / "metrics.csv")
    assert f"<td>test</td><td class='n'>{metrics['test']['muAP']:.2f}</td>" in page
    assert f"<td>drama</td><td class='n'>{metrics['val']['drama']:.2f}</td>" in page
    assert f"best epoch {best} of 2" in page and "Every epoch (2)" in page
    for png in ("curves", "pr", "pr_genres"):
        with Image.open(tmp_path / "run" / "img" / f"{png}.png") as im:
            assert im.width > 300
    specs = [RunSpec("ShuffleNet-2D", image_store=rw.STORE)]
    exp = tmp_path / "exp"
    data = rw.work() / "features"
    res = run_experiment(
        specs,
        exp,
        data_dir=data,
        labels=run.parent / "mtgc.csv",
        splits=[0, 1],
        overrides={"max_epochs": 1, "device": "cpu"},
        progress=False,
    )
    build_report(exp, tmp_path / "exp-report")
    page = (tmp_path / "exp-report" / "index.html").read_text()
    mu = [m["muAP"] for m in res.configs[0].test.values()]
    assert f"{np.mean(mu):.2f}±{np.std(mu, ddof=1):.2f}" in page  # Table 6's mean±std
    assert "<th>Backbone</th>" in page and "tradeoff.png" in page
    for name in ("ShuffleNet-2D-split0", "ShuffleNet-2D-split1"):
        assert f"runs/{name}/index.html" in page and (tmp_path / "exp-report" / "runs" / name / "index.html").is_file()


def test_a_work_folder_links_its_training_runs(tmp_path):
    work = rw.copy(tmp_path / "work")
    shutil.copytree(rw.trained().parent, work / "run")
    build_report(work, tmp_path / "out", verify=False, thumbs=False)
    assert "<a href='runs/run/index.html'>run</a>" in (tmp_path / "out" / "index.html").read_text()
    assert "Training run run" in (tmp_path / "out" / "runs" / "run" / "index.html").read_text()


def test_black_and_boxed_frames_are_told(tmp_path):
    from t12k.report.thumbs import looks

    def cell(top=0, side=0, level=180):
        img = np.zeros((54, 96, 3), np.uint8)
        img[top : 54 - top, side : 96 - side] = level
        return img

    assert looks(cell()) == ""
    assert looks(cell(level=5)) == "black"
    assert looks(cell(top=8)) == "letterboxed"
    assert looks(cell(side=12)) == "pillarboxed"
    assert looks(cell(top=8, side=12)) == "windowboxed"


def test_a_four_by_three_picture_is_not_called_pillarboxed(tmp_path):
    from t12k.report.thumbs import make_strip

    frames = rc_frames([30], size=(96, 72), seed=4)  # 4:3: the strip pads it to 16:9 cells
    frames = [np.maximum(f, 60) for f in frames]  # no dark colour
    strip = make_strip(write_h264(tmp_path / "v.mp4", frames), [0, 10], tmp_path / "s.jpg")
    assert strip.looks == {0: "", 10: ""}
    boxed = [np.pad(f[:, 16:80], ((0, 0), (16, 16), (0, 0))) for f in frames]  # black bars in the picture
    strip = make_strip(write_h264(tmp_path / "b.mp4", boxed), [0, 10], tmp_path / "b.jpg")
    assert strip.looks == {0: "pillarboxed", 10: "pillarboxed"}
