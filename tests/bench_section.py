"""Puts a section into BENCHMARKS.md for tests/load.sh and tests/hot_paths.sh: replaces the one
under the same `## ` heading (up to the next `## ` heading) or appends it, leaving every other
section (another command's) as it is.

    python3 tests/bench_section.py <file> <section.md> "<## heading>"
"""
import sys

path, section_path, heading = sys.argv[1:]
text = open(path, encoding="utf-8").read()
section = open(section_path, encoding="utf-8").read().rstrip("\n") + "\n"
lines = text.splitlines(keepends=True)
start = next((i for i, line in enumerate(lines) if line.rstrip("\n") == heading), None)
if start is None:
    out = text.rstrip("\n") + "\n\n" + section
else:
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    tail = "".join(lines[end:])
    out = "".join(lines[:start]) + section + ("\n" + tail if tail else "")
open(path, "w", encoding="utf-8").write(out)
