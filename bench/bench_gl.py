"""Stereo rendering speed: the GL renderer vs the JAX reference vs a numpy loop vs memory bandwidth.

Two 512x512 eyes (63 mm apart, converged at 0.6 m) from a 32-plane MPI, readback included, for
  - face:  an opaque background plane plus a head (an ellipsoid) whose surface falls on one or
           two planes per pixel: ~4% of the plane texels hold anything, as in a face MPI;
  - dense: every plane holds smooth random colour and alpha everywhere.
Renderers: ``gl.GLRenderer.render_pose`` (both eyes, float32 out), ``mpi.render`` under
``jax.jit`` (warm), and a plain numpy loop over planes (homography, bilinear, over). The floor is
the time to read the MPI's bytes once (uint8, as uploaded to GL; float32, as JAX reads them).

Factored MPIs (``mpi_io`` version 3: 128-px fields + a 512-px photo, ``GLRenderer.set_fields``;
the shader's FIELDS variant evaluates each plane from the fields where it samples it): the face
MPI turned into fields (its alphas reduced to 128 px, blend 1, the photo its front view) and a
real default-job frame (``--real-mpi DIR``, or a 4-frame default job made on the spot), each as
stereo alone (planes uploaded once, as the viewer does), the upload + fields pass alone, and
both (per frame of a video export); against the dense path on the same real frame (its 128-px
dense MPI rendered to the 512-px eyes), also measured interleaved (``real_frame_vs_dense``:
rounds that time the factored and the dense stereo render back to back, the ratio of their
speeds per round, its median), since the load of a shared machine drifts between two rows.

Run: ``python bench/bench_gl.py [--real-mpi DIR] [--skip-dense]`` (prints a table, writes
bench/results_gl.json).
Timings are the median of repeats; the machine's load average is recorded with them, since other
processes on a shared 2-core machine change them a lot.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import jax
import numpy as np

from mpitalk import camera, gl, mpi

SIZE, PLANES = 512, 32
IPD_M, CONVERGENCE_M = 0.063, 0.6


def face_mpi(rng) -> np.ndarray:
    D, H, W = PLANES, SIZE, SIZE
    depths = np.asarray(mpi.plane_depths(0.4, 3.0, D))
    rgba = np.zeros((D, H, W, 4), np.uint8)
    rgba[0, ..., :3] = rng.integers(0, 256, (H, W, 3))
    rgba[0, ..., 3] = 255
    yy, xx = np.mgrid[0:H, 0:W]
    x = (xx + 0.5 - W / 2) / (W * 0.22)
    y = (yy + 0.5 - H / 2) / (H * 0.3)
    r2 = x**2 + y**2
    inside = r2 < 1
    z = 0.6 - 0.1 * np.sqrt(np.clip(1 - r2, 0, 1))  # the head's surface depth, metres
    f = np.interp(1 / z, 1 / depths, np.arange(D))  # fractional plane index (by disparity)
    i0 = np.floor(f).astype(int)
    skin = rng.integers(100, 230, (H, W, 3))
    for i in range(D):  # split each surface pixel between its two neighbouring planes
        back = inside & (i0 == i)
        front = inside & (i0 + 1 == i)
        rgba[i][back | front, :3] = skin[back | front]
        rgba[i][back, 3] = 255
        rgba[i][front, 3] = np.rint(255 * (f - i0))[front]
    return rgba


def dense_mpi(rng) -> np.ndarray:
    x = rng.random((PLANES, SIZE // 8, SIZE // 8, 4)).astype(np.float32)
    x = np.repeat(np.repeat(x, 8, 1), 8, 2)  # smooth-ish blocks, then a blur along x and y
    for ax in (1, 2):
        x = (x + np.roll(x, 3, ax) + np.roll(x, -3, ax)) / 3
    x[..., 3] = 0.1 + 0.3 * x[..., 3]
    x[0, ..., 3] = 1.0
    return np.rint(x * 255).astype(np.uint8)


def numpy_render(rgba: np.ndarray, depths, K_src, tgt_from_src, K_tgt) -> np.ndarray:
    """Back-to-front over of bilinearly warped premultiplied planes: the obvious loop."""
    D, H, W, _ = rgba.shape
    premult = np.concatenate([rgba[..., :3] * rgba[..., 3:], rgba[..., 3:]], -1)
    f32 = (np.asarray(a, np.float32) for a in (depths, K_src, tgt_from_src, K_tgt))
    Hs = np.asarray(mpi.homographies(*f32))
    jj, ii = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    pix = np.stack([jj, ii, np.ones_like(jj)], -1)
    out = np.zeros((H, W, 4), np.float32)
    for d in range(D):
        q = pix @ Hs[d].T
        u, v = q[..., 0] / q[..., 2] - 0.5, q[..., 1] / q[..., 2] - 0.5
        x0, y0 = np.floor(u).astype(int), np.floor(v).astype(int)
        fx, fy = (u - x0)[..., None], (v - y0)[..., None]
        sample = np.zeros((H, W, 4), np.float32)
        for dy, wy in ((0, 1 - fy), (1, fy)):
            for dx, wx in ((0, 1 - fx), (1, fx)):
                xi, yi = x0 + dx, y0 + dy
                ok = ((xi >= 0) & (xi < W) & (yi >= 0) & (yi < H))[..., None]
                sample += wy * wx * ok * premult[d][np.clip(yi, 0, H - 1), np.clip(xi, 0, W - 1)]
        out = sample + out * (1 - sample[..., 3:])
    return out


def median_time(fn, repeats: int, warmup: bool = True) -> float:
    if warmup:
        fn()  # compile, allocate
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def bench_mpi(renderer, jax_render, rgba_u8, depths, K, views) -> dict:
    """Timings (seconds) for one MPI."""
    rgba_f32 = rgba_u8.astype(np.float32) / 255
    row = {"occupied_texels": float((rgba_u8[..., 3] > 0).mean())}
    row["gl_upload_s"] = median_time(lambda: renderer.set_mpi(rgba_u8, depths, K), 3)
    renderer.set_mpi(rgba_u8, depths, K)

    def gl_stereo():
        for pose, K_eye in views:
            renderer.render_pose(pose, K_eye)

    row["gl_stereo_s"] = median_time(gl_stereo, 20)
    row["gl_stereo_packed_s"] = median_time(
        lambda: renderer.render_views(views, "sbs"), 20)
    rgba_j = jax.device_put(rgba_f32)

    def jax_stereo():
        for pose, K_eye in views:
            jax_render(rgba_j, depths, K, pose, K_eye).rgb.block_until_ready()

    row["jax_stereo_s"] = median_time(jax_stereo, 3)
    row["numpy_stereo_s"] = median_time(
        lambda: [numpy_render(rgba_f32, depths, K, p, Ke) for p, Ke in views], 1, warmup=False)
    # fresh copies: untouched pages of np.zeros all map the kernel's one zero page, which
    # would make reading a sparse MPI look faster than memory is
    u64 = rgba_u8.copy().reshape(-1).view(np.uint64)
    f64 = rgba_f32.copy().reshape(-1).view(np.uint64)
    row["read_u8_once_s"] = median_time(lambda: np.bitwise_xor.reduce(u64), 5)
    row["read_f32_once_s"] = median_time(lambda: np.bitwise_xor.reduce(f64), 5)
    return row


def face_fields(rgba_u8: np.ndarray, S: int = 128) -> tuple[dict, np.ndarray]:
    """The face MPI as a factored one: alphas area-reduced to S px, the photo its front view
    (composited at full size), blend 1 (every colour copied from the photo), zero flow."""
    rgba = rgba_u8.astype(np.float32) / 255
    D, H, W, _ = rgba.shape
    f = H // S
    rgb, _ = mpi.composite(rgba)
    alpha = rgba[..., 3].reshape(D, S, f, S, f).mean((2, 4))
    fields = {"alpha": alpha, "blend": np.ones((D, S, S), np.float32),
              "color": np.asarray(rgb).reshape(S, f, S, f, 3).mean((1, 3)),
              "flow": np.zeros((1, S, S, 2), np.float32)}
    to8 = gl.to_u8
    return ({k: (to8(v) if k != "flow" else v) for k, v in fields.items()},
            to8(np.asarray(rgb)))


def real_mpi(path: str | None, tmp: str):
    """A real default-job MPI sequence (version 3): ``path``, or a 4-frame default job."""
    from mpitalk import job, mpi_io

    if path is None:
        out = os.path.join(tmp, "job")
        job.run_job(job.JobOptions(out=out, frames=4, quiet=True, novel_view="none"))
        path = os.path.join(out, "mpi")
    return mpi_io.load(path)


def bench_fields(renderer, fields, photo, depths, K_S, views, size) -> dict:
    """Timings (seconds) of one factored frame: set_fields alone, stereo alone, both."""
    row = {"fields_alpha_occupied": float((fields["alpha"] > 0).mean())}

    def upload():
        renderer.set_fields(fields, photo, depths, K_S, size)
        renderer.ctx.finish()

    row["gl_set_fields_s"] = median_time(upload, 5)
    upload()
    row["gl_stereo_packed_s"] = median_time(lambda: renderer.render_views(views, "sbs"), 20)

    def frame():
        renderer.set_fields(fields, photo, depths, K_S, size)
        renderer.render_views(views, "sbs")

    row["gl_set_fields_and_stereo_s"] = median_time(frame, 10)
    return row


def bench_dense_packed(renderer, rgba_u8, depths, K, views) -> dict:
    """Today's path on a frame: set_mpi of its dense MPI, then the packed stereo."""
    row = {"gl_upload_s": median_time(lambda: renderer.set_mpi(rgba_u8, depths, K), 5)}
    renderer.set_mpi(rgba_u8, depths, K)
    row["gl_stereo_packed_s"] = median_time(lambda: renderer.render_views(views, "sbs"), 20)

    def frame():
        renderer.set_mpi(rgba_u8, depths, K)
        renderer.render_views(views, "sbs")

    row["gl_upload_and_stereo_s"] = median_time(frame, 10)
    return row


def interleaved_ratio(renderer, set_a, set_b, views, rounds: int = 9) -> dict:
    """Speed of A over B (stereo, readback included): per round, the median of 5 renders of
    each, back to back; the ratios' median (a drifting load hits both alike)."""
    fps_a, fps_b = [], []
    for setup in (set_a, set_b):
        setup()
        renderer.render_views(views, "sbs")  # warm
    for _ in range(rounds):
        for setup, out in ((set_a, fps_a), (set_b, fps_b)):
            setup()
            out.append(1.0 / median_time(lambda: renderer.render_views(views, "sbs"), 5,
                                         warmup=False))
    ratio = np.asarray(fps_a) / np.asarray(fps_b)
    return {"rounds": rounds, "fps_a": fps_a, "fps_b": fps_b,
            "ratio_median": float(np.median(ratio)), "ratio_min": float(ratio.min()),
            "ratio_max": float(ratio.max())}


def main(argv=None) -> None:
    import argparse
    import tempfile

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--real-mpi", help="a default job's mpi/ folder (version 3)")
    ap.add_argument("--skip-dense", action="store_true",
                    help="only the factored rows (skip the JAX/numpy comparisons)")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    depths = np.asarray(mpi.plane_depths(0.4, 3.0, PLANES), dtype=np.float32)
    K = camera.intrinsics(camera.focal_from_fov(40.0, SIZE), SIZE, SIZE)
    views = gl.stereo_views(K, IPD_M, CONVERGENCE_M)
    renderer = gl.GLRenderer(SIZE, SIZE)
    jax_render = jax.jit(mpi.render)
    results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                           "gl_renderer": renderer.ctx.info["GL_RENDERER"],
                           "load_average_before": os.getloadavg()},
               "config": {"eye": [SIZE, SIZE], "planes": PLANES, "ipd_m": IPD_M,
                          "convergence_m": CONVERGENCE_M}, "mpis": {}}
    face_u8 = None
    for name, make in (("face", face_mpi), ("dense", dense_mpi)):
        rgba_u8 = make(rng)
        if name == "face":
            face_u8 = rgba_u8
        if args.skip_dense:
            continue
        row = bench_mpi(renderer, jax_render, rgba_u8, depths, K, views)
        results["mpis"][name] = row
    results["fields"] = {}
    S = 128
    K_S = camera.intrinsics(camera.focal_from_fov(40.0, S), S, S)
    fields, photo = face_fields(face_u8, S)
    results["fields"]["face_as_fields"] = bench_fields(renderer, fields, photo, depths, K_S,
                                                       views, SIZE)
    # the same face MPI dense (512 px planes), in this run (same machine load)
    results["fields"]["face_dense_512"] = bench_dense_packed(renderer, face_u8, depths, K, views)
    with tempfile.TemporaryDirectory() as tmp:
        seq = real_mpi(args.real_mpi, tmp)
        raw, _ = seq.fields_raw_and_pose(0)
        K_eye = seq.K_at(SIZE)
        real_views = gl.stereo_views(K_eye, IPD_M, CONVERGENCE_M)
        row = bench_fields(renderer, raw, seq.photo_u8, seq.depths, seq.K, real_views, SIZE)
        row["photo_size"] = seq.photo_size
        results["fields"]["real_frame"] = row
        if seq.backdrop_plane() is not None:  # the job's world backdrop: one more pass a view
            renderer.use_backdrop_of(seq)
            results["fields"]["real_frame_world_backdrop"] = bench_fields(
                renderer, raw, seq.photo_u8, seq.depths, seq.K, real_views, SIZE)
            renderer.set_backdrop(None)
        dense128, _ = seq.raw_and_pose(0)  # today: the 128-px dense MPI, eyes at 512
        results["fields"]["real_frame_dense_128"] = bench_dense_packed(
            renderer, dense128, seq.depths, seq.K, real_views)
        results["fields"]["real_frame_dense_128"]["occupied_texels"] = float(
            (dense128[..., 3] > 0).mean())
        results["real_frame_vs_dense"] = interleaved_ratio(
            renderer, lambda: renderer.set_fields(raw, seq.photo_u8, seq.depths, seq.K, SIZE),
            lambda: renderer.set_mpi(dense128, seq.depths, seq.K), real_views)
    results["machine"]["load_average_after"] = os.getloadavg()

    print(f"stereo frames/s, two {SIZE}x{SIZE} eyes, {PLANES} planes, readback included "
          f"(load average {results['machine']['load_average_before'][0]:.1f} on "
          f"{os.cpu_count()} cpus)")
    header = (f"{'MPI':6s} {'GL':>7s} {'GL pack':>8s} {'JAX':>7s} {'numpy':>7s} "
              f"{'read u8':>8s} {'read f32':>9s}   GL/JAX  GL/numpy  GL/read-u8")
    print(header)
    for name, row in results["mpis"].items():
        fps = {k: 1.0 / v for k, v in row.items() if k.endswith("_s") and k != "gl_upload_s"}
        row["fps"] = fps
        row["ratios"] = {"gl_over_jax": fps["gl_stereo_s"] / fps["jax_stereo_s"],
                         "gl_over_numpy": fps["gl_stereo_s"] / fps["numpy_stereo_s"],
                         "gl_over_read_u8": fps["gl_stereo_s"] / fps["read_u8_once_s"]}
        print(f"{name:6s} {fps['gl_stereo_s']:7.1f} {fps['gl_stereo_packed_s']:8.1f} "
              f"{fps['jax_stereo_s']:7.2f} {fps['numpy_stereo_s']:7.3f} "
              f"{fps['read_u8_once_s']:8.1f} {fps['read_f32_once_s']:9.1f}   "
              f"{row['ratios']['gl_over_jax']:6.0f}x {row['ratios']['gl_over_numpy']:8.0f}x "
              f"{row['ratios']['gl_over_read_u8']:10.2f}x")
        print(f"       (upload of one frame to GL: {row['gl_upload_s'] * 1e3:.0f} ms; "
              f"occupied texels {row['occupied_texels']:.1%})")
    print(f"factored MPIs (128-px fields + 512-px photo, planes evaluated in the shader) vs "
          f"dense ones in the same run, stereo frames/s at 2x{SIZE}x{SIZE}, readback included")
    print(f"{'MPI':24s} {'stereo':>8s} {'upload':>8s} {'both':>8s}")
    for name, row in results["fields"].items():
        up = row.get("gl_set_fields_s", row.get("gl_upload_s"))
        both = row.get("gl_set_fields_and_stereo_s", row.get("gl_upload_and_stereo_s"))
        row["fps"] = {"stereo": 1 / row["gl_stereo_packed_s"], "upload": 1 / up,
                      "upload_and_stereo": 1 / both}
        print(f"{name:24s} {row['fps']['stereo']:8.1f} {row['fps']['upload']:8.1f} "
              f"{row['fps']['upload_and_stereo']:8.1f}")
    vs = results["real_frame_vs_dense"]
    print(f"real frame, factored / dense stereo speed, interleaved: {vs['ratio_median']:.2f}x "
          f"(median of {vs['rounds']} rounds, {vs['ratio_min']:.2f}-{vs['ratio_max']:.2f}; "
          f"{np.median(vs['fps_a']):.1f} vs {np.median(vs['fps_b']):.1f} frames/s)")
    out = Path(__file__).with_name("results_gl.json")
    if args.skip_dense and out.is_file():  # keep the earlier run's dense rows, marked as such
        earlier = json.loads(out.read_text())
        results["mpis"] = earlier.get("mpis", {})
        results["mpis_from_an_earlier_run"] = earlier.get("machine", {})
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
