"""The command line, ``python -m mpitalk.evaluate``: a synthetic split (``--data``), a real-footage
split (``--footage``) or real portraits (``--portraits ... --controls``); prints the headline
metrics."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from mpitalk import UserError, run_cli
from mpitalk.choices import BODIES, GEOMETRIES, PAINTS, PRIOR_FILLS
from mpitalk.evaluate.dataset import evaluate_dataset
from mpitalk.evaluate.footage import (
    CROSS_METRICS,
    DEFAULT_MAX_FRAMES,
    DEFAULT_MAX_PAIRS,
    SELF_METRICS,
    evaluate_footage,
)
from mpitalk.evaluate.generation import IDENTITY_INFO, load_model
from mpitalk.evaluate.portraits import evaluate_portraits
from mpitalk.evaluate.scores import IMAGE_METRICS, VIEWS


def _parser() -> argparse.ArgumentParser:
    from mpitalk import evaluate

    p = argparse.ArgumentParser(prog="python -m mpitalk.evaluate",
                                description=evaluate.__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", default=None,
                   help="model checkpoint (default: the shipped demo checkpoint)")
    p.add_argument("--data", type=Path, help="synthetic dataset folder (docs/dataset.md)")
    p.add_argument("--footage", type=Path, default=None,
                   help="real-footage dataset folder (python -m mpitalk.footage): self- and "
                        "cross-reenactment against the flat baseline and the identity image")
    p.add_argument("--split", default="test", help="split of --data / --footage to evaluate")
    p.add_argument("--out", type=Path, default=Path("eval-out"), help="output folder")
    p.add_argument("--max-clips", type=int, default=None, help="evaluate only the first N clips")
    p.add_argument("--max-frames", type=int, default=None,
                   help="use only the first N frames of each clip / of the track (default: all; "
                        f"{DEFAULT_MAX_FRAMES} with --footage)")
    p.add_argument("--max-pairs", type=int, default=DEFAULT_MAX_PAIRS,
                   help="--footage: cross-reenactment (identity, driving track) pairs, every "
                        "identity's first driver first (0: all)")
    p.add_argument("--photo", type=Path, default=None,
                   help="--footage: the photo driven in cross-reenactment besides the clips' "
                        "identity frames (default: data/identity.png)")
    p.add_argument("--driver-track", type=Path, default=None,
                   help="--footage: the driving track besides the other clips' tracks "
                        "(default: data/default_track.csv)")
    p.add_argument("--steps", type=int, default=None,
                   help="sampler steps (default: 8; with --footage the main job's default, 4)")
    p.add_argument("--seed", type=int, default=0, help="noise seed")
    p.add_argument("--batch-size", type=int, default=4, help="frames generated together")
    p.add_argument("--space", choices=("reference", "target"), default="reference",
                   help="camera the model makes each MPI in (mpitalk.generate.SPACES)")
    p.add_argument("--backdrop", choices=("world", "head"), default="world",
                   help="--footage: the model's frames over a still room behind the head, as "
                        "the main job shows them (world), or each MPI rendered whole (head)")
    p.add_argument("--body", choices=BODIES, default="head",
                   help="--footage, --backdrop world: the whole person moves with the head "
                        "(head, the main job's default), or the head planes end at the neck and "
                        "the body stays with the room (world, the job's --body world)")
    p.add_argument("--geometry", choices=GEOMETRIES, default="surface",
                   help="how the model's planes are stored: one opaque surface per pixel "
                        "(surface, the main job's default) or the model's soft layers")
    p.add_argument("--paint", choices=PAINTS, default="holes",
                   help="where the model's painted colour shows: only in the rig prior's holes, "
                        "the photo copied elsewhere (holes, the main job's default), or where "
                        "the model mixes it in (model)")
    p.add_argument("--prior-fill", choices=PRIOR_FILLS, default="outside",
                   help="the face rig's flow past the face: carried outwards without folds "
                        "(outside, the main job's default) or stopped at its outline (none)")
    p.add_argument("--identity-info", choices=IDENTITY_INFO, default="estimated",
                   help="the identity image's head pose and expression: estimated by MediaPipe "
                        "(as the main job does); estimated, with the frames' head poses given as "
                        "motion from the photo's (relative: as the main job applies a track); "
                        "relative with the photo's true blendshapes (relative_true_expression: "
                        "MediaPipe misreads synthetic heads' brows); or the dataset's true ones "
                        "(as the flat baseline uses)")
    p.add_argument("--chamfer-every", type=int, default=4,
                   help="Chamfer distance on every N-th frame (point clouds are slow)")
    p.add_argument("--baselines-only", action="store_true",
                   help="no model: evaluate the flat baseline and the ground truth only")
    p.add_argument("--portraits", nargs="+", default=None, metavar="IMG",
                   help="real portrait photos (no ground truth); needs --controls")
    p.add_argument("--controls", default=None, metavar="TRACK",
                   help="expression track driving --portraits (.csv/.json/.npz)")
    p.add_argument("--no-crop", action="store_true",
                   help="use the portraits as they are instead of face-cropping them")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.4g}"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return run_cli(lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    for name in ("max_clips", "max_frames", "steps", "batch_size", "chamfer_every"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if args.max_pairs < 0:
        raise UserError(f"--max-pairs must be 0 (all) or more, got {args.max_pairs}")
    progress = not args.quiet
    if args.footage is not None:
        return _run_footage(args)
    if args.steps is None:
        args.steps = 8
    if args.portraits:
        if not args.controls:
            raise UserError("--portraits needs --controls TRACK (the driving expression track)")
        if not Path(args.controls).is_file():
            raise UserError(f"{args.controls}: no such track file")
        for p in args.portraits:
            if not Path(p).is_file():
                raise UserError(f"{p}: no such image file")
        config, model = load_model(args.checkpoint)
        result = evaluate_portraits(args.portraits, args.controls, args.out, model=model,
                                    config=config, steps=args.steps, seed=args.seed,
                                    batch_size=args.batch_size, space=args.space,
                                    max_frames=args.max_frames, crop=not args.no_crop,
                                    progress=progress, geometry=args.geometry,
                                    paint=args.paint, prior_fill=args.prior_fill)
        m = result["mean"]
        print(f"identity distance {_fmt(m['identity']['distance'])}, expression MAE "
              f"{_fmt(m['expression']['mae'])}, face found {_fmt(m['expression']['face_found'])}"
              f", flicker {_fmt(m['temporal']['flicker'])}")
        print(f"wrote {args.out / 'metrics.json'}, {args.out / 'report.html'}, "
              f"{args.out / 'contact_sheet.png'}")
        return 0
    if args.data is None:
        raise UserError("give --data DIR (a synthetic dataset) or --portraits IMG... --controls "
                        "TRACK")
    if not (args.data / "manifest.json").is_file():
        raise UserError(f"{args.data}: no manifest.json; generate data with "
                        f"python -m mpitalk.synth --out {args.data}")
    model = config = None
    if not args.baselines_only:
        config, model = load_model(args.checkpoint)
    result = evaluate_dataset(args.data, args.split, args.out, model=model, config=config,
                              steps=args.steps, seed=args.seed, batch_size=args.batch_size,
                              space=args.space,
                              max_clips=args.max_clips, max_frames=args.max_frames,
                              chamfer_every=args.chamfer_every,
                              checkpoint_name=str(args.checkpoint or "shipped"),
                              identity_info=args.identity_info, progress=progress,
                              geometry=args.geometry, paint=args.paint,
                              prior_fill=args.prior_fill)
    print(summary_table(result))
    print(f"wrote {args.out / 'metrics.json'}, {args.out / 'report.html'}")
    return 0


def _run_footage(args: argparse.Namespace) -> int:
    from mpitalk.job import JobOptions

    if args.data is not None or args.portraits:
        raise UserError("give one of --data, --footage and --portraits")
    if not (args.footage / "manifest.json").is_file():
        raise UserError(f"{args.footage}: no manifest.json; build it with python -m "
                        f"mpitalk.footage VIDEO... --out {args.footage}")
    model = config = None
    if not args.baselines_only:
        config, model = load_model(args.checkpoint)
    result = evaluate_footage(
        args.footage, args.split, args.out, model=model, config=config,
        steps=args.steps if args.steps is not None else JobOptions().steps, seed=args.seed,
        batch_size=args.batch_size, space=args.space, max_clips=args.max_clips,
        max_frames=args.max_frames if args.max_frames is not None else DEFAULT_MAX_FRAMES,
        max_pairs=args.max_pairs or None, photo=args.photo, driver_track=args.driver_track,
        checkpoint_name=str(args.checkpoint or "shipped"), progress=not args.quiet,
        backdrop=args.backdrop, body=args.body, geometry=args.geometry,
        paint=args.paint, prior_fill=args.prior_fill)
    print(footage_table(result))
    print(f"wrote {args.out / 'metrics.json'}, {args.out / 'details.json'}, "
          f"{args.out / 'report.html'}")
    return 0


def footage_table(result: dict) -> str:
    """The footage metrics as a text table: one block per task, a column per method."""
    lines = []
    for task, names in (("self_reenactment", SELF_METRICS), ("cross_reenactment",
                                                              CROSS_METRICS)):
        table = result[task]
        lines.append(f"{task:<28}" + "".join(f"{m:>16}" for m in table))
        lines += [f"  {k:<26}" + "".join(f"{_fmt(table[m][k]):>16}" for m in table)
                  for k in names]
    return "\n".join(lines)


def summary_table(result: dict) -> str:
    """The headline metrics as a text table (model vs flat baseline)."""
    flat = result["baselines"]["flat"]
    lines = [f"{'metric':<28}{'model':>10}{'flat':>10}"]

    def row(label: str, get: Callable[[dict], float | None]) -> None:
        lines.append(f"{label:<28}{_fmt(get(result)):>10}{_fmt(get(flat)):>10}")

    for v in VIEWS:
        for m in IMAGE_METRICS:
            row(f"{v}.{m}", lambda d, v=v, m=m: d["views"][v][m])
    row("geometry.depth_mae_mm", lambda d: d["geometry"]["depth_mae_mm"])
    row("expression.mae", lambda d: d["expression"]["mae"])
    row("identity.distance", lambda d: d["identity"]["distance"])
    return "\n".join(lines)

