"""Training throughput of the ``tiny`` config on this machine, and the cost of sharding a step
over 4 host (CPU) devices. Prints a table and writes bench/results_train.json.

    python bench/bench_train.py [--steps N] [--batch B]

The 4-device run is a subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=4``
(the flag must be set before JAX starts): same cores, so it measures overhead, not speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def measure(config_name: str, batch: int, steps: int) -> dict:
    import jax
    import jax.numpy as jnp

    from mpitalk import model as M
    from mpitalk import train

    config = M.PRESETS[config_name]().replace(batch_size=batch)
    trainer = train.Trainer(config, "/nonexistent-bench-workdir")
    clips = train.fake_clips(8, config.image_size, 12)
    data = train.batches(clips, config, 0, batch)
    t_compile = time.perf_counter()
    times = []
    for i in range(steps + 1):
        b = train.shard_batch(trainer.mesh, next(data))
        t0 = time.perf_counter()
        trainer.ema, m = train.train_step(trainer.model, trainer.optimizer, trainer.ema, b,
                                          jax.random.fold_in(trainer.key, i),
                                          jnp.asarray(i, jnp.float32))
        jax.block_until_ready(m["loss"])
        times.append(time.perf_counter() - t0)
        if i == 0:
            t_compile = time.perf_counter() - t_compile
    step_s = sorted(times[1:])[len(times[1:]) // 2]
    return {"config": config_name, "devices": jax.device_count(), "batch": batch,
            "step_s_median": step_s, "samples_per_s": batch / step_s,
            "first_step_s_incl_compile": t_compile}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="tiny")
    p.add_argument("--steps", type=int, default=5, help="timed steps (after one warm-up)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(measure(a.config, a.batch, a.steps)))
        return 0
    rows = []
    for devices in (1, 4):
        env = dict(os.environ)
        if devices > 1:
            env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
        out = subprocess.run([sys.executable, __file__, "--child", "--config", a.config,
                              "--steps", str(a.steps), "--batch", str(a.batch)],
                             env=env, capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    rows[1]["sharding_overhead"] = rows[1]["step_s_median"] / rows[0]["step_s_median"] - 1.0
    print(f"{'config':8s} {'devices':>7s} {'batch':>5s} {'step s':>8s} {'samples/s':>9s} "
          f"{'compile s':>9s}")
    for r in rows:
        print(f"{r['config']:8s} {r['devices']:7d} {r['batch']:5d} {r['step_s_median']:8.3f} "
              f"{r['samples_per_s']:9.2f} {r['first_step_s_incl_compile']:9.1f}")
    print(f"sharding overhead with 4 host devices: {100 * rows[1]['sharding_overhead']:+.0f}%")
    import platform

    result = {"machine": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
              "rows": rows, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
    Path(__file__).with_name("results_train.json").write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
