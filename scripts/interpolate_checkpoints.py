"""A checkpoint whose weights lie between two others (weight-space ensembling, as in WiSE-FT,
Wortsman et al., CVPR 2022: a fine-tuned model averaged with the model it started from often
keeps the fine-tune's gains and wins back what it lost on the first model's data).

    python scripts/interpolate_checkpoints.py --base STAGE4 --tuned STAGE6 --alpha 0.5 --out OUT

Every weight both models have becomes ``alpha * base + (1 - alpha) * tuned``. A weight only the
tuned model has (a branch added by the fine-tune, which started at zero) is scaled the same way,
``(1 - alpha) * tuned`` (the base model is that branch at zero), except the ones named by
``--keep`` (default: the rig prior's gate, set by hand: ``scripts/set_prior_gate.py``), which
stay the tuned model's. The configuration and the step are the tuned model's.
"""

from __future__ import annotations

import argparse

import jax.numpy as jnp
from flax import nnx

from mpitalk import checkpoint


def interpolate(base, tuned, alpha: float, keep: tuple[str, ...] = ("prior_gate",)) -> list[str]:
    """Set ``tuned``'s parameters in place to ``alpha * base + (1 - alpha) * tuned`` (a
    parameter ``base`` lacks counts as zero there; the ones whose path names an entry of
    ``keep`` are left alone). Returns the paths of the parameters ``base`` lacks."""
    ours = dict(nnx.to_flat_state(nnx.state(base, nnx.Param)))
    state = nnx.state(tuned, nnx.Param)
    missing = []
    for path, var in nnx.to_flat_state(state):
        if any(k in path for k in keep):
            continue
        t = jnp.asarray(var.get_value())
        if path in ours:
            b = jnp.asarray(ours[path].get_value())
            if b.shape != t.shape:
                raise ValueError(f"{'.'.join(map(str, path))}: shapes {b.shape} and {t.shape} "
                                 "differ; the two checkpoints are not one architecture")
        else:
            b = jnp.zeros_like(t)
            missing.append(".".join(map(str, path)))
        var.set_value(alpha * b + (1.0 - alpha) * t)
    nnx.update(tuned, state)
    return missing


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", required=True, help="the checkpoint the fine-tune started from")
    p.add_argument("--tuned", required=True, help="the fine-tuned checkpoint")
    p.add_argument("--alpha", type=float, required=True, help="the base model's share, 0..1")
    p.add_argument("--keep", nargs="*", default=["prior_gate"],
                   help="parameters (by a name in their path) kept at the tuned model's value")
    p.add_argument("--out", required=True, help="where to write the new checkpoint")
    a = p.parse_args(argv)
    if not 0.0 <= a.alpha <= 1.0:
        raise SystemExit(f"--alpha must be in [0, 1], got {a.alpha}")
    _, base = checkpoint.load(a.base)
    config, tuned = checkpoint.load(a.tuned)
    missing = interpolate(base, tuned, a.alpha, tuple(a.keep))
    note = checkpoint.save_derived(
        a.out, config, tuned, a.tuned,
        f"as {1 - a.alpha:g} of it + {a.alpha:g} x {a.base} by scripts/interpolate_checkpoints.py;"
        f" kept: {', '.join(a.keep) or 'none'}; scaled from zero: {', '.join(missing) or 'none'}")
    print(f"wrote {a.out} ({note})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
