"""End-to-end benchmark of ``enhance`` (read -> preview/segment/policy -> fusion render -> write) on 12 and 24 MP.

Prints a table measured in one run: wall time and peak memory (VmHWM of a fresh child process, so the import of
the model etc. is included in memory but not in time) of

* ``natural`` — ``Enhancer()``, the default since 0.3: the shipped natural model (one global EV, ``rolloff``),
  + JPEG read/write; ``expert`` — the same in the expert look (+ its bracket fusion, contrast and saturation);
* ``deepexposure`` — ``Enhancer("paper")``: the paper's policy, fusion renderer, + JPEG read/write;
* ``local`` — the same with ``renderer="local"`` (each EV inside its feathered segment mask, no fusion);
* ``rolloff`` / ``balanced`` — the same with those renderers (local + highlight roll-off; + a fused +-0.5 EV bracket);
* ``opencv`` — the reference: the same read/write around ``cv2.createMergeMertens(1, 1, 1).process`` on the
  original plus the same EVs (exposures made with the same LUT), i.e. the paper's test stage done with OpenCV.

Also times the ``render()`` call alone (wall and CPU, medians) with its own peak memory, and prints whether the
default renderer meets issue 12's targets (< 1.5 s and < 1 GB at 12 MP; 24 MP within 2x of 12 MP).

Then :func:`startup_and_throughput` (issue 12, part 3): fresh ``deepexposure enhance`` processes on 0.3 MP
photos (640x480, made from ``samples/``): one photo end to end (target < 1.0 s) and a folder of 100 with ``-j 2``
(target >= 4 photos/s), with the shipped ONNX model; references measured in the same run: the interpreter's own
start-up (``python -c pass``) and the same commands with the torch ``policy.pt`` (the default before 0.2).

Usage: ``python benchmarks/enhance.py [--photo PATH] [--sizes 12 24] [--repeat 3] [--only renderers|startup]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PHOTO = REPO / "samples" / "dicm_34.jpg"


def _vm(key: str) -> float:
    """A /proc/self/status memory line (VmRSS, VmHWM) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so that the next reading is the peak of what follows."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _child(method: str, src: str, dst: str, repeat: int) -> None:
    """Runs in a fresh process: `repeat` runs of read -> recipe -> render -> write. Reports medians of the whole
    (``time``) and of the render step alone (``render``, wall and CPU s), the process's peak RSS and the render's
    own peak above the RSS it started from."""
    import numpy as np

    from deepexposure.image.io import read_photo, write_photo
    from deepexposure.image.render import render
    from deepexposure.inference.enhance import Enhancer

    if method in ("natural", "expert"):
        enhancer = Enhancer(look=method)
    else:
        enhancer = Enhancer("paper", renderer=method if method in ("local", "rolloff", "balanced") else "fusion")
    times, renders, cpus, render_peaks, peak = [], [], [], [], 0.0
    for _ in range(repeat):
        t0 = time.perf_counter()
        photo = read_photo(src)
        recipe = enhancer.recipe(photo.pixels)
        peak = max(peak, _vm("VmHWM"))
        start = _vm("VmRSS") if _reset_peak() else float("nan")
        t1, c1 = time.perf_counter(), time.process_time()
        if method != "opencv":
            pixels = render(photo.pixels, recipe, renderer=enhancer.renderer)
        else:
            import cv2

            from deepexposure.image.color import apply_ev
            from deepexposure.image.io import from_float

            imgs = [from_float(photo.pixels, 8)]
            lut_in = np.arange(256, dtype=np.float32) / 255.0
            for ev in recipe.evs:
                lut = from_float(apply_ev(lut_in[:, None], ev)[:, 0], 8)
                imgs.append(lut[imgs[0]])
            pixels = np.clip(cv2.createMergeMertens(1.0, 1.0, 1.0).process(imgs), 0, 1).astype(np.float32)
            del imgs
        renders.append(time.perf_counter() - t1)
        cpus.append(time.process_time() - c1)
        render_peaks.append(_vm("VmHWM") - start)
        out = photo.__class__(**{**photo.__dict__, "pixels": pixels})
        write_photo(dst, out, overwrite=True)
        times.append(time.perf_counter() - t0)
        peak = max(peak, _vm("VmHWM"))
        del photo, pixels, out
    print(json.dumps({"time": float(np.median(times)), "render": float(np.median(renders)),
                      "render_cpu": float(np.median(cpus)), "render_peak_mb": max(render_peaks),
                      "renders": renders, "peak_mb": peak, "evs": len(recipe.evs)}))


def _run(method: str, src: Path, dst: Path, repeat: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", method, str(src), str(dst), str(repeat)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _baseline_mb() -> float:
    """Peak RSS of a child that only imports the package and loads the model (subtracted for 'extra' memory)."""
    code = ("from deepexposure.inference.enhance import Enhancer; Enhancer(); import pathlib;"
            "print([l for l in pathlib.Path('/proc/self/status').read_text().splitlines() if l.startswith('VmHWM')][0])")
    line = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return int(line.split()[1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photo", type=Path, default=DEFAULT_PHOTO)
    ap.add_argument("--sizes", type=float, nargs="+", default=[12, 24], help="megapixels")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    ap.add_argument("--only", choices=["renderers", "startup"], default=None, help="run one section only")
    ap.add_argument("--photos", type=int, default=100, help="folder size of the throughput test")
    ap.add_argument("--no-torch", action="store_true", help="skip the torch policy.pt references")
    args = ap.parse_args()
    if args.child:
        _child(args.child[0], args.child[1], args.child[2], int(args.child[3]))
        return
    if args.only != "startup":
        renderer_table(args)
    if args.only != "renderers":
        startup_and_throughput(repeat=max(args.repeat, 3), n_photos=args.photos, torch_reference=not args.no_torch)


def renderer_table(args) -> None:
    """The 12/24 MP renderer table (see the module docstring)."""
    import cv2

    base = _baseline_mb()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        img = cv2.imread(str(args.photo))
        for mp in args.sizes:
            w = int(round((mp * 1e6 * 4 / 3) ** 0.5))
            h = int(round(w * 3 / 4))
            src = Path(tmp) / f"in_{mp:g}mp.jpg"
            cv2.imwrite(str(src), cv2.resize(img, (w, h), interpolation=cv2.INTER_CUBIC), [cv2.IMWRITE_JPEG_QUALITY, 95])
            res = {m: _run(m, src, Path(tmp) / f"out_{m}_{mp:g}.jpg", args.repeat)
                   for m in ("natural", "expert", "deepexposure", "local", "rolloff", "balanced", "opencv")}
            rows.append((f"{w}x{h} ({w * h / 1e6:.1f} MP)", res))
    print(f"photo: {args.photo.name}; peak memory includes {base:.0f} MB of interpreter+model "
          f"(measured alone); medians of {args.repeat} runs in one process per renderer; render = the render() "
          f"call alone (OpenCV: exposures + createMergeMertens(1,1,1)); {os.cpu_count()} CPUs, load average "
          f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print("| size | renderer | EVs | wall s | OpenCV reference s | speed-up | render s (runs) | render CPU s | "
          "OpenCV render s | render speed-up | render peak MB above start | peak MB | OpenCV peak MB | memory ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in rows:
        o = r["opencv"]
        for label, key in (("natural (default)", "natural"), ("expert", "expert"), ("paper fusion", "deepexposure"),
                           ("paper local", "local"), ("paper rolloff", "rolloff"), ("paper balanced", "balanced")):
            d = r[key]
            runs = " ".join(f"{t:.2f}" for t in d["renders"])
            print(f"| {name} | {label} | {d['evs']} | {d['time']:.2f} | {o['time']:.2f} | {o['time'] / d['time']:.1f}x | "
                  f"{d['render']:.2f} ({runs}) | {d['render_cpu']:.2f} | {o['render']:.2f} | "
                  f"{o['render'] / d['render']:.1f}x | {d['render_peak_mb']:.0f} | "
                  f"{d['peak_mb']:.0f} (+{d['peak_mb'] - base:.0f}) | {o['peak_mb']:.0f} (+{o['peak_mb'] - base:.0f}) | "
                  f"{(d['peak_mb'] - base) / max(o['peak_mb'] - base, 1):.2f} |")
    # issue 12 targets for the default renderer: < 1.5 s and < 1 GB at 12 MP on 2 cores; 24 MP within 2x of 12 MP
    by_mp = {mp: r["deepexposure"] for mp, (_, r) in zip(args.sizes, rows, strict=True)}
    print()
    if 12 in by_mp:
        d = by_mp[12]
        for ok, what, miss in ((d["render"] < 1.5, f"fusion render at 12 MP < 1.5 s: {d['render']:.2f} s",
                                f"{d['render'] / 1.5:.2f}x the target"),
                               (d["peak_mb"] < 1024, f"enhance peak memory at 12 MP < 1 GB: {d['peak_mb']:.0f} MB",
                                f"{d['peak_mb'] / 1024:.2f}x the target")):
            print(f"target {what}: " + ("met" if ok else f"MISSED ({miss})"))
    if 12 in by_mp and 24 in by_mp:
        f = by_mp[24]["render"] / by_mp[12]["render"]
        print(f"target fusion render at 24 MP within 2x of 12 MP: {f:.2f}x: "
              + ("met" if f <= 2.0 else f"MISSED ({f / 2:.2f}x the target)"))

# ------------------------------------------------------------------ start-up and throughput (issue 12, part 3)
#: Targets of issue 12: one 0.3 MP photo end to end in a fresh process, and a folder of them with -j 2.
ONE_PHOTO_TARGET_S = 1.0
FOLDER_TARGET_PER_S = 4.0


def _small_photos(folder: Path, n: int) -> list[Path]:
    """``n`` different 640x480 (0.3 MP) JPEGs made from the repository samples (crops, flips, exposure shifts)."""
    import cv2
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    sources = [cv2.imread(str(p)) for p in sorted((REPO / "samples").glob("*.jpg"))]
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        img = sources[i % len(sources)]
        h, w = img.shape[:2]
        ch, cw = int(h * rng.uniform(0.6, 1.0)), int(w * rng.uniform(0.6, 1.0))
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = cv2.resize(img[y : y + ch, x : x + cw], (640, 480), interpolation=cv2.INTER_AREA)
        if i % 2:
            crop = crop[:, ::-1]
        crop = np.clip(crop.astype(np.float32) * rng.uniform(0.5, 1.5), 0, 255).astype(np.uint8)
        paths.append(folder / f"p{i:03d}.jpg")
        cv2.imwrite(str(paths[-1]), crop, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return paths


def _wall(cmd: list[str], env: dict) -> tuple[float, float]:
    """(wall, CPU) seconds of a fresh process running ``cmd`` (CPU = user + system of it and its children: on a
    machine shared with other work it shows what the wall time would be without waiting for a core)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def startup_and_throughput(*, repeat: int = 3, n_photos: int = 100, jobs: int = 2, torch_reference: bool = True) -> None:
    """Print the start-up / throughput table: best of ``repeat`` fresh processes for one photo, one run of the
    ``n_photos`` folder with ``-j jobs``, each with the shipped default (the natural look since 0.3, before it the
    ONNX policy) and (reference) the torch policy.pt."""
    from deepexposure.inference.loader import default_model_path

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    cli = [sys.executable, "-m", "deepexposure", "enhance"]
    models = {"onnx": [], "torch": ["--model", str(default_model_path("pt"))]}
    if not torch_reference:
        del models["torch"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photos = _small_photos(tmp / "in", n_photos)
        one: dict[str, tuple[float, float]] = {
            "python -c pass": min(_wall([sys.executable, "-c", "pass"], env) for _ in range(repeat))}
        for name, extra in models.items():
            one[name] = min(_wall([*cli, str(photos[0]), "-o", str(tmp / f"one_{name}.jpg"), "--overwrite", *extra], env)
                            for _ in range(repeat))
        folder: dict[str, float] = {}
        for name, extra in models.items():
            out = tmp / f"out_{name}"
            folder[name] = n_photos / _wall([*cli, str(tmp / "in"), "-o", f"{out}/", "-j", str(jobs), *extra], env)[0]
            assert len(list(out.iterdir())) == n_photos
            shutil.rmtree(out)
    cores = os.cpu_count()
    print(f"\nStart-up and throughput: fresh `python -m deepexposure enhance` processes, 640x480 (0.3 MP) JPEGs, "
          f"the default (natural look), {cores} CPU cores; one photo: best of {repeat}; folder: one run of {n_photos} "
          "photos")
    print("| measurement | shipped default (natural) | target | reference (same run) | ratio |")
    print("|---|---:|---:|---|---:|")
    base, wall = one["python -c pass"][0], one["onnx"][0]
    verdict = "met" if wall < ONE_PHOTO_TARGET_S else f"missed by {wall - ONE_PHOTO_TARGET_S:.2f} s"
    print(f"| one photo, end to end (CPU time) | {wall:.2f} s ({one['onnx'][1]:.2f} s) | < {ONE_PHOTO_TARGET_S:.1f} s "
          f"({verdict}) | `python -c pass` {base:.2f} s | {wall / base:.1f}x interpreter start-up |")
    if "torch" in one:
        print(f"| one photo, end to end (CPU time) | | | torch policy.pt {one['torch'][0]:.2f} s ({one['torch'][1]:.2f} s) "
              f"| {one['torch'][0] / wall:.1f}x faster with ONNX |")
    verdict = ("met" if folder["onnx"] >= FOLDER_TARGET_PER_S
               else f"missed by {FOLDER_TARGET_PER_S - folder['onnx']:.1f} photos/s")
    print(f"| {n_photos} photos, -j {jobs} | {folder['onnx']:.1f} photos/s | >= {FOLDER_TARGET_PER_S:.0f} photos/s "
          f"({verdict}) | {'torch policy.pt ' + format(folder['torch'], '.1f') + ' photos/s' if 'torch' in folder else '-'}"
          f" | {format(folder['onnx'] / folder['torch'], '.1f') + 'x' if 'torch' in folder else '-'} |")


if __name__ == "__main__":
    main()
