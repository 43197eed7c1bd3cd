"""find_videos: the trailers of a videos folder, and what it says about ids with several files."""

from __future__ import annotations

import pytest

from t12k.errors import T12kError
from t12k.pipeline.videos import find_videos


def _touch(folder, *names):
    for n in names:
        (folder / n).write_bytes(b"not read here")


def test_an_id_with_several_files_uses_the_mp4_and_says_so(tmp_path, capsys):
    _touch(tmp_path, "dup.mkv", "dup.mp4", "other.webm", "other.MOV", "solo.mp4", ".hidden.mp4", "notes.txt")
    found = find_videos(tmp_path)
    assert found == {"dup": tmp_path / "dup.mp4", "other": tmp_path / "other.webm", "solo": tmp_path / "solo.mp4"}
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1  # one warning for the folder, not one per id
    assert err.startswith(f"warning: 2 id(s) have several videos in {tmp_path}: ")
    assert "dup (dup.mp4 used; dup.mkv left out)" in err and "other (other.webm used; other.MOV left out)" in err
    assert "solo" not in err and "keep one file per id" in err


def test_with_ids_only_their_duplicates_are_named(tmp_path, capsys):
    _touch(tmp_path, "dup.mkv", "dup.mp4", "solo.mp4")
    assert find_videos(tmp_path, ["solo"]) == {"solo": tmp_path / "solo.mp4"}
    assert capsys.readouterr().err == ""
    assert find_videos(tmp_path, ["dup"]) == {"dup": tmp_path / "dup.mp4"}
    assert "dup (dup.mp4 used; dup.mkv left out)" in capsys.readouterr().err


def test_many_duplicates_are_summed_up(tmp_path, capsys):
    for k in range(8):
        _touch(tmp_path, f"m{k}.mp4", f"m{k}.webm")
    assert len(find_videos(tmp_path)) == 8
    err = capsys.readouterr().err
    assert "warning: 8 id(s)" in err and "m4 (m4.mp4 used" in err and "m5" not in err and "and 3 more" in err


def test_missing_folder_ids_and_videos_are_clear_errors(tmp_path, capsys):
    with pytest.raises(T12kError, match="does not exist"):
        find_videos(tmp_path / "nope")
    with pytest.raises(T12kError, match="no videos"):
        find_videos(tmp_path)
    _touch(tmp_path, "a.mp4")
    with pytest.raises(T12kError, match="no video for id.s. b in"):
        find_videos(tmp_path, ["a", "b"])
    assert capsys.readouterr().err == ""
