"""The rig's prior correspondence flow (``rig.render_prior_flow``): cost per call and accuracy.

Cost: milliseconds per call at S = 128 and 256 (median of repeats, warm), split into the CPU
part (posing the rig twice and the identity's vertex normals) and the rest (two GL passes on
Mesa llvmpipe, upload and float readback), and per item of a batch of 8.

Accuracy: a textured rig render (``rig.render_textured``: a fixed texture over the rig's UVs,
unlit) at A, sampled bilinearly at ``pixel centre + flow``, against the same render at B: mean
abs RGB error (0..1) over the valid pixels whose four taps at A lie on the rig, for the prior
flow, for a zero flow (no warp) and for the prior flow shifted by half a pixel. Textures: sines
over the UV atlas, and the synthetic dataset's albedo (``make_identity(0, 0)``).

Run: ``python bench/bench_rig_flow.py [--figure docs/generation/rig_prior_flow.png]`` (prints
tables, writes bench/results_rig_flow.json; the figure: A, B, A warped to B, |flow|, valid).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from mpitalk import camera, gl, rig

BENCH_DIR = Path(__file__).resolve().parent


def uv_pattern(px: int = 512, cycles: float = 12.0) -> np.ndarray:
    """(px,px,3) uint8 sines over the UV atlas (the tests' pattern)."""
    u = (np.arange(px) + 0.5) / px
    U, V = np.meshgrid(u, u, indexing="xy")
    rgb = [
        np.sin(2 * np.pi * cycles * U),
        np.sin(2 * np.pi * cycles * V),
        np.sin(np.pi * cycles * (U + V)),
    ]
    return ((0.5 + 0.5 * np.stack(rgb, -1)) * 255 + 0.5).astype(np.uint8)


def sample(img: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Bilinear, edge-clamped samples of img (H,W,C) at pixel coords xy (centres at +0.5)."""
    coords = [xy[..., 1] - 0.5, xy[..., 0] - 0.5]
    return np.stack(
        [
            ndimage.map_coordinates(img[..., c], coords, order=1, mode="nearest")
            for c in range(img.shape[-1])
        ],
        -1,
    )


def cases() -> dict[str, tuple[np.ndarray, ...]]:
    perf = rig.load().performance
    P0 = camera.default_head_pose()
    z = np.zeros(52, np.float32)
    talk = rig.weights_vector(
        {"jawOpen": 0.5, "mouthSmileLeft": 0.7, "eyeBlinkRight": 0.8, "browInnerUp": 0.6}
    )
    turned = np.array([0.25, -0.1, 0.05, 0.02, 0.0, 0.6], np.float32)
    return {
        "expression": (z, P0, talk, P0),
        "pose": (z, P0, z, turned),
        "performance": (perf.values[0], perf.pose[0], perf.values[150], perf.pose[150]),
    }


def median_ms(fn, repeats: int) -> float:
    fn()  # warm: programs, framebuffers
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000.0 * float(np.median(times))


def bench_cost(size: int, repeats: int) -> dict:
    wa, pa, wb, pb = cases()["performance"]
    K = camera.intrinsics(1.5 * size, size, size)
    rig.render_prior_flow(wa, pa, wb, pb, K, size)
    renderer = rig._FLOW[id(gl.context())]  # noqa: SLF001 - its CPU half, timed alone

    def cpu() -> None:  # what render() does before GL: pose twice, normals once
        v = renderer._vertices(wa)  # noqa: SLF001
        rig.vertex_normals(v, renderer.tris)
        renderer._vertices(wb)  # noqa: SLF001

    row = {
        "size": size,
        "call_ms": median_ms(lambda: rig.render_prior_flow(wa, pa, wb, pb, K, size), repeats),
        "cpu_posing_ms": median_ms(cpu, repeats),
    }
    B = 8
    batch = (np.repeat(wa[None], B, 0), np.repeat(pa[None], B, 0))
    tgt = (np.repeat(wb[None], B, 0), np.repeat(pb[None], B, 0))
    row["batch8_per_item_ms"] = (
        median_ms(lambda: rig.render_prior_flow(*batch, *tgt, K, size), max(repeats // 4, 3)) / B
    )
    return row


def bench_accuracy(size: int, textures: dict[str, np.ndarray]) -> list[dict]:
    K = camera.intrinsics(1.5 * size, size, size)
    centres = rig.pixel_centres(size)
    rows = []
    for tex_name, tex in textures.items():
        for name, (wa, pa, wb, pb) in cases().items():
            A = rig.render_textured(wa, pa, K, size, tex)
            B = rig.render_textured(wb, pb, K, size, tex)
            flow, valid = rig.render_prior_flow(wa, pa, wb, pb, K, size)
            warped = sample(A, centres + flow)
            region = valid & (warped[..., 3] > 0.999)

            def mae(img: np.ndarray, B=B, region=region) -> float:
                return float(np.abs(img[..., :3] - B[..., :3]).mean(-1)[region].mean())

            rows.append(
                {
                    "size": size,
                    "texture": tex_name,
                    "case": name,
                    "face_px": int((B[..., 3] > 0.5).sum()),
                    "valid_px": int(valid.sum()),
                    "mae_flow": mae(warped),
                    "mae_zero_flow": mae(A),
                    "mae_half_px_off": mae(sample(A, centres + flow + 0.5)),
                    "max_abs_flow_px": float(np.abs(flow).max()),
                }
            )
    return rows


def figure(path: Path, albedo: np.ndarray) -> None:
    """A, B, A warped to B (invalid grey), |flow| (px, brighter = larger), valid; at 128 px."""
    from PIL import Image, ImageDraw

    S = 128
    K = camera.intrinsics(1.5 * S, S, S)
    P0 = camera.default_head_pose()
    wa = np.zeros(52, np.float32)
    wb = rig.weights_vector(
        {
            "jawOpen": 0.6,
            "mouthSmileLeft": 0.6,
            "mouthSmileRight": 0.6,
            "eyeBlinkLeft": 0.9,
            "browInnerUp": 0.7,
        }
    )
    pb = np.array([0.2, -0.08, 0.0, 0.0, 0.0, 0.6], np.float32)
    A = rig.render_textured(wa, P0, K, S, albedo)
    B = rig.render_textured(wb, pb, K, S, albedo)
    flow, valid = rig.render_prior_flow(wa, P0, wb, pb, K, S)
    warped = sample(A, rig.pixel_centres(S) + flow)[..., :3]
    warped = np.where(valid[..., None], warped, 0.5)
    mag = np.linalg.norm(flow, axis=-1)
    mag = np.repeat((mag / max(mag.max(), 1e-6))[..., None], 3, -1)
    panels = [A[..., :3], B[..., :3], warped, mag, np.repeat(valid[..., None], 3, -1) * 1.0]
    labels = [
        "A (identity)",
        "B (target)",
        "A warped to B",
        f"|flow| (max {flow.__abs__().max():.0f} px)",
        "valid",
    ]
    crop = slice(8, S - 8)
    tiles = [np.clip(p[crop, crop], 0, 1) for p in panels]
    img = (np.concatenate(tiles, 1) * 255 + 0.5).astype(np.uint8)
    up = Image.fromarray(img).resize((img.shape[1] * 2, img.shape[0] * 2), Image.NEAREST)
    canvas = Image.new("RGB", (up.width, up.height + 16), (255, 255, 255))
    canvas.paste(up, (0, 16))
    draw = ImageDraw.Draw(canvas)
    w = up.width // len(tiles)
    for k, text in enumerate(labels):
        draw.text((k * w + 4, 2), text, fill=(0, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    canvas.save(tmp, optimize=True)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=20, help="timed calls per size")
    ap.add_argument("--figure", type=Path, default=None, help="also write this PNG")
    ap.add_argument("--out", type=Path, default=BENCH_DIR / "results_rig_flow.json")
    args = ap.parse_args(argv)

    from mpitalk.synth.identity import make_identity

    albedo = make_identity(0, 0).albedo
    textures = {"uv_sines": uv_pattern(), "synth_albedo": albedo}
    cost = [bench_cost(s, args.repeats) for s in (128, 256)]
    acc = [r for s in (128, 256) for r in bench_accuracy(s, textures)]
    print(f"{'size':>5} {'call ms':>8} {'CPU posing ms':>14} {'batch-8 ms/item':>16}")
    for r in cost:
        print(
            f"{r['size']:>5} {r['call_ms']:>8.1f} {r['cpu_posing_ms']:>14.1f} "
            f"{r['batch8_per_item_ms']:>16.1f}"
        )
    print()
    print(
        f"{'size':>5} {'texture':>13} {'case':>12} {'valid/face':>11} "
        f"{'MAE flow':>9} {'zero flow':>10} {'half px off':>12}"
    )
    for r in acc:
        print(
            f"{r['size']:>5} {r['texture']:>13} {r['case']:>12} "
            f"{r['valid_px']:>5}/{r['face_px']:<5} {r['mae_flow']:>9.4f} "
            f"{r['mae_zero_flow']:>10.4f} {r['mae_half_px_off']:>12.4f}"
        )
    result = {
        "bench": "rig_flow",
        "run_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_avg_1m": os.getloadavg()[0],
        },
        "cost": cost,
        "accuracy": acc,
    }
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, args.out)
    if args.figure is not None:
        figure(args.figure, albedo)
        print(f"figure: {args.figure} ({args.figure.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
