"""`t12k experiment`: configurations x splits, the reference's mean±std CSVs, the Table 6
markdown, the figures, and reuse of finished runs. Tiny synthetic stores with published
names (plain zarr format 2, as the published stores) so the backbones are recognized."""

from __future__ import annotations

import csv
import json
import struct
from pathlib import Path

import numcodecs
import numpy as np
import pytest
import zarr

from t12k import GENRES
from t12k.backbones import REGISTRY
from t12k.cli import main
from t12k.divita.experiment import BUILTIN, load_configs, run_experiment
from t12k.divita.report import format_mean_std
from t12k.errors import T12kError
from t12k.storage import MTGC, write_mtgc
from t12k.storage.mtgc import stratified_splits

IMAGE = "trailers_i_resnet_fpc24.zarr"
VIDEO = "trailers_k_r2plus1d_fps24_fpc24.zarr"


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def _store(path: Path, ids, lengths, labels, nf, rng):
    g = zarr.open_group(str(path), mode="w", zarr_format=2)
    g.attrs["num_features"] = nf
    w = rng.normal(size=(10, nf))
    for mid, n, y in zip(ids, lengths, labels):
        x = (y @ w)[None, :] + rng.normal(size=(n, nf))
        a = g.create_array(mid, shape=x.shape, dtype="float32", chunks=(64, nf), compressors=numcodecs.Blosc())
        a[...] = x.astype(np.float32)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("exp")
    rng = np.random.default_rng(0)
    n = 50
    ids = [f"m{i:03d}" for i in range(n)]
    y = np.zeros((n, 10), np.int8)
    for i in range(n):
        y[i, rng.choice(10, int(rng.integers(1, 4)), replace=False)] = 1
    lengths = rng.integers(10, 50, n)
    write_mtgc(root / "mtgc.csv", MTGC(ids, y, stratified_splits(y, seed=0)))
    _store(root / IMAGE, ids, lengths, y, 12, rng)
    _store(root / VIDEO, ids, lengths, y, 8, rng)
    return root


CONFIGS = {
    "defaults": {"lr": 0.005, "batch_size": 16, "max_epochs": 2, "device": "cpu"},
    "configs": [
        {"name": "ResNet", "group": "Heavy Conv", "image_store": IMAGE, "aggregation": "savg"},
        {
            "name": "ResNet-Fusion",
            "group": "Heavy Conv",
            "image_store": IMAGE,
            "video_store": VIDEO,
            "aggregation": "conv",
        },
    ],
}


@pytest.fixture(scope="module")
def experiment(data_dir, tmp_path_factory):
    cfg = data_dir / "configs.json"
    cfg.write_text(json.dumps(CONFIGS))
    specs, extra = load_configs(cfg)
    out = tmp_path_factory.mktemp("results") / "mine"
    logs = []
    res = run_experiment(specs, out, data_dir=data_dir, progress=False, log=logs.append)
    return res, logs


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", path
    return struct.unpack(">II", head[16:24])


def test_per_run_csvs_hold_every_runs_metrics(experiment):
    res, logs = experiment
    out = res.out_dir
    for stem, subset in (("tst", "test"), ("val", "val")):
        rows = _rows(out / f"{stem}_run.csv")
        assert [(r["run"], r["split"]) for r in rows] == [
            (n, str(s)) for n in ("ResNet", "ResNet-Fusion") for s in (0, 1, 2)
        ]
        for r in rows:
            slug = r["run"]
            metrics = {m["subset"]: m for m in _rows(out / "runs" / slug / f"split{r['split']}" / "metrics.csv")}
            for k in ("muAP", "mAP", "wAP", "sAP", *GENRES):
                assert r[k] == metrics[subset][k]  # both 2 decimals (nan for a genre absent from a subset)
    assert len(logs) == 6 and all("trained" in line for line in logs)


def test_mean_std_as_the_reference(experiment):
    res, _ = experiment
    per_run = _rows(res.out_dir / "tst_run.csv")
    summary = {r["run"]: r for r in _rows(res.out_dir / "tst.csv")}
    for name in ("ResNet", "ResNet-Fusion"):
        assert summary[name]["splits"] == "3"
        for k in ("muAP", "mAP", "sAP"):
            v = np.array([float(r[k]) for r in per_run if r["run"] == name])
            assert summary[name][k] == f"{v.mean():.2f}±{np.std(v, ddof=1):.2f}"
    assert format_mean_std([71.5]) == "71.50±0.00"
    assert format_mean_std([70.0, 72.0, 74.0]) == "72.00±2.00"


def test_table_in_the_layout_of_table_6(experiment):
    res, _ = experiment
    text = (res.out_dir / "table.md").read_text()
    lines = text.splitlines()
    assert lines[0] == "| Backbone | ImageNet | Kinetics | μAP | mAP | wAP | sAP | Params (M) | % | FLOPs (G) | % |"
    assert lines[2].startswith("| *Heavy Conv* |")
    summary = {r["run"]: r for r in _rows(res.out_dir / "tst.csv")}
    resnet, r2p1 = REGISTRY["resnet"].weights_enum.meta, REGISTRY["r2plus1d"].weights_enum.meta
    params = {"ResNet": resnet["num_params"] / 1e6, "ResNet-Fusion": (resnet["num_params"] + r2p1["num_params"]) / 1e6}
    flops = {"ResNet": resnet["_ops"] * 30, "ResNet-Fusion": (resnet["_ops"] + r2p1["_ops"]) * 30}
    best = max(summary, key=lambda n: float(summary[n]["muAP"].split("±")[0]))
    rows = {cells[0]: cells for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines[3:5])}
    assert rows["ResNet"][1:3] == ["✓", ""] and rows["ResNet-Fusion"][1:3] == ["✓", "✓"]
    for name, cells in rows.items():
        assert cells[3:7] == [summary[name][k] for k in ("muAP", "mAP", "wAP", "sAP")]
        assert cells[7] == f"{params[name]:.1f}" and cells[9] == f"{flops[name]:.1f}"
        assert cells[8] == f"{100 * params[name] / params[best]:.2f}"
        assert cells[10] == f"{100 * flops[name] / flops[best]:.2f}"
    assert f"% of {best}" in text


def test_figures_are_written(experiment):
    res, _ = experiment
    figs = res.out_dir / "figures"
    for name in (
        "curves_ResNet.png",
        "curves_ResNet-Fusion.png",
        "pr_ResNet.png",
        "pr_ResNet-Fusion.png",
        "tradeoff.png",
    ):
        w, h = _png_size(figs / name)
        assert w >= 400 and h >= 300, name
    assert _png_size(figs / "tradeoff.png")[0] > _png_size(figs / "pr_ResNet.png")[0]  # two panels


def test_finished_runs_are_reused_and_longer_runs_resume(experiment, data_dir):
    res, _ = experiment
    specs = [r.spec for r in res.configs]
    ckpt = res.out_dir / "runs" / "ResNet" / "split0" / "checkpoint.pt"
    before = ckpt.stat().st_mtime_ns
    table = (res.out_dir / "table.md").read_text()
    logs = []
    run_experiment(specs, res.out_dir, data_dir=data_dir, progress=False, log=logs.append)
    assert all("done before" in line for line in logs) and ckpt.stat().st_mtime_ns == before
    assert (res.out_dir / "table.md").read_text() == table
    logs = []
    again = run_experiment(
        specs[:1],
        res.out_dir,
        data_dir=data_dir,
        splits=[0],
        overrides={"max_epochs": 3},
        progress=False,
        log=logs.append,
    )
    assert "resumed" in logs[0]
    hist = _rows(again.configs[0].run_dirs[0] / "history.csv")
    assert [h["epoch"] for h in hist] == ["1", "2", "3"]


def test_builtin_lists_and_config_errors(tmp_path, data_dir):
    specs, _ = load_configs("transfer")
    assert [s.name for s in specs] == [
        "ShuffleNet-2D",
        "ShuffleNet-3D",
        "ShuffleNet-Fusion",
        "ResNet",
        "ResNet-2+1D",
        "ResNet-Fusion",
        "Swin-2D",
        "Swin-3D",
    ]
    stores = {(s.image_store, s.video_store) for s in specs}
    assert ("trailers_i_shufflenet_fpc24.zarr", "trailers_k_shufflenet_fps24_fpc24.zarr") in stores
    assert (None, "trailers_ik_swin_fps24_fpc24.zarr") in stores
    assert load_configs("table6")[0][0].settings == {"aggregation": "ctt"}
    assert {s.settings["aggregation"] for s in load_configs("aggregation")[0]} == {"gru", "conv", "tsfm"}
    assert set(BUILTIN) == {"transfer", "table6", "aggregation"}
    with pytest.raises(T12kError, match="trailers_i_shufflenet_fpc24.zarr does not exist"):
        run_experiment(specs, tmp_path / "out", data_dir=data_dir, progress=False)
    (tmp_path / "bad.json").write_text(json.dumps([{"name": "x", "image_store": IMAGE, "lr_rate": 1}]))
    with pytest.raises(T12kError, match="unknown setting 'lr_rate'"):
        load_configs(tmp_path / "bad.json")
    with pytest.raises(T12kError, match="neither a built-in list"):
        load_configs("tranfser")


def test_cli_experiment_with_a_yaml_file(data_dir, tmp_path, capsys):
    yaml_text = (
        f"data_dir: {data_dir}\n"
        "defaults: {max_epochs: 1, batch_size: 32}\n"
        "configs:\n"
        f"  - name: R(2+1)D\n    video_store: {VIDEO}\n    aggregation: savg\n"
    )
    (tmp_path / "mine.yaml").write_text(yaml_text)
    out = tmp_path / "res"
    assert (
        main(
            [
                "experiment",
                str(tmp_path / "mine.yaml"),
                "--out",
                str(out),
                "--splits",
                "0,2",
                "--quiet",
                "--device",
                "cpu",
                "--num-threads",
                "1",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "| R(2+1)D |  | ✓ |" in text and "2 splits" in text
    assert [r["split"] for r in _rows(out / "tst_run.csv")] == ["0", "2"]
    assert (out / "figures" / "curves_R_2+1_D.png").is_file()
    assert main(["experiment", str(tmp_path / "mine.yaml"), "--only", "ResNet"]) == 2
    assert "not a configuration" in capsys.readouterr().err


def test_yaml_values_take_the_type_of_their_training_setting(tmp_path, data_dir):
    # PyYAML reads 1e-4 (no dot) as the string '1e-4'; the configuration gets the float
    (tmp_path / "lr.yaml").write_text(
        "defaults: {max_epochs: 3, batch_size: '16'}\n"
        "configs:\n"
        f"  - name: A\n    image_store: {IMAGE}\n    lr: 1e-4\n    num_threads: null\n    weight_decay: 0\n"
    )
    specs, extra = load_configs(tmp_path / "lr.yaml")
    assert extra["defaults"] == {"max_epochs": 3, "batch_size": 16}
    cfg = specs[0].train_config(0, tmp_path / "run", data_dir, data_dir / "mtgc.csv")
    assert cfg.lr == 1e-4 and type(cfg.lr) is float and type(cfg.weight_decay) is float
    assert cfg.max_epochs == 3 and cfg.batch_size == 16 and cfg.num_threads is None
    assert cfg.image_store == data_dir / IMAGE and cfg.split == 0
    cfg.validate()


@pytest.mark.parametrize(
    "setting,where,expected",
    [
        ("max_epochs: ten", "configuration 1 (A)", "max_epochs 'ten' is not valid; max_epochs must be an integer"),
        ("aggregation: lstm", "configuration 1 (A)", "aggregation must be one of tsfm, gru, conv, savg, ctt"),
        ("lr: fast", "configuration 1 (A)", "lr must be a number"),
        ("num_threads: [1]", "configuration 1 (A)", "num_threads must be an integer or null"),
        ("image_backbone: 3", "configuration 1 (A)", "image_backbone must be a string or null"),
        ("dropout: 0.1", "configuration 1", "unknown setting 'dropout'"),
    ],
)
def test_a_wrong_setting_in_a_file_names_the_file_configuration_and_setting(tmp_path, setting, where, expected):
    path = tmp_path / "bad.yaml"
    path.write_text(f"configs:\n  - name: A\n    image_store: {IMAGE}\n    {setting}\n")
    with pytest.raises(T12kError) as err:
        load_configs(path)
    message = str(err.value)
    assert "\n" not in message and f"{path} {where}" in message and expected in message


def test_wrong_defaults_are_named_as_defaults(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"defaults": {"lr": "1e-3", "fusion": "middle"}, "configs": [{"name": "A"}]}))
    with pytest.raises(T12kError, match=r"bad\.json defaults: fusion 'middle' is not valid; fusion must be one of"):
        load_configs(path)


# ---- refusals before any training, and one experiment per results folder ----------------------


def test_configurations_that_would_share_a_run_folder_are_refused(tmp_path, data_dir):
    path = tmp_path / "clash.json"
    path.write_text(json.dumps([{"name": "a b", "image_store": IMAGE}, {"name": "a_b", "image_store": IMAGE}]))
    specs, _ = load_configs(path)
    with pytest.raises(T12kError) as err:
        run_experiment(specs, tmp_path / "out", data_dir=data_dir, progress=False)
    assert str(err.value) == "configurations 'a b' and 'a_b' would share the run folder runs/a_b; rename one of them"
    assert not (tmp_path / "out").exists()


def test_labels_with_ids_missing_from_a_store_fail_before_any_training(tmp_path, data_dir):
    labels = tmp_path / "mtgc.csv"
    labels.write_bytes((data_dir / "mtgc.csv").read_bytes() + b"zz999," + b"1,0,0,0,0,0,0,0,0,0,0,1,2\n")
    specs, _ = load_configs(_config_file(tmp_path, {"configs": [{"name": "A", "image_store": IMAGE}]}))
    with pytest.raises(T12kError) as err:
        run_experiment(specs, tmp_path / "out", data_dir=data_dir, labels=labels, progress=False)
    assert str(err.value) == (
        f"id 'zz999' of {labels} is not in feature store {data_dir / IMAGE}; extract features for every id of "
        "the labels (t12k extract) or remove the missing rows from the labels"
    )
    assert not (tmp_path / "out").exists()


def _config_file(folder: Path, doc: dict, bom: bool = False) -> Path:
    path = folder / "configs.json"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + json.dumps(doc).encode())
    return path


def test_a_results_folder_in_use_is_refused_and_other_settings_train_anew(tmp_path, data_dir):
    import os

    from t12k.divita.experiment import LOCK_NAME
    from t12k.divita.runfiles import folder_lock

    # a byte-order mark (as Excel or Notepad write) before the JSON is fine
    doc = {"defaults": {"max_epochs": 1, "device": "cpu"}, "configs": [{"name": "A", "image_store": IMAGE}]}
    specs, _ = load_configs(_config_file(tmp_path, doc, bom=True))
    out = tmp_path / "out"
    out.mkdir()
    with folder_lock(out, LOCK_NAME, "results folder", "experiment"), pytest.raises(T12kError) as err:
        run_experiment(specs, out, data_dir=data_dir, splits=[0], progress=False)
    assert str(err.value) == (
        f"results folder {out} is in use by another experiment (pid {os.getpid()}); wait for it or pass another --out"
    )
    logs: list[str] = []
    run_experiment(specs, out, data_dir=data_dir, splits=[0], progress=False, log=logs.append)
    run_experiment(specs, out, data_dir=data_dir, splits=[0], overrides={"seed": 4}, progress=False, log=logs.append)
    assert "; trained, " in logs[0] and "; trained anew (the run there had other settings" in logs[1]
    # a run folder another training holds is left alone, whatever its settings
    from t12k.divita.train import LOCK_NAME as TRAIN_LOCK

    run = out / "runs" / "A" / "split0"
    before = (run / "checkpoint.pt").read_bytes()
    with folder_lock(run, TRAIN_LOCK, "run folder", "training"), pytest.raises(T12kError, match="another training"):
        run_experiment(specs, out, data_dir=data_dir, splits=[0], overrides={"seed": 5}, progress=False)
    assert (run / "checkpoint.pt").read_bytes() == before
