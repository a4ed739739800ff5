"""Real-GPU check of fractional shares enforced by CUDA MPS.

On a host with an NVIDIA GPU (and PyTorch with CUDA, and nvidia-cuda-mps-control):
1. start an MPS control daemon in a private pipe directory (nothing global is
   touched: no clock, compute-mode or MIG changes);
2. run two client processes with a 0.5 share each — the exact variables
   GPUSpawner sets (spawner.gpu_env.gpu_env) — and show that each can allocate
   just under its pinned memory limit and gets a clean out-of-memory error above it;
3. measure the aggregate matmul throughput of the two 0.5 clients against one
   client holding the whole GPU, in the same run, and print the ratio;
4. stop the daemon.

    python benchmarks/gpu_fraction.py [--seconds 10] [--size 8192] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def worker(args) -> None:
    """One MPS client: memory probe, then a timed matmul loop; prints JSON."""
    import torch

    dev = torch.device("cuda:0")
    torch.cuda.init()
    result: dict = {"pid": os.getpid(), "env": {k: v for k, v in os.environ.items()
                                                if k.startswith(("CUDA_MPS", "CUDA_VISIBLE"))}}
    limit_mb = args.limit_mb
    if limit_mb:
        chunk = 256 * 1024**2
        held, total = [], 0
        below = int(limit_mb * 1024**2 * 0.9)  # just under the limit: must succeed
        try:
            while total + chunk <= below:
                held.append(torch.empty(chunk, dtype=torch.uint8, device=dev))
                total += chunk
            result["allocated_under_limit_mb"] = total // 1024**2
            result["under_limit_ok"] = True
        except torch.cuda.OutOfMemoryError as e:
            result["under_limit_ok"] = False
            result["under_limit_error"] = str(e).splitlines()[0]
            result["allocated_under_limit_mb"] = total // 1024**2
        try:  # well above the limit: must fail cleanly
            held.append(torch.empty(int(limit_mb * 0.3) * 1024**2, dtype=torch.uint8, device=dev))
            held.append(torch.empty(int(limit_mb * 0.3) * 1024**2, dtype=torch.uint8, device=dev))
            result["over_limit_refused"] = False
        except torch.cuda.OutOfMemoryError as e:
            result["over_limit_refused"] = True
            result["over_limit_error"] = str(e).splitlines()[0][:200]
        del held
        torch.cuda.empty_cache()
    n = args.size
    a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    while time.time() < args.start_at:  # both clients start together
        time.sleep(0.001)
    t0, iters = time.perf_counter(), 0
    while time.perf_counter() - t0 < args.seconds:
        for _ in range(10):
            a @ b
        torch.cuda.synchronize()
        iters += 10
    elapsed = time.perf_counter() - t0
    result["tflops"] = 2 * n**3 * iters / elapsed / 1e12
    print(json.dumps(result), flush=True)


def run_clients(envs: list[dict], args, limit_mb: int) -> list[dict]:
    start_at = time.time() + 15  # time for each client to create its context and warm up
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", "--seconds", str(args.seconds),
             "--size", str(args.size), "--start-at", str(start_at), "--limit-mb", str(limit_mb)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for env in envs
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=args.seconds + 300)
        if p.returncode != 0:
            raise SystemExit(f"client failed ({p.returncode}):\n{err[-3000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--limit-mb", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    import pynvml

    from spawner.gpu_env import gpu_env

    if not shutil.which("nvidia-cuda-mps-control"):
        raise SystemExit("nvidia-cuda-mps-control not found: this needs an NVIDIA driver with MPS")
    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    uuid = pynvml.nvmlDeviceGetUUID(handle)
    uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
    name = pynvml.nvmlDeviceGetName(handle)
    memory_mb = pynvml.nvmlDeviceGetMemoryInfo(handle).total // 1024**2
    pynvml.nvmlShutdown()

    workdir = Path(tempfile.mkdtemp(prefix="gpuhub-mps-"))
    mps_env = {**os.environ, "CUDA_MPS_PIPE_DIRECTORY": str(workdir / "pipe"),
               "CUDA_MPS_LOG_DIRECTORY": str(workdir / "log")}
    (workdir / "pipe").mkdir()
    (workdir / "log").mkdir()
    subprocess.run(["nvidia-cuda-mps-control", "-d"], env=mps_env, check=True)
    try:
        def share_env(fraction: float) -> dict:
            allocation = {"id": f"bench-{fraction}", "gpus": fraction, "host": "local",
                          "devices": [{"uuid": uuid, "fraction": fraction, "memory_mb": memory_mb}]}
            return {**mps_env, **gpu_env(allocation)}

        whole = run_clients([share_env(1)], args, 0)[0]
        halves = run_clients([share_env(0.5), share_env(0.5)], args, memory_mb // 2)
    finally:
        subprocess.run(["nvidia-cuda-mps-control"], input="quit\n", text=True, env=mps_env)
        shutil.rmtree(workdir, ignore_errors=True)

    aggregate = sum(h["tflops"] for h in halves)
    report = {"device": name if isinstance(name, str) else name.decode(), "memory_mb": memory_mb,
              "whole_gpu_tflops": whole["tflops"], "half_shares": halves,
              "aggregate_tflops": aggregate, "aggregate_over_whole": aggregate / whole["tflops"]}
    print(f"device: {report['device']} ({memory_mb} MB)")
    print(f"one client, whole GPU:        {whole['tflops']:8.1f} TFLOP/s (bf16 {args.size}² matmul)")
    for i, h in enumerate(halves):
        print(f"client {i}, 0.5 share:          {h['tflops']:8.1f} TFLOP/s; "
              f"allocated {h.get('allocated_under_limit_mb')} MB under a {memory_mb // 2} MB limit "
              f"(ok={h.get('under_limit_ok')}), above the limit refused={h.get('over_limit_refused')}")
    print(f"two 0.5 shares together:      {aggregate:8.1f} TFLOP/s = "
          f"{report['aggregate_over_whole']:.2f} × the whole GPU")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
