"""`t12k.run`: the collection run as one library call gives what `t12k run` and the three stage
commands give; its docstring's example is run here; settings by field name, items in every form."""

from __future__ import annotations

import doctest

import pytest

import t12k
from t12k.pipeline.fetch import FetchItem
from t12k.pipeline.run import call

pytest.register_assert_rewrite("run_corpus")
import run_corpus as rc  # noqa: E402


def test_the_example_runs_and_leaves_what_the_stage_commands_leave(tmp_path, capfd):
    url, ref = rc.served(), rc.reference()
    work = tmp_path / "work"
    globs = {"t12k": t12k, "corpus": [(m, f"{url}/{m}.mp4") for m in ("r1", "r3")], "work": work}
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    (test,) = finder.find(call.run, "run", globs=globs)
    result = runner.run(test)
    assert result.attempted >= 4 and result.failed == 0
    assert not capfd.readouterr().out  # a library call prints nothing unless asked
    rc.assert_same_stores(work, ref, ids=["r1", "r3"])
    assert rc.statuses(work / "features" / "extract.manifest.csv") == {"r1": "ok", "r3": "ok"}


def test_settings_go_to_the_stages_that_have_them():
    configs = call._configs({"backbones": "resnet", "device": "cpu", "workers": 3, "sleep": 0, "queue": 2})
    assert configs["extract"].backbones == "resnet" and configs["run"].queue == 2
    assert configs["shots"].device == configs["extract"].device == "cpu"  # shared, as --device
    assert configs["fetch"].workers == 3 and configs["extract"].workers != 3  # --workers is fetch's
    with pytest.raises(t12k.T12kError, match="--fpc must be"):
        call._configs({"fpc": 0})
    with pytest.raises(t12k.T12kError, match=r"^t12k.run has no setting 'treshold'; did you mean threshold\?"):
        call._configs({"treshold": 0.4})


def test_items_in_every_form(tmp_path):
    listing = tmp_path / "list.csv"
    listing.write_text("id,url\na1,http://127.0.0.1:9/a1.mp4\n")
    want = [FetchItem("a1", "http://127.0.0.1:9/a1.mp4")]
    assert call._items(listing) == call._items(str(listing)) == want
    assert call._items([("a1", "http://127.0.0.1:9/a1.mp4")]) == call._items(want) == want
    (one,) = call._items("http://127.0.0.1:9/a1.mp4")
    assert one.url == "http://127.0.0.1:9/a1.mp4"
    with pytest.raises(t12k.T12kError, match="cannot read the item 3"):
        call._items([3])
    with pytest.raises(t12k.T12kError, match="nothing to run"):
        call._items([])
