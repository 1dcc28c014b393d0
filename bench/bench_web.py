"""The web bundle: size per second of video, build time, codec loss, and the page's speed.

For a factored MPI sequence (``--mpi DIR``; default: the default job's, made with
``python -m mpitalk.render --web`` into ``~/.cache/mpitalk/bench_web/job`` and reused):
  - bundle: the fixed part (page + script + shader + photo + scene.json) and the atlas video's
    bytes per second of video, at the default settings (``--crf`` to try others); targets
    <= 1.5 MB fixed, <= 2 MB per second;
  - build time of ``mpitalk.web.build`` (the bundle from the MPI folder);
  - codec loss: PSNR of the decoded fields and photo against the sequence's own, and of the
    JAX render of the decoded bundle against that of the sequence (what the codec costs in the
    picture);
  - the page vs the JAX reference render of the decoded bundle (PSNR) at a few frames and poses,
    and vs ``mpi.render_fields`` (the shader's exact twin);
  - the page's frames per second in headless Chromium: playback work (the atlas uploaded from
    the video, two 1024x1024 eyes drawn, synchronised) — WebGL2 on SwiftShader, i.e. a CPU
    figure on this machine; a headset's GPU is another matter.

Run: ``python bench/bench_web.py [--mpi DIR] [--crf N] [--frames N]`` (prints a table, writes
bench/results_web.json).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from mpitalk import browser, camera, mpi, web

CACHE = Path.home() / ".cache" / "mpitalk" / "bench_web"
RESULTS = Path(__file__).resolve().parent / "results_web.json"


def default_job_mpi(reuse: bool = True) -> tuple[Path, dict | None]:
    """The default job's MPI folder (run once with --web, then reused) and its report."""
    out = CACHE / "job"
    if not (reuse and (out / "report.json").is_file()):
        subprocess.run([sys.executable, "-m", "mpitalk.render", "--web", "--out", str(out),
                        "--quiet"], check=True)
    return out / "mpi", json.loads((out / "report.json").read_text())


def _render_at(page, t: int, pose: np.ndarray, size: int) -> np.ndarray:
    """The page's (size,size,3) uint8 render of frame t from pose (window.mpitalk.renderAt)."""
    import base64

    js_pose = json.dumps(np.asarray(pose, np.float64).tolist())
    b64 = page.evaluate(f"window.mpitalk.renderAt({t}, {js_pose}, null, {size}).then(im => {{"
                        "let s = ''; for (let i = 0; i < im.data.length; i += 8192) "
                        "s += String.fromCharCode.apply(null, im.data.subarray(i, i + 8192)); "
                        "return btoa(s); })")
    return np.frombuffer(base64.b64decode(b64), np.uint8).reshape(size, size, 4)[..., :3]


def face_disparity(page, bundle: web.Bundle, fields: dict, size: int) -> dict:
    """Frame 0 from two parallel eyes (IPD apart, no convergence shift): the horizontal shift of
    a patch at the face's centre between the page's two renders (SSD, parabola-refined) vs the
    stereo formula f * ipd / d, d = the median over that patch of the alpha-weighted depth the
    frame's camera sees (mpi.render's depth, JAX)."""
    S, P = bundle.scene["size"], bundle.photo.shape[0]
    ipd = camera.DEFAULT_IPD_M
    left, right = camera.stereo_eyes(ipd)
    lt = _render_at(page, 0, left, size).mean(-1)
    rt = _render_at(page, 0, right, size).mean(-1)
    f = float(bundle.K[0, 0]) * size / S
    half = size // 10  # the patch: a fifth of the image, at its centre (the face's middle)
    c = size // 2
    dense = mpi.materialize(fields, bundle.photo, P, bundle.plane_groups)
    # the depth the frame's own camera sees (alpha-weighted, JAX), over the same patch
    depth = np.asarray(mpi.render(dense, bundle.depths, camera.scale_intrinsics(bundle.K, P / S),
                                  bundle.poses[0], camera.scale_intrinsics(bundle.K, size / S),
                                  (size, size)).depth)
    d = float(np.median(depth[c - half:c + half, c - half:c + half]))
    expected = f * ipd / d
    # the patch as the left eye sees it: the face's centre moved right by half the disparity
    x0 = c + round(expected / 2) - half
    patch = lt[c - half:c + half, x0:x0 + 2 * half]
    shifts = np.arange(0, min(int(2 * expected) + 3, x0 + 1))  # inside the image
    ssd = np.array([np.sum((rt[c - half:c + half, x0 - k:x0 - k + 2 * half] - patch) ** 2)
                    for k in shifts])
    k = int(np.clip(np.argmin(ssd), 1, len(shifts) - 2))
    a, b, cc = ssd[k - 1], ssd[k], ssd[k + 1]
    measured = float(shifts[k] + 0.5 * (a - cc) / max(a - 2 * b + cc, 1e-9))
    return {"measured_px": measured, "expected_px": expected, "face_depth_m": d,
            "error_px": measured - expected, "render_size": size}


def rendered_codec_loss(site: Path, mpi_dir: Path, size: int) -> dict:
    """What the codec costs in the picture: PSNR of the JAX render of the decoded bundle vs that
    of the sequence's own fields (photo and fields as stored), frames 0 / middle / last, from
    the frame's camera and +-10 degrees of yaw about the head."""
    from mpitalk import mpi_io

    bundle = web.load_bundle(site)
    seq = mpi_io.load(mpi_dir)
    T = len(seq)
    frames = sorted({0, T // 2, T - 1})
    decoded = {t: f for t, f in enumerate(bundle.frames()) if t in frames}
    S, P = bundle.scene["size"], bundle.photo.shape[0]
    pivot = np.array([0.0, 0.0, camera.DEFAULT_HEAD_DEPTH_M], np.float32)
    views = {"identity": np.eye(4, dtype=np.float32),
             "yaw+10": camera.orbit_pose(np.float32(np.radians(10)), np.float32(0), pivot),
             "yaw-10": camera.orbit_pose(np.float32(np.radians(-10)), np.float32(0), pivot)}
    import jax

    render = jax.jit(lambda dense, pose: mpi.render(
        dense, bundle.depths, camera.scale_intrinsics(bundle.K, P / S), pose,
        camera.scale_intrinsics(bundle.K, size / S), (size, size)).rgb)
    out = {}
    for t in frames:
        a = mpi.materialize(decoded[t], bundle.photo, P, bundle.plane_groups)
        b = mpi.materialize(seq.fields(t), seq.photo, P, seq.plane_groups)
        for name, view in views.items():
            pose = view @ bundle.poses[t]
            mse = float(np.mean((np.asarray(render(a, pose)) - np.asarray(render(b, pose))) ** 2))
            out[f"frame {t} {name}"] = 10 * math.log10(1 / max(mse, 1e-12))
    return out


def page_checks(site: Path, size: int, n_frames: int) -> dict:
    """Open the bundle in headless Chromium: PSNR of renderAt vs the JAX reference for a few
    frames and poses, and the stereo playback time at 2 x 1024 x 1024."""
    bundle = web.load_bundle(site)
    T = bundle.scene["num_frames"]
    frames = sorted({0, T // 2, T - 1})
    decoded = {t: f for t, f in enumerate(bundle.frames()) if t in frames}
    S = bundle.scene["size"]
    pivot = np.array([0.0, 0.0, camera.DEFAULT_HEAD_DEPTH_M], np.float32)
    left, right = camera.stereo_eyes(camera.DEFAULT_IPD_M)
    poses = {"identity": np.eye(4, dtype=np.float32), "left": left, "right": right,
             "yaw+10": camera.orbit_pose(np.float32(np.radians(10)), np.float32(0), pivot),
             "yaw-10": camera.orbit_pose(np.float32(np.radians(-10)), np.float32(0), pivot)}
    import jax

    K_view = camera.scale_intrinsics(bundle.K, size / S)
    # the page's references, over the bundle's world backdrop when it has one (Bundle.reference)
    ref_render = jax.jit(lambda fields, view, pose: bundle.reference(
        fields, view, pose, K_view, (size, size), twin=False).rgb)
    server = web.make_server(site, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # mpi.render_fields: the shader's exact JAX twin (each plane evaluated where it is sampled)
    twin_render = jax.jit(lambda fields, view, pose: bundle.reference(
        fields, view, pose, K_view, (size, size)).rgb)
    out: dict = {"psnr_db": {}, "psnr_twin_db": {}}
    try:
        with browser.Browser() as b:
            page = b.new_page(web.url_of(server, f"?ui=0&size={size}"))
            for _ in range(400):
                if page.evaluate("typeof window.mpitalk === 'object'"):
                    break
                time.sleep(0.05)
            ready = page.evaluate("window.mpitalk.ready.then(() => 'ok', e => e.message)")
            if ready != "ok":
                raise RuntimeError(f"the page did not load: {ready}")
            for t in frames:
                for name, pose in poses.items():
                    got = _render_at(page, t, pose, size)
                    ref = np.asarray(ref_render(decoded[t], pose, bundle.poses[t]))
                    mse = float(np.mean((got / 255.0 - ref) ** 2))
                    out["psnr_db"][f"frame {t} {name}"] = 10 * math.log10(1 / max(mse, 1e-12))
                    twin = np.asarray(twin_render(decoded[t], pose, bundle.poses[t]))
                    mse = float(np.mean((got / 255.0 - twin) ** 2))
                    out["psnr_twin_db"][f"frame {t} {name}"] = 10 * math.log10(1 / max(mse, 1e-12))
            out["face_disparity"] = face_disparity(page, bundle, decoded[0], size)
            ms = page.evaluate(f"window.mpitalk.timeStereo({n_frames}, 1024)", timeout=600)
            out["stereo_2x1024_ms"] = ms
            out["stereo_2x1024_fps"] = 1000.0 / ms
            out["console_errors"] = page.console_errors()
            out["renderer"] = page.evaluate(
                "(() => { const g = document.createElement('canvas').getContext('webgl2'); "
                "const e = g.getExtension('WEBGL_debug_renderer_info'); "
                "return e ? g.getParameter(e.UNMASKED_RENDERER_WEBGL) : 'unknown'; })()")
    finally:
        server.shutdown()
        server.server_close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mpi", help="factored MPI sequence (default: the default job's)")
    ap.add_argument("--crf", type=int, default=web.DEFAULT_CRF)
    ap.add_argument("--frames", type=int, default=5, help="timed playback frames in the page")
    ap.add_argument("--size", type=int, default=256, help="side of the PSNR renders")
    ap.add_argument("--fresh", action="store_true", help="re-run the default job")
    ap.add_argument("--results", help=f"JSON to write (default {RESULTS})")
    ap.add_argument("--no-page", action="store_true", help="skip the browser (size sweeps)")
    args = ap.parse_args(argv)
    report = None
    mpi_dir = Path(args.mpi) if args.mpi else None
    if mpi_dir is None:
        mpi_dir, report = default_job_mpi(reuse=not args.fresh)
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        summary = web.build(mpi_dir, site, crf=args.crf)
        loss = web.codec_loss(site, mpi_dir)
        loss["rendered_psnr_db"] = rendered_codec_loss(site, mpi_dir, args.size)
        page = ({"skipped": "--no-page"} if args.no_page
                else page_checks(site, args.size, args.frames) if browser.chromium_path()
                else {"skipped": "no Chromium"})
    results = {
        "mpi": str(mpi_dir), "crf": args.crf, "bundle": summary, "codec_loss": loss,
        "page": page,
        "default_job_web_build": (report or {}).get("web"),
        "targets": {"fixed_bytes_max": 1.5e6, "growth_bytes_per_s_max": 2e6},
        "note": "page fps: headless Chromium, WebGL2 on SwiftShader (a CPU rasteriser) on this "
                "machine: a CPU figure, not a headset's",
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "loadavg": os.getloadavg()},
        "run_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    out = RESULTS if args.results is None else Path(args.results)
    out.write_text(json.dumps(results, indent=1, default=str) + "\n")
    s = summary
    rows = [
        ("frames / seconds of video", f"{s['frames']} / {s['seconds']:.2f} s at {s['fps']:g} fps"),
        ("atlas", f"{s['atlas'][0]}x{s['atlas'][1]}, crf {args.crf}"),
        ("fixed part (page + script + shader + photo)",
         f"{s['fixed_bytes'] / 1e6:.3f} MB (page {s['page_bytes'] / 1e3:.0f} kB, photo "
         f"{s['photo_bytes'] / 1e3:.0f} kB); target 1.5"),
        ("growth per second of video",
         f"{s['growth_bytes_per_s'] / 1e6:.3f} MB/s (video {s['video_bytes_per_s'] / 1e6:.3f}, "
         f"scene.json {s['scene_bytes'] / s['seconds'] / 1e3:.1f} kB/s); target 2"),
        ("build time", f"{s['build_s']:.1f} s"),
        ("codec loss alpha / blend / color / photo",
         " / ".join(f"{loss[k]:.1f}" for k in ("alpha", "blend", "color", "photo")) + " dB"),
        ("codec loss flow", f"{loss['flow_rms_px']:.3f} px RMS"),
        ("codec loss in the picture (JAX renders)",
         f"min {min(loss['rendered_psnr_db'].values()):.1f} dB, mean "
         f"{np.mean(list(loss['rendered_psnr_db'].values())):.1f} dB (decoded vs stored fields, "
         f"{len(loss['rendered_psnr_db'])} views at {args.size} px)"),
    ]
    if "psnr_db" in page:
        v = page["psnr_db"].values()
        rows += [("page vs JAX reference", f"min {min(v):.1f} dB, mean {np.mean(list(v)):.1f} dB "
                                           f"over {len(v)} renders"),
                 ("page vs mpi.render_fields (its twin)",
                  f"min {min(page['psnr_twin_db'].values()):.1f} dB"),
                 ("page playback 2x1024x1024",
                  f"{page['stereo_2x1024_ms']:.0f} ms = {page['stereo_2x1024_fps']:.2f} fps "
                  f"({page['renderer']}; CPU figure)"),
                 ("face disparity, parallel eyes",
                  f"measured {page['face_disparity']['measured_px']:.2f} px, f*ipd/d "
                  f"{page['face_disparity']['expected_px']:.2f} px (d = "
                  f"{page['face_disparity']['face_depth_m']:.3f} m) at {args.size} px"),
                 ("page console errors", str(len(page["console_errors"])))]
    for k, v in rows:
        print(f"{k:<42} {v}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
