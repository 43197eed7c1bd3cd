"""`t12k demo` end to end on a reduced corpus (the full default runs in `make demo`)."""

import pytest

from t12k.cli import main
from t12k.pipeline.media import probe
from t12k.storage import FeatureStore, ShotStore, read_mtgc


@pytest.mark.slow
def test_demo_runs_every_stage_and_summarizes(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(
        [
            "demo",
            "--out",
            str(out),
            "--trailers",
            "10",
            "--seconds",
            "4",
            "--max-epochs",
            "5",
            "--device",
            "cpu",
            "--quiet",
        ]
    )
    text = capsys.readouterr().out
    assert code == 0, text
    for stage in ("[1/6]", "[2/6] fetch", "[3/6] shots", "[4/6] extract", "[5/6] train", "[6/6] predict"):
        assert stage in text
    assert "DEMO CORPUS" in text and "Demo summary (demo corpus, not Trailers12k)" in text
    # the stores the summary talks about are real and complete
    labels = read_mtgc(out / "mtgc.csv")
    assert len(labels.ids) == 11
    shots = ShotStore.open(out / "shots.zarr")
    feats = FeatureStore.open(out / "features" / "trailers_i_shufflenet_fpc24.zarr")
    assert shots.ids() == feats.ids() == sorted(labels.ids)
    n_clips = sum(len(feats.read(m)) for m in feats.ids())
    assert f"clips {n_clips} (Shot-24)" in text
    real = probe(out / "videos" / "real000.mp4")  # the 212 s, 25 fps real video, normalized to 24 fps
    assert real.fps == 24 and len(shots.predictions("real000")) == real.num_frames == round(real.duration * 24)
    assert real.num_frames > 5000
    assert "test      muAP" in text and "predict   gen" in text
    assert (out / "run" / "checkpoint.pt").is_file()
    # a second run resumes: nothing is fetched, detected or extracted again
    assert (
        main(
            [
                "demo",
                "--out",
                str(out),
                "--trailers",
                "10",
                "--seconds",
                "4",
                "--max-epochs",
                "5",
                "--device",
                "cpu",
                "--quiet",
            ]
        )
        == 0
    )
    again = capsys.readouterr().out
    assert "0 downloaded" in again or "0 done" in again
    assert "shots: 0 done, 11 already done" in again and "extract: 0 done, 11 already done" in again
