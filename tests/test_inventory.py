"""Where hosts come from: the declared YAML inventory, and NVML."""

from __future__ import annotations

import os
import re
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from gpu_allocator.inventory import (
    InventoryError,
    discover_nvml,
    load_inventory,
    mock_uuid,
    nvml_available,
)
from tests.support import FakeNVML, pairs

DEMO = Path(__file__).resolve().parents[1] / "hub_config" / "gpu_inventory.yaml"
NVML_UUID = re.compile(r"^GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "inventory.yaml"
    p.write_text(textwrap.dedent(text))
    return p


# --------------------------------------------------------------------------- demo inventory


def test_demo_inventory_loads_to_the_expected_pool():
    a, b = load_inventory(DEMO)

    assert (a.name, a.cpus, a.memory_mb, a.state) == ("node-a", 32.0, 256 * 1024, "up")
    assert [d.index for d in a.devices] == [0, 1, 2, 3]
    assert {d.model for d in a.devices} == {"A100-SXM4-80GB"}
    assert {d.memory_mb for d in a.devices} == {80 * 1024}
    assert {d.island for d in a.devices} == {"nvswitch0"}  # one NVLink island
    assert all(d.host == "node-a" for d in a.devices)

    assert (b.name, b.cpus, b.memory_mb) == ("node-b", 16.0, 128 * 1024)
    assert [(d.index, d.model, d.memory_mb, d.island) for d in b.devices] == [
        (0, "L4", 24 * 1024, ""), (1, "L4", 24 * 1024, "")]  # PCIe only

    uuids = [d.uuid for d in a.devices + b.devices]
    assert len(set(uuids)) == 6
    assert uuids == [mock_uuid("node-a", i) for i in range(4)] + [mock_uuid("node-b", i) for i in range(2)]


def test_loading_twice_gives_the_same_hosts():
    assert load_inventory(DEMO) == load_inventory(str(DEMO))


# --------------------------------------------------------------------------- mock UUIDs


def test_mock_uuids_are_nvml_shaped():
    for host, index in [("node-a", 0), ("node-b", 1), ("x" * 200, 99)]:
        u = mock_uuid(host, index)
        assert NVML_UUID.match(u), u
        assert str(uuid.UUID(u[4:])) == u[4:]


def test_mock_uuids_are_stable_and_distinct():
    # pinned: a changed namespace or key would orphan every share in existing databases
    assert mock_uuid("node-a", 0) == "GPU-8d601039-f8ca-5723-979c-3cf252d23819"
    assert mock_uuid("node-a", 0) == mock_uuid("node-a", 0)
    seen = {mock_uuid(h, i) for h in ("node-a", "node-b", "node-a1") for i in range(16)}
    assert len(seen) == 48
    assert mock_uuid("node-a", 1) != mock_uuid("node-a1", 0)  # no "host/index" ambiguity here


# --------------------------------------------------------------------------- format details


def test_groups_explicit_uuids_and_defaults(tmp_path):
    hosts = load_inventory(
        write(
            tmp_path,
            """
            hosts:
              - name: mixed
                cpus: 8
                memory: 64G
                gpus:
                  - model: H100
                    memory: 80G
                    count: 3
                    nvlink_island: nv0
                    uuids: [GPU-real-0, GPU-real-1]
                  - model: L4
                    count: 1
              - name: defaults
            """,
        )
    )
    mixed, defaults = hosts
    assert [(d.index, d.uuid, d.model, d.island) for d in mixed.devices] == [
        (0, "GPU-real-0", "H100", "nv0"),
        (1, "GPU-real-1", "H100", "nv0"),
        (2, mock_uuid("mixed", 2), "H100", "nv0"),
        (3, mock_uuid("mixed", 3), "L4", ""),  # indexes continue across groups
    ]
    assert mixed.devices[3].memory_mb == 16 * 1024  # default GPU memory
    assert defaults.devices == ()
    assert defaults.cpus == float(os.cpu_count() or 1)
    assert defaults.memory_mb == 16 * 1024


def test_empty_inventory(tmp_path):
    assert load_inventory(write(tmp_path, "")) == []
    assert load_inventory(write(tmp_path, "hosts: []\n")) == []


# --------------------------------------------------------------------------- malformed


@pytest.mark.parametrize(
    "body, where, words",
    [
        (
            """
            hosts:
              - {name: node-a, cpus: 4, memory: 8G}
              - {name: node-a, cpus: 4, memory: 8G}
            """,
            "hosts[1]",
            "unique name",
        ),
        ("hosts:\n  - {cpus: 4}\n", "hosts[0]", "unique name"),
        (
            """
            hosts:
              - name: n
                gpus:
                  - {model: L4, count: 1}
                  - {model: L4, count: 0}
            """,
            "hosts[0].gpus[1]",
            "count must be at least 1",
        ),
        (
            """
            hosts:
              - name: ok
              - name: n
                gpus:
                  - {model: L4, count: -2}
            """,
            "hosts[1].gpus[0]",
            "count must be at least 1",
        ),
        (
            """
            hosts:
              - name: n
                gpus:
                  - {model: L4, count: two}
            """,
            "hosts[0].gpus[0]",
            "count must be a whole number",
        ),
        (
            """
            hosts:
              - name: n
                gpus:
                  - {model: L4, memory: lots}
            """,
            "hosts[0].gpus[0]",
            "'512M' or '8G'",
        ),
        (
            """
            hosts:
              - name: n
                gpus:
                  - {model: L4, memory: 24}
            """,
            "hosts[0].gpus[0]",
            "at least 64M",
        ),
        ("hosts:\n  - {name: n, memory: 8X}\n", "hosts[0]", "'512M' or '8G'"),
        ("hosts:\n  - {name: n, cpus: many}\n", "hosts[0]", "cpus must be a positive number"),
        ("hosts:\n  - {name: n, cpus: 0}\n", "hosts[0]", "cpus must be a positive number"),
        (
            """
            hosts:
              - name: a
                gpus: [{model: L4, uuids: [GPU-same]}]
              - name: b
                gpus: [{model: L4, uuids: [GPU-same]}]
            """,
            "hosts[1].gpus[0]",
            "'GPU-same' is listed twice",
        ),
        ("hosts:\n  - node-a\n", "hosts[0]", "must be a mapping"),
        ("hosts:\n  - {name: n, gpus: [L4]}\n", "hosts[0].gpus[0]", "must be a mapping"),
    ],
    ids=[
        "duplicate-host", "no-name", "count-0", "count-negative", "count-not-a-number",
        "gpu-memory-garbage", "gpu-memory-too-small", "host-memory-garbage", "cpus-garbage",
        "cpus-zero", "duplicate-uuid", "host-not-a-mapping", "group-not-a-mapping",
    ],
)
def test_malformed_inventory_names_the_entry(tmp_path, body, where, words):
    path = write(tmp_path, body)
    with pytest.raises(InventoryError) as e:
        load_inventory(path)
    msg = str(e.value)
    assert f"{path}: {where}:" in msg
    assert words in msg


# --------------------------------------------------------------------------- NVML


def test_discover_nvml_with_a_fake_driver(monkeypatch):
    # islands: {0,1}, {2,3}, {5,6,7} (a chain 5-6, 6-7); 4 is PCIe only; 3-4 errors out
    fake = FakeNVML(8, pairs((0, 1), (2, 3), (5, 6), (6, 7)), broken=pairs((3, 4)))
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    host = discover_nvml("gpu-box")
    assert fake.initialised == 0  # shut down again
    assert host.name == "gpu-box" and host.state == "up"
    assert [d.index for d in host.devices] == list(range(8))
    assert all(d.host == "gpu-box" for d in host.devices)
    # bytes from old pynvml versions are decoded
    assert all(isinstance(d.uuid, str) and isinstance(d.model, str) for d in host.devices)
    assert host.devices[1].uuid == "GPU-00000000-0000-0000-0000-000000000001"
    assert {d.model for d in host.devices} == {"NVIDIA H100 80GB HBM3"}
    assert {d.memory_mb for d in host.devices} == {81559}
    isl = [d.island for d in host.devices]
    assert isl[0] == isl[1] != ""
    assert isl[2] == isl[3] != ""
    assert isl[5] == isl[6] == isl[7] != ""
    assert len({isl[0], isl[2], isl[5]}) == 3
    assert isl[4] == ""
    assert host.cpus == float(os.cpu_count() or 1) and host.memory_mb > 0


def test_discover_nvml_default_hostname(monkeypatch):
    import socket

    monkeypatch.setitem(sys.modules, "pynvml", FakeNVML(1, set()))
    host = discover_nvml()
    assert host.name == socket.gethostname()
    assert [d.island for d in host.devices] == [""]


@pytest.mark.parametrize(
    "fake, expected",
    [(FakeNVML(2, set()), True), (FakeNVML(0, set()), False), (FakeNVML(2, set(), fail_init=True), False)],
    ids=["gpus", "no-gpus", "no-driver"],
)
def test_nvml_available_with_a_fake_driver(monkeypatch, fake, expected):
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    assert nvml_available() is expected
    assert fake.initialised == 0


def test_nvml_available_without_pynvml(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    assert nvml_available() is False


@pytest.mark.skipif(not nvml_available(), reason="no NVIDIA GPU/driver on this machine")
def test_discover_nvml_on_real_gpus():
    import pynvml

    host = discover_nvml("probe")
    pynvml.nvmlInit()
    try:
        count = pynvml.nvmlDeviceGetCount()
    finally:
        pynvml.nvmlShutdown()
    assert host.name == "probe"
    assert len(host.devices) == count >= 1
    assert [d.index for d in host.devices] == list(range(count))
    assert len({d.uuid for d in host.devices}) == count
    for d in host.devices:
        assert d.uuid.startswith(("GPU-", "MIG-")), d.uuid
        assert d.model and d.memory_mb > 1024
        assert isinstance(d.island, str)
    assert host.cpus >= 1 and host.memory_mb > 0
