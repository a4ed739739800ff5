"""gpuhub's JupyterHub spawners: GPU shares for single-user servers.

``GPUSpawner`` holds the GPU life cycle and its configuration; each runtime is a
spawner class that combines it with a way to run servers.
"""

from .docker import DockerGPUSpawner
from .gpuspawner import GPUSpawner
from .local import LocalGPUSpawner
from .slurm import SlurmGPUSpawner

__all__ = ["DockerGPUSpawner", "GPUSpawner", "LocalGPUSpawner", "SlurmGPUSpawner"]
