"""What the runtimes create for a share, built by pure functions (as kubespawner's
make_pod_spec) and tested without an engine: the session's environment and the
Docker container's GPU configuration."""

from __future__ import annotations

from spawner.docker import MPS_PIPE_IN_CONTAINER, docker_gpu_config
from spawner.gpu_env import gpu_env


def allocation(units=10, devices=1, mps=None):
    return {
        "id": "a1", "host": "node-a", "gpus": "0.5" if units < 20 else str(devices),
        "units": units if units < 20 else 20 * devices, "units_per_gpu": 20, "mps": mps,
        "devices": [{"uuid": f"GPU-{i}", "index": i, "memory_mb": 81920, "units": min(units, 20),
                     "fraction": "0.5" if units < 20 else "1"} for i in range(devices)],
    }


def test_env_of_a_fraction_whole_gpus_and_no_gpu():
    env = gpu_env(allocation(10, mps={"state": "ready", "pipe_dir": "/var/lib/gpuhub-agent/mps/pipe"}))
    assert env == {
        "CUDA_VISIBLE_DEVICES": "GPU-0", "GPUHUB_ALLOCATION": "a1", "GPUHUB_GPUS": "0.5",
        "GPUHUB_HOST": "node-a", "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "50",
        "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT": "0=40960M",
        "CUDA_MPS_PIPE_DIRECTORY": "/var/lib/gpuhub-agent/mps/pipe",
    }
    assert gpu_env(allocation(1))["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "5"
    whole = gpu_env(allocation(20, devices=2))
    assert whole["CUDA_VISIBLE_DEVICES"] == "GPU-0,GPU-1" and not any(k.startswith("CUDA_MPS") for k in whole)
    assert gpu_env(None) == {"CUDA_VISIBLE_DEVICES": "", "GPUHUB_GPUS": "0"}


def test_docker_config_of_a_fraction_on_a_gpu_engine_with_mps():
    endpoint = {"url": "tcp://h:2376", "gpu_runtime": True, "mps_pipe_dir": "/var/lib/gpuhub-agent/mps/pipe"}
    cfg = docker_gpu_config(allocation(10), endpoint)
    (req,) = cfg["host_config"]["device_requests"]
    assert req["DeviceIDs"] == ["GPU-0"] and req["Capabilities"] == [["gpu"]]
    assert cfg["host_config"]["binds"] == {
        "/var/lib/gpuhub-agent/mps/pipe": {"bind": MPS_PIPE_IN_CONTAINER, "mode": "rw"}
    }
    assert cfg["env"] == {"CUDA_MPS_PIPE_DIRECTORY": MPS_PIPE_IN_CONTAINER}
    assert cfg["labels"] == {"gpuhub.allocation": "a1"}  # how the host's agent finds (and fences) it


def test_docker_config_of_whole_gpus_and_of_an_engine_without_the_nvidia_runtime():
    cfg = docker_gpu_config(allocation(20, devices=2), {"url": "u", "gpu_runtime": True, "mps_pipe_dir": "/p"})
    assert cfg["host_config"]["device_requests"][0]["DeviceIDs"] == ["GPU-0", "GPU-1"]
    assert "binds" not in cfg["host_config"] and cfg["env"] == {}  # no MPS for whole GPUs
    plain = docker_gpu_config(allocation(10), {"url": "u"})
    assert plain["host_config"] == {} and plain["labels"] == {"gpuhub.allocation": "a1"}
    assert docker_gpu_config(None, {"url": "u"}) == {"host_config": {}, "env": {}, "labels": {}}
