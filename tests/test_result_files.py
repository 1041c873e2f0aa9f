"""RESULTS_DIR files: written whole, named only inside the folder, deleted with dropped jobs."""

from __future__ import annotations

import pytest

from backend.distributed.results import ResultFiles
from backend.model.types import EncodedImage

JOB = "A" * 22


def _png(seed: int) -> EncodedImage:
    return EncodedImage(b"\x89PNG" + bytes([seed]), "image/png", seed)


def test_saved_images_load_back_and_leave_no_temporary_files(tmp_path):
    files = ResultFiles(tmp_path)
    described = files.save(JOB, 1, [_png(1), _png(2)])
    assert [each["file"] for each in described] == [f"{JOB}.1.0.png", f"{JOB}.1.1.png"]
    assert [image.data for image in files.load(described)] == [_png(1).data, _png(2).data]
    assert sorted(path.name for path in tmp_path.iterdir()) == [f"{JOB}.1.0.png", f"{JOB}.1.1.png"]


def test_a_record_cannot_name_a_file_outside_the_folder(tmp_path):
    (tmp_path / "secret").write_text("no")
    with pytest.raises(ValueError, match="not a result file name"):
        ResultFiles(tmp_path / "results").load(
            [{"file": "../secret", "media_type": "x", "seed": 0}]
        )


def test_the_files_of_jobs_the_store_trimmed_are_deleted(tmp_path):
    files = ResultFiles(tmp_path)
    kept = files.save(JOB, 1, [_png(1)])
    dropped = files.save("B" * 22, 2, [_png(2)])
    files.delete_jobs([{"id": "B" * 22, "result": {"files": dropped}}, {"id": "C", "result": None}])
    assert [path.name for path in tmp_path.iterdir()] == [kept[0]["file"]]
