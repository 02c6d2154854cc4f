#!/usr/bin/env python3
"""imageapi's thumbnail pipeline against libvips' vipsthumbnail, as whole processes.

For every PNG/JPEG in the corpus (or the folder given), both tools make the same thumbnail
heights, one image per process, alternating run by run so that both see the same machine
state. Printed per image: the median wall time of each tool and the ratio ours / vips;
then the ratio over all JPEGs and all PNGs (sum of medians).

  ours:  imageapi-worker thumbnail FILE --height 200 [--height 400] --out DIR
         (all heights from one decode, in one process)
  vips:  vipsthumbnail FILE -s xH -o DIR/%s-H.EXT[...]   (one process per height: the CLI
         makes one size per run)

Settings matched to ours: JPEG quality 85 and metadata stripped; PNG at vips' fastest
compression (compression=1) and stripped.

Usage (from the workspace root; needs `apt-get install libvips-tools`):
  cargo build --release -p imageapi-worker
  python3 scripts/bench-vs-vips.py [--runs 5] [--heights 200] [--heights 200,400] [DIR]
"""

import argparse
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
OURS = ROOT / "target" / "release" / "imageapi-worker"


def timed(cmd):
    started = time.perf_counter()
    result = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"failed: {' '.join(map(str, cmd))}\n{result.stderr.decode(errors='replace')}")
    return elapsed


def vips_output(out, height, suffix):
    if suffix == ".png":
        return f"{out}/%s-{height}.png[compression=1,strip]"
    return f"{out}/%s-{height}.jpg[Q=85,strip]"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", nargs="?", default=str(ROOT.parent / "shared" / "corpus"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--heights", action="append", help="comma-separated heights, e.g. 200,400 (repeatable)")
    args = parser.parse_args()
    sets = [[int(h) for h in s.split(",")] for s in (args.heights or ["200", "200,400"])]
    if not OURS.exists():
        sys.exit(f"{OURS} is missing: cargo build --release -p imageapi-worker")
    if not shutil.which("vipsthumbnail"):
        sys.exit("vipsthumbnail is missing: apt-get install libvips-tools")
    files = sorted(p for p in pathlib.Path(args.dir).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    vips_version = subprocess.run(["vipsthumbnail", "--vips-version"], capture_output=True, text=True).stdout.strip()
    print(f"{vips_version}; {os.cpu_count()} cores; {args.runs} runs per tool and image, medians in ms")
    out = tempfile.mkdtemp(prefix="imageapi-vs-vips-")
    try:
        for heights in sets:
            label = "+".join(map(str, heights))
            print(f"\nheights {label}")
            print(f"{'image':44s} {'ours':>8s} {'vips':>8s} {'ratio':>7s}")
            totals = {".jpg": [0.0, 0.0], ".png": [0.0, 0.0]}
            for f in files:
                ours_cmd = [str(OURS), "thumbnail", str(f), "--out", out]
                for h in heights:
                    ours_cmd += ["--height", str(h)]
                vips_cmds = [["vipsthumbnail", str(f), "-s", f"x{h}", "-o", vips_output(out, h, f.suffix.lower())]
                             for h in heights]
                ours_t, vips_t = [], []
                for _ in range(args.runs):
                    ours_t.append(timed(ours_cmd))
                    vips_t.append(sum(timed(c) for c in vips_cmds))
                o, v = statistics.median(ours_t) * 1000, statistics.median(vips_t) * 1000
                kind = ".png" if f.suffix.lower() == ".png" else ".jpg"
                totals[kind][0] += o
                totals[kind][1] += v
                print(f"{f.name:44s} {o:8.1f} {v:8.1f} {o / v:7.2f}")
            for kind, (o, v) in totals.items():
                if v:
                    print(f"{'all ' + kind[1:].upper() + ' (sum of medians)':44s} {o:8.1f} {v:8.1f} {o / v:7.2f}")
    finally:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
