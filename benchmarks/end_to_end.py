"""End to end, as the user runs it (issue 23): a fresh ``python -m deepexposure`` process, file in, file out,
against a short OpenCV script doing the same job (read, three exposures by a LUT, ``MergeMertens``, write).

Rows, each at 3, 12 and 24 MP (JPEGs upscaled from ``samples/dicm_34.jpg``, quality 95):

* ``enhance`` (the default: natural model, rolloff renderer), ``enhance --look expert``,
  ``render --ev -1 --ev 1 --ev 2`` (fusion of the photo with three exposures);
* ``opencv``: :data:`OPENCV_SCRIPT` run with ``python``, timed *inside* the script after its imports (so no
  interpreter start-up or import is counted for OpenCV): ``cv2.imread``, the exposures at EV -1, +1, +2 made with a
  256-entry LUT (``cv2.LUT``), ``cv2.createMergeMertens(1, 1, 1).process`` (the weights deepexposure uses; the
  no-argument constructor switches well-exposedness off), ``cv2.imwrite`` (quality 95).

Every command runs once untimed (a warm-up: the processes read their modules' bytecode, as an installed package's
are, from a cache the warm-up writes, whatever ``PYTHONDONTWRITEBYTECODE`` says), then ``--repeat`` times (default
5), interleaved; best and median wall seconds are printed, with the
peak RSS of the process (``wait4``), the ratio median OpenCV / median deepexposure and the ratio within each round
(OpenCV's run / this command's run of the same round: median and smallest over the rounds; the VM's speed drifts
over minutes, which moves two neighbouring runs alike). Where the time goes comes
from the same processes: ``DEEPEXPOSURE_PROFILE=1`` makes the pipeline print its stages (decode, model =
preview + model, render, style, encode) to stderr; start-up = wall minus those stages (interpreter start, imports,
argument parsing, exit).

Then folder throughput: ``--photos`` 12 MP photos (default 100) with ``enhance -j 2`` and ``render -j 2``, against
the OpenCV script over the same folder split between 2 processes (each timed inside after its imports; the slower
one counts).

``--src`` (repeatable): source trees to compare in one run (e.g. a checkout of the base commit and this one); the
first is the baseline of the ratio columns. Subprocesses get ``PYTHONPATH=<src>``.

Usage: ``python benchmarks/end_to_end.py [--sizes 3 12 24] [--repeat 5] [--photos 100] [--src DIR ...]``
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PHOTO = REPO / "samples" / "dicm_34.jpg"
EVS = (-1.0, 1.0, 2.0)

#: The OpenCV reference: argv = EVs then pairs of (source, destination); prints the seconds after its imports.
OPENCV_SCRIPT = r'''
import sys, time
import cv2
import numpy as np
t0 = time.perf_counter()
evs = [float(e) for e in sys.argv[1].split(",")]
x = np.arange(256, dtype=np.float64) / 255
lin = np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
luts = []
for ev in evs:
    y = np.clip(lin * 2.0 ** ev, 0, 1)
    s = np.where(y <= 0.0031308, y * 12.92, 1.055 * y ** (1 / 2.4) - 0.055)
    luts.append(np.clip(np.rint(s * 255), 0, 255).astype(np.uint8))
merge = cv2.createMergeMertens(1.0, 1.0, 1.0)
pairs = sys.argv[2:]
for src, dst in zip(pairs[::2], pairs[1::2]):
    img = cv2.imread(src)
    fused = merge.process([img] + [cv2.LUT(img, lut) for lut in luts])
    cv2.imwrite(dst, np.clip(fused * 255 + 0.5, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 95])
print(time.perf_counter() - t0)
'''

STAGES = ("decode", "model", "render", "style", "encode")


#: Where the child processes keep their bytecode (set in main): a user's installed package has its ``.pyc`` files, so
#: the runs read them too, whatever PYTHONDONTWRITEBYTECODE this shell has (compiling deepexposure's modules from
#: source costs a fresh process about 0.09 s; a warm-up run of every command writes them first).
PYCACHE: Path | None = None


def _env(src: str | None, profile: bool = False) -> dict:
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if PYCACHE is not None:
        env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    env.pop("DEEPEXPOSURE_PROFILE", None)
    if profile:
        env["DEEPEXPOSURE_PROFILE"] = "1"
    return env


def run_rusage(cmd: list[str], env: dict) -> tuple[float, float, str, str]:
    """(wall s, peak RSS MB, stdout, stderr) of one fresh process (peak RSS from ``wait4``)."""
    with tempfile.TemporaryFile("w+") as fo, tempfile.TemporaryFile("w+") as fe:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, env=env, stdout=fo, stderr=fe, text=True)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        fo.seek(0)
        fe.seek(0)
        out, err = fo.read(), fe.read()
    if p.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{err[-2000:]}")
    return wall, ru.ru_maxrss / 1024, out, err


def stages(err: str) -> dict[str, float]:
    """Sum of the ``profile: <stage> <s>`` lines of a run's stderr."""
    acc: dict[str, float] = {}
    for name, s in re.findall(r"profile: (\w+) ([0-9.]+)", err):  # anywhere: a progress bar may share the line
        acc[name] = acc.get(name, 0.0) + float(s)
    return acc


def make_photo(src: Path, dst: Path, mp: float) -> tuple[int, int]:
    import cv2

    img = cv2.imread(str(src))
    w = int(round((mp * 1e6 * 4 / 3) ** 0.5))
    h = int(round(w * 3 / 4))
    cv2.imwrite(str(dst), cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC), [cv2.IMWRITE_JPEG_QUALITY, 95])
    return w, h


COMMANDS = {
    "enhance": ["enhance"],
    "enhance --look expert": ["enhance", "--look", "expert"],
    "render --ev -1 --ev 1 --ev 2": ["render", *[a for e in EVS for a in ("--ev", f"{e:g}")]],
}


def single(args, tmp: Path, script: Path) -> list[dict]:
    rows = []
    for mp in args.sizes:
        src = tmp / f"in_{mp:g}mp.jpg"
        w, h = make_photo(args.photo, src, mp)
        cmds = {("opencv", None): [sys.executable, str(script), ",".join(f"{e:g}" for e in EVS), str(src),
                                   str(tmp / "ocv.jpg")]}
        for tree in args.src:
            for name, sub in COMMANDS.items():
                if args.commands and name.split()[0] not in args.commands and name not in args.commands:
                    continue
                cmds[(name, tree)] = [sys.executable, "-m", "deepexposure", *sub, str(src), "-o",
                                      str(tmp / "out.jpg"), "--overwrite"]
        res: dict = {k: [] for k in cmds}
        for key, cmd in cmds.items():  # warm-up, not timed: bytecode written, files in the page cache
            run_rusage(cmd, _env(key[1]))
        for _ in range(args.repeat):  # interleaved: slow drifts of the machine hit every command alike
            for key, cmd in cmds.items():
                wall, peak, out, err = run_rusage(cmd, _env(key[1], profile=key[0] != "opencv"))
                if key[0] == "opencv":
                    wall = float(out.strip().splitlines()[-1])
                res[key].append((wall, peak, stages(err)))
        for key, runs in res.items():
            walls = [r[0] for r in runs]
            st = {s: statistics.median(r[2].get(s, 0.0) for r in runs) for s in STAGES}
            rows.append({"mp": mp, "size": f"{w}x{h}", "command": key[0], "src": key[1], "best": min(walls),
                         "median": statistics.median(walls), "peak_mb": max(r[1] for r in runs), "stages": st,
                         "walls": walls})
    return rows


def folder(args, tmp: Path, script: Path) -> list[dict]:
    """Throughput over ``args.photos`` 12 MP photos with 2 workers."""
    import shutil

    import cv2

    fold = tmp / "folder"
    fold.mkdir()
    first = fold / "p000.jpg"
    make_photo(args.photo, first, 12)
    base = cv2.imread(str(first))
    for i in range(1, args.photos):  # different photos (flips, brightness), same size
        img = base[:, ::-1] if i % 2 else base
        img = cv2.convertScaleAbs(img, alpha=0.6 + 0.8 * (i % 7) / 6)
        cv2.imwrite(str(fold / f"p{i:03d}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    files = sorted(fold.iterdir())
    rows = []
    outd = tmp / "ocv_out"
    outd.mkdir()
    halves = [files[0::2], files[1::2]]
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, str(script), ",".join(f"{e:g}" for e in EVS),
                               *[str(a) for f in part for a in (f, outd / f.name)]], stdout=subprocess.PIPE, text=True)
             for part in halves]
    inner = [float(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    outer = time.perf_counter() - t0
    rows.append({"command": "opencv, 2 processes", "src": None, "s": max(inner), "outer": outer})
    for tree in args.src:
        for name in ("enhance", "render --ev -1 --ev 1 --ev 2"):
            if args.commands and name.split()[0] not in args.commands:
                continue
            out = tmp / "out_folder"
            wall, peak, _, _ = run_rusage([sys.executable, "-m", "deepexposure", *COMMANDS[name], str(fold), "-o",
                                           f"{out}/", "-j", "2"], _env(tree))
            assert len(list(out.iterdir())) == args.photos
            shutil.rmtree(out)
            rows.append({"command": f"{name} -j 2", "src": tree, "s": wall, "outer": wall})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photo", type=Path, default=DEFAULT_PHOTO)
    ap.add_argument("--sizes", type=float, nargs="+", default=[3, 12, 24], help="megapixels")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--photos", type=int, default=100, help="folder size of the throughput test (0: skip it)")
    ap.add_argument("--src", action="append", default=None,
                    help="source tree (PYTHONPATH) to time; repeat to compare; default: this checkout's src")
    ap.add_argument("--commands", nargs="*", default=None, help="only these commands (enhance, render, expert)")
    args = ap.parse_args()
    args.src = [str(Path(s).resolve()) for s in (args.src or [REPO / "src"])]
    if args.commands:
        args.commands = ["enhance --look expert" if c == "expert" else c for c in args.commands]
    load = os.getloadavg()
    global PYCACHE
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        PYCACHE = tmp / "pycache"
        script = tmp / "opencv_mertens.py"
        script.write_text(OPENCV_SCRIPT)
        rows = single(args, tmp, script)
        frows = folder(args, tmp, script) if args.photos else []
    load_after = os.getloadavg()
    names = {s: (Path(s).parent.name or s) for s in args.src}
    print(f"# `python benchmarks/end_to_end.py {' '.join(sys.argv[1:])}`: {os.cpu_count()} CPU cores, load "
          f"average {load[0]:.2f} before, {load_after[0]:.2f} after; fresh processes, {args.repeat} interleaved runs "
          "each; OpenCV timed inside its script after its imports")
    print("| size | command | tree | best s | median s | OpenCV median / median | per round: median (min) | "
          "peak RSS MB | start-up s | decode s | model s | render s | style s | encode s |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for mp in args.sizes:
        sub = [r for r in rows if r["mp"] == mp]
        ocv = next(r for r in sub if r["command"] == "opencv")
        for r in sub:
            st = r["stages"]
            startup = r["median"] - sum(st.values()) if r["src"] else 0.0
            cells = " | ".join(f"{st[s]:.2f}" for s in STAGES) if r["src"] else " | ".join("-" * 1 for _ in STAGES)
            # the ratio within each round (OpenCV and this command run back to back): the VM's drift over the
            # minutes of a run moves both alike, so it cancels there
            paired = [o / x for o, x in zip(ocv["walls"], r["walls"], strict=True)]
            print(f"| {r['size']} ({mp:g} MP) | {r['command']} | {names.get(r['src'], '-')} | {r['best']:.2f} | "
                  f"{r['median']:.2f} | {ocv['median'] / r['median']:.2f}x | {statistics.median(paired):.2f}x "
                  f"({min(paired):.2f}x) | {r['peak_mb']:.0f} | {startup:.2f} | {cells} |")
    if 12 in args.sizes and 24 in args.sizes:
        print("\n24 MP / 12 MP (median wall):")
        for r12 in (r for r in rows if r["mp"] == 12):
            r24 = next(r for r in rows if r["mp"] == 24 and r["command"] == r12["command"] and r["src"] == r12["src"])
            print(f"- {r12['command']} ({names.get(r12['src'], 'opencv')}): {r24['median'] / r12['median']:.2f}x")
    if frows:
        ocv = frows[0]
        print(f"\nFolder of {args.photos} 12 MP photos, 2 workers:")
        print("| command | tree | wall s | photos/s | vs OpenCV (2 processes) |")
        print("|---|---|---:|---:|---:|")
        for r in frows:
            print(f"| {r['command']} | {names.get(r['src'], '-')} | {r['s']:.1f} | {args.photos / r['s']:.2f} | "
                  f"{ocv['s'] / r['s']:.2f}x |")
        print(f"(OpenCV: the slower of its 2 processes timed inside after imports; {ocv['outer']:.1f} s with start-up)")


if __name__ == "__main__":
    main()
