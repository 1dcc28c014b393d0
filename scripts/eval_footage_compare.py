"""Real-footage figures of a checkpoint next to the shipped one's (docs/eval/footage/).

Runs ``python -m mpitalk.evaluate --footage DIR --split test --checkpoint PATH --out OUT`` (the
same bounded default run as docs/eval/footage/: frames, pairs, steps, seed) unless ``OUT``
already holds its metrics.json (``--reuse``), then prints the model rows of both runs side by
side with the baselines, over all clips and per source video, and writes ``OUT/compare.json``.
A differing dataset (the manifest's checksum) is reported: the figures are then not comparable.

    python scripts/eval_footage_compare.py --footage /work/cache/footage \\
        --checkpoint runs/finetune/checkpoint --out eval-footage-finetune
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "docs" / "eval" / "footage" / "metrics.json"


def _fmt(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


def _rows(base: dict, new: dict, task: str) -> list[list[str]]:
    b, n = base[task], new[task]
    rows = []
    for metric in n["model"]:
        rows.append([metric, _fmt(b.get("model", {}).get(metric)), _fmt(n["model"][metric]),
                     _fmt(n["flat"][metric]), _fmt(n["identity_image"][metric])])
    return rows


def _table(title: str, rows: list[list[str]]) -> str:
    head = ["metric", "shipped", "new", "flat", "identity_image"]
    lines = [title, "".join(f"{h:>18}" for h in head)]
    lines += ["".join(f"{c:>18}" for c in r) for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--footage", type=Path, required=True, help="real-footage dataset folder")
    p.add_argument("--checkpoint", required=True, help="the checkpoint to measure")
    p.add_argument("--out", type=Path, required=True, help="output folder of its evaluation")
    p.add_argument("--baseline", type=Path, default=SHIPPED,
                   help="metrics.json to compare with (the shipped checkpoint's)")
    p.add_argument("--reuse", action="store_true",
                   help="use OUT/metrics.json if it is there instead of evaluating again")
    p.add_argument("extra", nargs="*", help="more options for python -m mpitalk.evaluate "
                                            "(after --), e.g. -- --max-pairs 0")
    a = p.parse_args(argv)
    if not a.baseline.is_file():
        print(f"error: {a.baseline}: no baseline metrics.json", file=sys.stderr)
        return 1
    if not (a.reuse and (a.out / "metrics.json").is_file()):
        from mpitalk import evaluate

        code = evaluate.main(["--footage", str(a.footage), "--split", "test", "--checkpoint",
                              a.checkpoint, "--out", str(a.out), "--quiet", *a.extra])
        if code:
            return code
    base = json.loads(a.baseline.read_text())
    new = json.loads((a.out / "metrics.json").read_text())
    same_data = base["run"]["manifest_sha256"] == new["run"]["manifest_sha256"]
    if not same_data:
        print("warning: the two runs read different datasets (manifest checksums differ): "
              "the figures are not comparable", file=sys.stderr)
    for key in ("frames_per_clip", "pairs", "steps", "seed"):
        if base["run"][key] != new["run"][key]:
            print(f"warning: {key} differs ({base['run'][key]} vs {new['run'][key]})",
                  file=sys.stderr)
    out = {"baseline": str(a.baseline), "checkpoint": a.checkpoint, "same_data": same_data}
    for task in ("self_reenactment", "cross_reenactment"):
        rows = _rows(base, new, task)
        print(_table(f"{task} (all clips)", rows))
        out[task] = rows
        for source, table in new["by_source"][task].items():
            old = base["by_source"][task].get(source)
            if old is None:
                continue
            rows = _rows({task: old}, {task: table}, task)
            print(_table(f"{task}: {source}", rows))
            out[f"{task}:{source}"] = rows
    (a.out / "compare.json").write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {a.out / 'compare.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
