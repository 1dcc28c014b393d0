"""A checkpoint with its rig-prior gate set by hand (issue 20; how data/checkpoint's stage 6 was
made from stage 5).

    python scripts/set_prior_gate.py --checkpoint STAGE5 --gate 1.0 --out data/checkpoint

A model whose learned flow layer is zero flows by ``bound * tanh(gate * prior / bound)``: the
gate is the share of the rig's motion the photo is warped by. Training on real video with the
mean-squared loss keeps it below 1 (0.6-0.7: a shrunk warp is the safer average of uncertain
motion), while the expression a viewer reads needs the whole motion; this sets it, keeping
every other weight, the configuration and the step, and says so in the checkpoint's note.
"""

from __future__ import annotations

import argparse

from mpitalk import checkpoint
from mpitalk.model.heads import PRIOR_GATE_SCALE


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="a checkpoint with a flow branch")
    p.add_argument("--gate", type=float, required=True, help="the prior gate to set")
    p.add_argument("--out", required=True, help="where to write the new checkpoint")
    p.add_argument("--note", default="", help="prepended to the checkpoint's note")
    a = p.parse_args(argv)
    config, model = checkpoint.load(a.checkpoint)
    if config.flow_bound <= 0:
        raise SystemExit(f"{a.checkpoint}: no flow branch, so no prior gate to set")
    old = float(model.heads.gate())
    model.heads.prior_gate[...] = model.heads.prior_gate[...] * 0 + a.gate / PRIOR_GATE_SCALE
    checkpoint.save_derived(a.out, config, model, a.checkpoint,
                            f"with its prior gate set from {old:.4f} to {a.gate:g} by "
                            "scripts/set_prior_gate.py; every other weight unchanged", a.note)
    print(f"gate {old:.4f} -> {float(model.heads.gate()):.4f}: wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
