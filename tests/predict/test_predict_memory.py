"""`hnf predict` on a folder of tiny-bytes, huge-dimension images: its peak memory does not grow
with the number of files (decoding runs in a fixed number of threads, full images are dropped as
soon as the model input is made), and an image too narrow to classify is reported, not enlarged."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

RUN_AND_REPORT_PEAK = (
    "import resource, runpy, sys\n"
    "sys.argv = ['hnf', *sys.argv[1:]]\n"
    "try:\n"
    "    runpy.run_module('hnf', run_name='__main__')\n"
    "finally:\n"
    "    print('peak_kib', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
)


def _predict_peak_kib(folder: Path, checkpoint: Path, out: Path) -> tuple[int, list[dict]]:
    done = subprocess.run(
        [sys.executable, "-c", RUN_AND_REPORT_PEAK, "predict", str(folder), "--checkpoint", str(checkpoint),
         "--out", str(out)], capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr
    peak = int(done.stderr.rsplit("peak_kib", 1)[1].split()[0])
    return peak, json.loads(out.read_text())


def test_peak_memory_does_not_grow_with_the_number_of_huge_images(checkpoint: Path, tmp_path: Path) -> None:
    blank = Image.new("L", (4000, 4000), 255)  # 16 M pixels, about 20 KB as PNG
    few, many = tmp_path / "few", tmp_path / "many"
    few.mkdir()
    many.mkdir()
    for i in range(2):
        blank.save(few / f"blank{i}.png")
    for i in range(8):
        blank.save(many / f"blank{i}.png")
    Image.new("L", (10000, 1), 128).save(many / "strip.png")

    peak_few, _ = _predict_peak_kib(few, checkpoint, tmp_path / "few.json")
    peak_many, rows = _predict_peak_kib(many, checkpoint, tmp_path / "many.json")

    by_name = {Path(row["path"]).name: row for row in rows}
    assert all(by_name[f"blank{i}.png"]["error"] is None for i in range(8))
    assert by_name["strip.png"]["error"] == (
        f"{many / 'strip.png'}: 10000x1 pixels is too small to classify "
        "(the short side must be at least 8 pixels)"
    )
    # eight images and a strip need no more than two: at most a 64 MB float32 image more
    assert peak_many < peak_few + 64 * 1024, (peak_few, peak_many)
