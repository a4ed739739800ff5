"""The environment that tells a session which GPUs it holds.

Whole GPUs: CUDA_VISIBLE_DEVICES lists the device UUIDs. A fraction of one GPU
additionally gets the CUDA MPS client limits, so that the share is enforced by
the MPS server on the host: a percentage of the SMs and a pinned memory limit
(device 0 is the first — and only — visible device).
"""

from __future__ import annotations

from gpu_allocator.client import fractional


def gpu_env(allocation: dict | None) -> dict[str, str]:
    if not allocation:
        return {"CUDA_VISIBLE_DEVICES": "", "GPUHUB_GPUS": "0"}
    devices = allocation["devices"]
    env = {
        "CUDA_VISIBLE_DEVICES": ",".join(d["uuid"] for d in devices),
        "GPUHUB_ALLOCATION": allocation["id"],
        "GPUHUB_GPUS": allocation["gpus"],
        "GPUHUB_HOST": allocation["host"],
    }
    if fractional(allocation):
        units, per_gpu = devices[0]["units"], allocation["units_per_gpu"]
        env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] = str(max(1, (units * 100) // per_gpu))
        limit_mb = devices[0]["memory_mb"] * units // per_gpu
        env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] = f"0={limit_mb}M"
        mps = allocation.get("mps") or {}
        if mps.get("pipe_dir"):  # the host's MPS daemon (runtimes may map it elsewhere)
            env["CUDA_MPS_PIPE_DIRECTORY"] = mps["pipe_dir"]
    return env


def describe(allocation: dict) -> str:
    """'0.5 × A100-SXM4-80GB (GPU-…) on node-a' for progress and logs."""
    devices = allocation.get("devices") or []
    if len(devices) == 1:
        d = devices[0]
        return f"{d['fraction']} × {d['model']} ({d['uuid']}) on {allocation['host']}"
    uuids = ", ".join(d["uuid"] for d in devices)
    return f"{len(devices)} × {devices[0]['model']} ({uuids}) on {allocation['host']}"
