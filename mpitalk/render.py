"""The main CLI: ``python -m mpitalk.render``.

With no arguments it runs the shipped default (``data/identity.png``, ``data/default_track.csv``,
the demo checkpoint in ``data/checkpoint``) and writes ``./mpitalk-out/``: the stereo video
(``mpitalk_LR.mp4``), a novel-view video, the MPI sequence (``mpi/``), a contact sheet
(``preview.png``) and ``report.json``. ``--mpi DIR`` renders an existing MPI sequence instead (no
model). ``--jobs manifest.jsonl`` runs a batch: one JSON object of the same options per line
(``{"identity": "a.png", "controls": "b.csv", "frames": 50}``); line N writes ``OUT/job-N/``
unless it sets ``out`` (a folder inside OUT); complete jobs with the same options are skipped
(resume); ``--shard I/N`` runs every N-th job for cluster array jobs. See :mod:`mpitalk.job`.

``--out`` is never a folder of the user's: it may be new, empty or an earlier mpitalk output;
anything else is refused unless ``--overwrite``. Errors, bad flags included, are one line on
stderr and exit 1; warnings are one line each.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from mpitalk import UserError, one_line_warnings, run_cli

DEFAULT_OUT = "mpitalk-out"
PROG = "mpitalk.render"


class _UsageError(Exception):
    """A bad command line (argparse's complaint), reported as one line like other errors."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print the whole usage and exit 2
        raise _UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    from mpitalk import camera, job

    d = job.JobOptions()
    p = _Parser(
        prog="python -m mpitalk.render",
        description="Portrait + expression track -> 3D talking head (MPI sequence), stereo VR "
                    "video and novel-view video. No arguments: the shipped demo.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("inputs")
    g.add_argument("--identity", metavar="IMG", default=d.identity,
                   help="portrait photo (any common image format)")
    g.add_argument("--controls", metavar="TRACK|VIDEO", default=d.controls,
                   help="expression track (.csv/.json/.npz, Live Link Face CSV) or a driving "
                        "video (its track is extracted with MediaPipe)")
    g.add_argument("--mpi", metavar="DIR",
                   help="render this existing MPI sequence instead of generating one")
    g.add_argument("--jobs", metavar="MANIFEST",
                   help="batch: a .jsonl file, one JSON object of these options per line")
    g.add_argument("--shard", metavar="I/N", default="0/1",
                   help="batch: run the jobs whose index modulo N is I")
    g.add_argument("--checkpoint", metavar="DIR", help="model checkpoint (default: the shipped "
                                                       "demo checkpoint in data/checkpoint)")
    g.add_argument("--no-crop", action="store_true",
                   help="use the identity image as it is (centre square), without face crop")
    g = p.add_argument_group("timing and motion")
    g.add_argument("--out", metavar="DIR", default=DEFAULT_OUT,
                   help="output folder (batch: the root of job-N folders): new, empty or an "
                        "earlier mpitalk output, which is replaced when the new one is complete")
    g.add_argument("--overwrite", action="store_true",
                   help="replace --out even if it is a folder that is not an mpitalk output")
    g.add_argument("--fps", type=float,
                   help=f"output frame rate, {job.MIN_FPS:g} to {job.MAX_FPS:g} (default: the "
                        "track's; for a CSV without a time column, the rate of its rows)")
    g.add_argument("--duration", type=float, metavar="SECONDS", help="use this much of the track")
    g.add_argument("--frames", type=int, help="number of frames (overrides --duration)")
    g.add_argument("--expression-scale", type=float, default=d.expression_scale,
                   help="multiply the 52 blendshapes")
    g.add_argument("--pose-scale", type=float, default=d.pose_scale,
                   help="multiply head rotation and offset")
    g.add_argument("--smooth", type=float, default=d.smooth, metavar="SECONDS",
                   help="Savitzky-Golay smoothing window (0 = none)")
    g.add_argument("--pose-mode", choices=job.POSE_MODES, default=d.pose_mode,
                   help="relative: the photo's head pose, moved by the track's rotations about "
                        "their median; absolute: the track's rotations as they are")
    g.add_argument("--backdrop", choices=job.BACKDROPS, default=d.backdrop,
                   help="world: the room behind the person stays still while the head moves "
                        "(the photo with the person filled in, behind the head's planes); head: "
                        "the whole MPI moves with the head, room and all")
    g.add_argument("--body", choices=job.BODIES, default=d.body,
                   help="with --backdrop world: head: the whole person moves with the head; "
                        "world: the body below the neck stays with the room while the head "
                        "turns and nods on the neck (for a driver whose body stays still)")
    g.add_argument("--geometry", choices=job.GEOMETRIES, default=d.geometry,
                   help="surface: each pixel's planes re-laid as one opaque surface at the depth "
                        "the model gives it (sharp when the head turns); layers: the model's soft "
                        "planes as they are (a turned head smears)")
    g.add_argument("--paint", choices=job.PAINTS, default=d.paint,
                   help="holes: the photo is copied (along the flow) wherever the face rig can "
                        "copy it, the model's painted colour shows only where the photo has "
                        "nothing (an opening mouth, teeth); model: the model's own mix")
    g.add_argument("--prior-fill", choices=job.PRIOR_FILLS, default=d.prior_fill,
                   help="outside: the face rig's flow is carried past the face, fading out, so "
                        "the neck and hair next to a moving jaw stretch instead of folding into "
                        "stacked copies of the chin; none: it stops at the face's outline")
    g = p.add_argument_group("sampling")
    g.add_argument("--seed", type=int, default=d.seed, help="noise seed (shared by all frames)")
    g.add_argument("--steps", type=int, default=d.steps, help="sampler steps")
    g.add_argument("--sampler", choices=("heun", "euler"), default=d.sampler)
    g.add_argument("--batch-size", type=int, default=d.batch_size,
                   help="frames per clip (later clips are conditioned on an earlier frame: "
                        "--prev-mode)")
    g.add_argument("--space", choices=job.SPACES, default=d.space,
                   help="camera the model makes each MPI in: reference = the photo's (then "
                        "moved into the frame's camera; robust to head turns), target = the "
                        "frame's own")
    g.add_argument("--prev-mode", choices=job.PREV_MODES, default=d.prev_mode,
                   help="frame later clips are conditioned on: anchor = the first clip's last "
                        "frame (no build-up of errors), chain = the previous clip's last frame, "
                        "none = no frame")
    g = p.add_argument_group("video")
    g.add_argument("--eye-size", type=int, metavar="N",
                   help=f"pixels per eye (width, at most {job.MAX_EYE_SIZE}); default 512 when "
                        "generating, the MPI's width with --mpi")
    g.add_argument("--layout", choices=job.LAYOUTS, default=d.layout,
                   help="stereo packing: side by side (NAME_LR.mp4) or top-bottom (NAME_TB.mp4)")
    g.add_argument("--half", action="store_true",
                   help="half-width (sbs) / half-height (tb) packing")
    g.add_argument("--ipd-mm", type=float, default=d.ipd_mm,
                   help="stereo baseline (inter-pupillary distance), millimetres")
    g.add_argument("--convergence-m", type=float, default=camera.DEFAULT_HEAD_DEPTH_M,
                   help="depth put at zero disparity (the screen plane): disparity(d) = "
                        "f*ipd*(1/d - 1/convergence); inf = parallel eyes")
    g.add_argument("--novel-view", choices=job.NOVEL_VIEWS,
                   default=d.novel_view, help="camera path of the mono novel-view video")
    g.add_argument("--audio", metavar="FILE", help="audio to mux (must match the video length)")
    g.add_argument("--ply", nargs="?", type=int, const=0, metavar="FRAME",
                   help="also write a coloured point cloud (.ply) of this frame (default 0)")
    g.add_argument("--crf", type=int, default=d.crf,
                   help="H.264 constant rate factor (lower = better)")
    g.add_argument("--web", action="store_true",
                   help="also write OUT/web/: a WebXR page of the sequence for a headset's "
                        "browser (serve it with python -m mpitalk.web --serve OUT/web)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or summary")
    p.add_argument("--debug", action="store_true",
                   help="show the full traceback of an unexpected error")
    return p


def _options(args: argparse.Namespace):
    from mpitalk import job

    fields = {f.name for f in dataclasses.fields(job.JobOptions)}
    kw = {k: v for k, v in vars(args).items() if k in fields}
    return job.JobOptions(**kw)


def _parse_shard(text: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
        if n < 1 or not 0 <= i < n:
            raise ValueError
    except ValueError:
        raise UserError(f"--shard must be I/N with 0 <= I < N, got {text!r}") from None
    return i, n


def _batch(args: argparse.Namespace) -> int:
    from mpitalk import job

    shard = _parse_shard(args.shard)
    defaults = _options(args)
    results = job.run_batch(Path(args.jobs), Path(args.out), defaults, shard,
                            progress=not args.quiet)
    failed = [r for r in results if r["status"] == "failed"]
    print(f"{'line':>5}  {'status':<8} {'seconds':>8}  out / reason")
    for r in results:
        detail = r["reason"] if r["status"] == "failed" else (
            f"{r['out']} ({r['reason']})" if r["reason"] else r["out"])
        print(f"{r['line']:>5}  {r['status']:<8} {r['seconds']:>8.1f}  {detail}")
    print(f"{len(results)} jobs: {len(results) - len(failed)} done or skipped, "
          f"{len(failed)} failed")
    sys.stdout.flush()
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except _UsageError as exc:
        print(f"{PROG}: error: {exc} (see --help)", file=sys.stderr)
        return 1
    with one_line_warnings():
        return _main(args)


def _main(args: argparse.Namespace) -> int:
    from mpitalk import job

    def body() -> int:
        if args.jobs is not None:
            return _batch(args)
        report = job.run_job(_options(args))
        if not args.quiet:
            t = report["timings_s"]
            print(f"wrote {args.out}/: {', '.join(report['outputs'])} "
                  f"({report['frames']} frames, {t['total_s']:.1f} s)")
        return 0

    return run_cli(body, interrupted="interrupted; nothing was written", prog=PROG,
                   debug=bool(args.debug))


if __name__ == "__main__":
    sys.exit(main())
