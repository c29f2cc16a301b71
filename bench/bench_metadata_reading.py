"""Reading time with and without instrument metadata, as a ratio within one run.

For each file set (the microscope-tiff files with their tags; uhcs-3class JPEGs, which have none)
the median time to decode every file of the set with :func:`hnf.data.reading.read_grey_and_metadata`
is taken with ``metadata=False`` and ``metadata=True``, the two interleaved round by round
(:func:`bench.timing.interleaved_medians`) so drift of a shared machine falls on both alike.
Prints JSON: per set the file count, both medians (seconds per file) and ``ratio`` = with / without.

    .venv/bin/python bench/bench_metadata_reading.py --data ../shared/data --rounds 15
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

from timing import interleaved_medians  # bench/timing.py, beside this script

from hnf.data.reading import read_grey_and_metadata


def read_all(paths: list[Path], metadata: bool) -> None:
    """Decode every file (grey array, and the metadata when asked)."""
    for path in paths:
        read_grey_and_metadata(path, metadata=metadata)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"), help="folder holding microscope-tiff and uhcs-3class")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--jpegs", type=int, default=60, help="uhcs-3class JPEGs timed (the first, by path)")
    args = parser.parse_args()
    sets = {
        "microscope-tiff": sorted((args.data / "microscope-tiff").rglob("*.tif")),
        "uhcs-3class": sorted((args.data / "uhcs-3class").rglob("*.jpg"))[: args.jpegs],
    }
    out: dict = {"rounds": args.rounds, "python": platform.python_version(), "machine": platform.machine(), "sets": {}}
    for name, paths in sets.items():
        if not paths:
            raise SystemExit(f"{args.data / name}: no files found")
        medians = interleaved_medians(
            {False: lambda p=paths: read_all(p, False), True: lambda p=paths: read_all(p, True)}, args.rounds
        )
        out["sets"][name] = {
            "files": len(paths),
            "without_metadata_s_per_file": medians[False] / len(paths),
            "with_metadata_s_per_file": medians[True] / len(paths),
            "ratio": medians[True] / medians[False],
        }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
