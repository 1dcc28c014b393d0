"""The CLI of expression tracks: ``python -m mpitalk.controls_cli extract|info|plot``.

``extract`` runs MediaPipe (:mod:`mpitalk.face`) over a driving video or images and writes a track;
``info`` prints a summary table; ``plot`` draws the main channels to a PNG. Kept apart from
:mod:`mpitalk.controls` so that imports follow the data flow: ``face`` uses ``controls`` (the
Track), this CLI uses both. ``python -m mpitalk.controls`` runs the same CLI.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mpitalk import UserError, camera, one_line_warnings, run_cli
from mpitalk.controls import ARKIT_NAMES, Track, load

MAIN_CHANNELS = ("jawOpen", "eyeBlinkLeft", "eyeBlinkRight", "mouthSmileLeft", "mouthSmileRight",
                 "mouthFunnel", "mouthPucker", "browInnerUp")


def format_info(track: Track, title: str = "") -> str:
    """A plain-text summary table of a track: length, rate, pose ranges, the busiest channels."""
    lines = [f"{title}: {len(track)} frames at {track.fps:.3f} fps ({track.duration:.2f} s)"]
    rows = track.summary()
    lines.append(f"{'channel':<20}{'min':>9}{'mean':>9}{'max':>9}{'std':>9}")
    pose_rows = rows[len(ARKIT_NAMES):]
    for name, lo, mean, hi, std in pose_rows:
        if name in ("yaw", "pitch", "roll"):  # show angles in degrees
            lo, mean, hi, std = (math.degrees(x) for x in (lo, mean, hi, std))
            name = f"{name} (deg)"
        else:
            name = f"{name} (m)"
        lines.append(f"{name:<20}{lo:>9.3f}{mean:>9.3f}{hi:>9.3f}{std:>9.3f}")
    busiest = sorted(rows[: len(ARKIT_NAMES)], key=lambda r: -r[4])
    main = [r for r in rows if r[0] in MAIN_CHANNELS]
    shown = main + [r for r in busiest if r[0] not in MAIN_CHANNELS][:8]
    for name, lo, mean, hi, std in shown:
        lines.append(f"{name:<20}{lo:>9.3f}{mean:>9.3f}{hi:>9.3f}{std:>9.3f}")
    still = sum(1 for r in rows[: len(ARKIT_NAMES)] if r[3] == 0.0)
    lines.append(f"({still} of {len(ARKIT_NAMES)} blendshapes are 0 throughout)")
    return "\n".join(lines)


def plot_track(track: Track, path: str | Path, title: str = "") -> None:
    """Write a PNG of the main channels, the busiest other blendshapes and the head pose."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = track.times
    rows = track.summary()[: len(ARKIT_NAMES)]
    others = [r[0] for r in sorted(rows, key=lambda r: -r[4]) if r[0] not in MAIN_CHANNELS][:6]
    fig, axes = plt.subplots(4, 1, figsize=(11, 10), sharex=True)
    for ax, names in ((axes[0], MAIN_CHANNELS[:5]), (axes[1], MAIN_CHANNELS[5:] + tuple(others))):
        for n in names:
            ax.plot(t, track.channel(n), label=n, lw=1.2)
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel("weight")
        ax.legend(loc="upper right", fontsize=7, ncol=3)
        ax.grid(alpha=0.3)
    for n in ("yaw", "pitch", "roll"):
        axes[2].plot(t, np.degrees(track.channel(n)), label=n, lw=1.2)
    axes[2].set_ylabel("degrees")
    for n in ("tx", "ty", "tz"):
        axes[3].plot(t, track.channel(n) - (camera.DEFAULT_HEAD_DEPTH_M if n == "tz" else 0.0),
                     label=n if n != "tz" else f"tz - {camera.DEFAULT_HEAD_DEPTH_M}", lw=1.2)
    axes[3].set_ylabel("metres")
    axes[3].set_xlabel("time (s)")
    for ax in axes[2:]:
        ax.legend(loc="upper right", fontsize=7)
        ax.grid(alpha=0.3)
    axes[0].set_title(f"{title}  ({len(track)} frames, {track.fps:.2f} fps)")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=100)
    except OSError as e:
        raise UserError(f"{path}: cannot write ({e.strerror or e})") from None
    finally:
        plt.close(fig)


def _cmd_extract(args: argparse.Namespace) -> int:
    from mpitalk import face

    source = args.inputs[0] if len(args.inputs) == 1 else args.inputs
    track = face.extract_track(source, fps=args.fps, progress=not args.quiet)
    if args.smooth > 0:
        track = track.smooth(args.smooth)
    track.save(args.output)
    print(f"wrote {args.output}: {len(track)} frames at {track.fps:.3f} fps")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    print(format_info(load(args.track, fps=args.fps), str(args.track)))
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    track = load(args.track, fps=args.fps)
    out = args.output or str(Path(args.track).with_suffix(".png"))
    plot_track(track, out, Path(args.track).name)
    print(f"wrote {out}")
    return 0


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = argparse.ArgumentParser(prog="python -m mpitalk.controls", formatter_class=fmt,
                                description="Expression tracks: extract from video, inspect, plot.")
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("extract", formatter_class=fmt,
                       help="blendshapes + head pose from a driving video or images")
    e.add_argument("inputs", nargs="+", help="a video, a folder of images, or image files")
    e.add_argument("-o", "--output", required=True, help="track file (.csv, .json or .npz)")
    e.add_argument("--fps", type=float, default=None,
                   help="frame rate (default: the video's; 30 for images)")
    e.add_argument("--smooth", type=float, default=0.0,
                   help="Savitzky-Golay window in seconds (0 = none)")
    e.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    e.set_defaults(func=_cmd_extract)
    i = sub.add_parser("info", formatter_class=fmt, help="print a summary table of a track")
    i.add_argument("track", help="track file (.csv, Live Link Face .csv, .json, .npz)")
    i.add_argument("--fps", type=float, default=None, help="rate of the rows if the file has none")
    i.set_defaults(func=_cmd_info)
    g = sub.add_parser("plot", formatter_class=fmt, help="plot a track's main channels to a PNG")
    g.add_argument("track", help="track file")
    g.add_argument("-o", "--output", default=None, help="PNG path (default: next to the track)")
    g.add_argument("--fps", type=float, default=None, help="rate of the rows if the file has none")
    g.set_defaults(func=_cmd_plot)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry: ``extract``, ``info``, ``plot``. User errors and warnings print one line each;
    user errors return 1."""
    args = _parser().parse_args(argv)
    with one_line_warnings():
        return run_cli(lambda: args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
