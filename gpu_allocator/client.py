"""Async client of the allocator's REST API: the spawner in the hub and the
agents on the GPU hosts speak to the allocator through it (built on the
services' shared client, gpuhub.client)."""

from __future__ import annotations

from gpuhub.client import ServiceClient, ServiceError

#: what the allocator answers when it says no (or cannot be reached)
AllocatorError = ServiceError


#: the allocator of a hub on this machine (the demo's port): the default of the
#: spawner's and the agents' allocator_url
DEFAULT_API_URL = "http://127.0.0.1:8051/services/gpu-allocator/api/v1/"


class AllocatorClient(ServiceClient):
    what = "the GPU allocator"

    async def pool(self) -> dict:
        return await self.call("GET", "pool")

    async def allocate(self, **request) -> dict:
        return await self.call("POST", "allocations", request)

    async def check(self, **request) -> dict:
        """Validate a request and say whether it fits now; nothing is held."""
        return await self.call("POST", "allocations", {**request, "dry_run": True})

    async def estimates(self, **body) -> dict:
        """When each of ``body["requests"]`` would start (POST estimates); nothing is held."""
        return await self.call("POST", "estimates", body)

    async def get(self, allocation_id: str) -> dict:
        return await self.call("GET", f"allocations/{allocation_id}")

    async def release(self, allocation_id: str) -> dict | None:
        """Idempotent: an allocation that is already gone is not an error."""
        try:
            return await self.call("DELETE", f"allocations/{allocation_id}")
        except AllocatorError as e:
            if e.status == 404:
                return None
            raise

    async def register_host(self, host: str, body: dict) -> dict:
        return await self.call("POST", f"hosts/{host}/register", body)

    async def heartbeat(self, host: str, body: dict) -> dict:
        return await self.call("POST", f"hosts/{host}/heartbeat", body)


def fractional(allocation: dict) -> bool:
    """Whether an allocation (as the API sends it) is a fraction of one device."""
    devices = allocation.get("devices") or ()
    return len(devices) == 1 and devices[0]["units"] < allocation["units_per_gpu"]
