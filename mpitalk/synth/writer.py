"""Write the dataset (docs/dataset.md): render clips, byte-reproducible NPZs, identity splits,
manifest, log and preview; and the CLI, ``python -m mpitalk.synth``."""

from __future__ import annotations

import argparse
import io
import json
import time
import zipfile
from pathlib import Path

import numpy as np

from mpitalk import UserError, camera, rig, run_cli
from mpitalk.model.config import Config
from mpitalk.synth.identity import Identity, make_identity
from mpitalk.synth.motion import FPS, make_motion
from mpitalk.synth.scene import VIEWS, SceneRenderer, view_poses

FORMAT_VERSION = 1
# the MPI range the model uses by default, recorded in the manifest (docs/dataset.md)
NEAR_M, FAR_M = Config.near_m, Config.far_m
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def render_clip(
    renderer: SceneRenderer, ident: Identity, seed: int, identity: int, clip: int, frames: int
) -> dict[str, np.ndarray]:
    """All arrays of one clip NPZ (docs/dataset.md)."""
    S = renderer.size
    K = renderer.K
    w, pose, wid, pid = make_motion(seed, identity, clip, frames)
    out: dict[str, np.ndarray] = {}
    renderer.set_expression(wid)
    M = camera.head_pose_matrix(pid)
    rgb, alpha, _ = renderer.render(M, M)
    out["identity_rgb"], out["identity_alpha"] = rgb, alpha
    out["identity_controls"], out["identity_pose"] = wid, pid
    out["identity_cond"] = rig.render_condition(wid, pid, K, S)
    out["K"] = K.astype(np.float32)
    out["controls"], out["pose"] = w, pose
    cond = np.zeros((frames, S, S, 4), np.uint8)
    arr = {
        v: (
            np.zeros((frames, S, S, 3), np.uint8),
            np.zeros((frames, S, S), np.uint8),
            np.zeros((frames, S, S), np.float32),
            np.zeros((frames, 4, 4), np.float32),
        )
        for v in ("target",) + VIEWS
    }
    for t in range(frames):
        renderer.set_expression(w[t])
        cam_from_head = camera.head_pose_matrix(pose[t])
        cond[t] = rig.render_condition(w[t], pose[t], K, S)
        for v, T in [("target", np.eye(4, dtype=np.float32))] + list(view_poses(pose[t]).items()):
            rgb, alpha, z = renderer.render(T @ cam_from_head, cam_from_head)
            arr[v][0][t], arr[v][1][t], arr[v][2][t], arr[v][3][t] = rgb, alpha, z, T
    out["cond"] = cond
    for v, (rgb, alpha, z, T) in arr.items():
        out[f"{v}_rgb"], out[f"{v}_alpha"], out[f"{v}_depth"] = rgb, alpha, z
        if v != "target":
            out[f"{v}_from_target"] = T
    return out


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An .npz (np.load-able) with fixed zip timestamps and member order: byte-identical output.
    ``np.savez`` stamps members with the wall clock, so it is not used."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".npz.tmp")
    with zipfile.ZipFile(tmp, "w") as zf:
        for key in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=1)
    tmp.replace(path)


def split_identities(
    n: int, seed: int, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> dict[str, list[int]]:
    """Disjoint identity ids per split; every split gets >= 1 identity once n >= 3."""
    order = np.random.default_rng([seed, 7]).permutation(n)
    n_val = int(round(fractions[1] * n))
    n_test = int(round(fractions[2] * n))
    if n >= 3:
        n_val, n_test = max(n_val, 1), max(n_test, 1)
    n_val, n_test = min(n_val, n), min(n_test, max(n - n_val, 0))
    n_train = n - n_val - n_test
    return {
        "train": sorted(int(i) for i in order[:n_train]),
        "val": sorted(int(i) for i in order[n_train : n_train + n_val]),
        "test": sorted(int(i) for i in order[n_train + n_val :]),
    }


def clip_name(identity: int, clip: int) -> str:
    return f"clip-{identity:04d}-{clip:02d}.npz"


def _preview_tile(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """identity | target mid-frame | yaw_plus10 | left_eye | cond, side by side."""
    T = arrays["target_rgb"].shape[0]
    m = T // 2
    cond = arrays["cond"][m]
    cond_rgb = (cond[..., :3].astype(np.float32) * (cond[..., 3:] / 255.0)).astype(np.uint8)
    return np.concatenate(
        [
            arrays["identity_rgb"],
            arrays["target_rgb"][m],
            arrays["yaw_plus10_rgb"][m],
            arrays["right_eye_rgb"][m],
            cond_rgb,
        ],
        1,
    )


def generate(
    out: Path,
    identities: int,
    clips_per_identity: int,
    frames: int,
    size: int,
    seed: int,
    preview: bool = False,
    progress: bool = True,
) -> dict:
    """Write the dataset under ``out`` and return the manifest."""
    from tqdm import tqdm

    out.mkdir(parents=True, exist_ok=True)
    splits = split_identities(identities, seed)
    split_of = {i: s for s, ids in splits.items() for i in ids}
    renderer = SceneRenderer(size)
    tiles = []
    t_start = time.perf_counter()
    n_views = 0
    log = []
    bar = tqdm(
        total=identities * clips_per_identity, desc="synth clips", disable=not progress, unit="clip"
    )
    for i in range(identities):
        t0 = time.perf_counter()
        ident = make_identity(seed, i)
        renderer.set_identity(ident)
        t_ident = time.perf_counter() - t0
        for c in range(clips_per_identity):
            t0 = time.perf_counter()
            arrays = render_clip(renderer, ident, seed, i, c, frames)
            t_render = time.perf_counter() - t0
            write_npz(out / split_of[i] / clip_name(i, c), arrays)
            n_views += frames * (1 + len(VIEWS))
            log.append(
                f"identity {i} clip {c}: identity setup {t_ident:.2f}s render {t_render:.2f}s "
                f"write {time.perf_counter() - t0 - t_render:.2f}s"
            )
            if preview and c == 0 and len(tiles) < 16:
                tiles.append(_preview_tile(arrays))
            bar.update(1)
    bar.close()
    elapsed = time.perf_counter() - t_start
    manifest = {
        "version": FORMAT_VERSION,
        "args": {
            "identities": identities,
            "clips_per_identity": clips_per_identity,
            "frames": frames,
            "size": size,
            "seed": seed,
        },
        "size": size,
        "frames_per_clip": frames,
        "fps": FPS,
        "near_m": NEAR_M,
        "far_m": FAR_M,
        "views": list(VIEWS),
        "splits": {
            s: [f"{s}/{clip_name(i, c)}" for i in ids for c in range(clips_per_identity)]
            for s, ids in splits.items()
        },
        "identities": splits,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    log.append(f"total {elapsed:.1f}s, {n_views} views, {n_views / max(elapsed, 1e-9):.1f} views/s")
    (out / "synth.log").write_text("\n".join(log) + "\n")
    if preview and tiles:
        from PIL import Image

        cols = 2
        while len(tiles) % cols:
            tiles.append(np.zeros_like(tiles[0]))
        rows = [np.concatenate(tiles[k : k + cols], 1) for k in range(0, len(tiles), cols)]
        Image.fromarray(np.concatenate(rows, 0)).save(out / "preview.png", optimize=False)
    return manifest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m mpitalk.synth",
        description=(
            "Synthetic multi-view talking-head dataset with ground truth (format: docs/dataset.md)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--identities", type=int, default=20, help="number of synthetic people")
    p.add_argument("--clips-per-identity", type=int, default=4, help="clips per person")
    p.add_argument("--frames", type=int, default=12, help="frames per clip")
    p.add_argument("--size", type=int, default=128, help="image size S (S x S pixels)")
    p.add_argument("--seed", type=int, default=0, help="every random choice derives from it")
    p.add_argument("--preview", action="store_true", help="write DIR/preview.png, a contact sheet")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    return run_cli(lambda: _run(a))


def _run(a: argparse.Namespace) -> None:
    try:
        if min(a.identities, a.clips_per_identity, a.frames) < 1 or a.size < 16:
            raise UserError(
                "--identities, --clips-per-identity and --frames must be >= 1, --size >= 16"
            )
        generate(
            a.out,
            a.identities,
            a.clips_per_identity,
            a.frames,
            a.size,
            a.seed,
            preview=a.preview,
            progress=not a.quiet,
        )
    except OSError as exc:
        raise UserError(f"cannot write under {a.out}: {exc}") from None
