"""MiniLM embedder variants compared by the CPU time of the calling thread: steady on a shared machine.

    .venv/bin/python benchmarks/embedder_cpu.py [--passages 256] [--rounds 3] [--threads 1]
        [--old-src DIR]    # also an older checkout's MiniLMEmbedder (e.g. `git archive main | tar -x -C DIR`)

With one torch thread, ``time.thread_time()`` counts only the work done for the call: time the thread was
preempted by other jobs is not in it, and no second thread spins waiting. Rounds are interleaved,
alternating the order. Passages: a seeded sample of PostgreSQL-manual chunks, as
``embedder_options.py`` takes them. With ``--threads 2`` the script reports process CPU time and wall
time instead (both noisier).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import time
from pathlib import Path
from typing import Any

from embedder_options import manual_passages  # benchmarks/embedder_options.py

from groundwork.models.embedded import MiniLMEmbedder


def old_embedder(src: Path) -> Any:
    spec = importlib.util.spec_from_file_location("old_embedded", src / "groundwork/models/embedded.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MiniLMEmbedder()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--passages", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--old-src", type=Path)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    clock = time.thread_time if args.threads == 1 else time.process_time
    passages = manual_passages(args.passages, args.seed)
    variants: dict[str, Any] = {}
    if args.old_src:
        variants[f"fp32, {args.old_src}"] = old_embedder(args.old_src)
    for precision in ("fp32", "bf16", "int8"):
        variants[precision] = MiniLMEmbedder(precision=precision, query_runtime="torch")  # type: ignore[arg-type]
    for model in variants.values():
        model.embed(passages[:32])
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    wall: dict[str, list[float]] = {k: [] for k in variants}
    for r in range(args.rounds):
        for name in list(variants) if r % 2 == 0 else list(variants)[::-1]:
            c, w = clock(), time.perf_counter()
            variants[name].embed(passages)
            cpu[name].append(clock() - c)
            wall[name].append(time.perf_counter() - w)
    kind = "thread CPU" if args.threads == 1 else "process CPU"
    print(
        f"\n{len(passages)} passages per call, torch threads {args.threads}, {args.rounds} interleaved "
        f"rounds, load {os.getloadavg()[0]:.2f}\n"
    )
    print(f"| variant | {kind} s per round | median | vs fp32 | wall s median |\n|---|---|---:|---:|---:|")
    base = statistics.median(cpu["fp32"])
    for name in variants:
        med = statistics.median(cpu[name])
        rounds = ", ".join(f"{x:.2f}" for x in cpu[name])
        print(f"| {name} | {rounds} | {med:.2f} | {base / med:.2f}x | {statistics.median(wall[name]):.2f} |")


if __name__ == "__main__":
    main()
