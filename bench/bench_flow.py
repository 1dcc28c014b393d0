"""Cost of the warp-and-paint colour branch (issue 20): one flow shared by the planes or one per
group, against no flow, for the shipped model's heads (S 128, 32 planes, a training batch's 6
photo-camera + 2 target-camera samples).

Times the heads alone (fields + compose, forward and backward in the heads' parameters), which
is all the flow changes; the U-Net in front is the same for every row (its input stem gains a
zero-initialised layer of 3 x 4 inputs). Prints a table and writes bench/results_flow.json.

    python bench/bench_flow.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mpitalk import checkpoint
from mpitalk import model as M

OUT = Path(__file__).resolve().parent / "results_flow.json"


def _time_heads(config, batch: int, reference: bool, repeats: int) -> dict:
    model = M.MPIModel(config, rngs=nnx.Rngs(0))
    heads = model.heads
    rng = np.random.default_rng(0)
    S = config.image_size
    identity = rng.random((batch, S, S, 3), np.float32)
    pose = np.tile(np.array([0.1, 0.0, 0.0, 0.0, 0.0, 0.6], np.float32), (batch, 1))
    cond = {"cond_render": rng.random((batch, S, S, 4), np.float32),
            "expression": np.concatenate([rng.random((batch, 52)), pose], 1).astype(np.float32),
            "prev_frame": np.zeros((batch, S, S, 3), np.float32),
            "has_prev": np.zeros(batch, np.float32),
            "prior_flow": (0.02 * rng.standard_normal((batch, S, S, 2))).astype(np.float32),
            "prior_valid": np.ones((batch, S, S), np.float32)}
    c = M.build_conditioning(config, identity, cond, reference_space=reference)
    c = {k: v for k, v in c.items() if k not in ("image", "vector")}
    h = jnp.asarray(rng.standard_normal((batch, S // 2, S // 2, model.unet.out_channels)),
                    jnp.float32)
    if config.flow_bound > 0:  # a non-zero flow (the timing must not ride on zeros)
        heads.flow.kernel[...] = jnp.asarray(
            0.02 * rng.standard_normal(heads.flow.kernel.shape), jnp.float32)

    def loss(hd, h, c):
        f = hd.fields(h, c["sweep"][..., 3], c.get("prior_base"))
        return jnp.mean(hd.compose(f, c) ** 2)

    step = nnx.jit(lambda hd, h, c: nnx.value_and_grad(loss)(hd, h, c))
    t0 = time.perf_counter()
    jax.block_until_ready(step(heads, h, c))
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(step(heads, h, c))
        times.append(time.perf_counter() - t0)
    flow_params = (int(np.prod(heads.flow.kernel.shape) + np.prod(heads.flow.bias.shape))
                   if config.flow_bound > 0 else 0)
    return {"median_ms": 1e3 * float(np.median(times)), "min_ms": 1e3 * float(np.min(times)),
            "compile_s": compile_s, "flow_params": flow_params}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args(argv)
    base = checkpoint.read_meta(checkpoint.default_path())["config"]
    base = M.Config.from_dict(base)
    rows = []
    for name, kw in (("no flow (shipped)", {}), ("flow, G=1", {"flow_bound": 0.1}),
                     ("flow, G=4", {"flow_bound": 0.1, "flow_groups": 4})):
        cfg = base.replace(**kw)
        for space, batch, ref in (("photo camera", 6, True), ("target camera", 2, False)):
            r = _time_heads(cfg, batch, ref, a.repeats)
            rows.append({"heads": name, "space": space, "batch": batch, **r})
            print(f"{name:18s} {space:14s} B={batch}  {r['median_ms']:8.1f} ms "
                  f"(min {r['min_ms']:.1f})  compile {r['compile_s']:.1f} s  "
                  f"flow params {r['flow_params']}", flush=True)
    out = {"bench": "flow", "run_at": time.strftime("%Y-%m-%d %H:%M:%S"),
           "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                       "load_avg_1m": os.getloadavg()[0]},
           "what": "heads fields+compose forward and backward, shipped config", "rows": rows}
    OUT.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
