"""User input → exact Request values, and the words used to refuse bad input.

Every refusal must be a RequestError whose message says what *is* allowed, since
the hub shows it to the user as it is.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpu_allocator.core.model import Device, Host, HostState, Request, format_gpus
from gpu_allocator.core.state import PoolState
from gpu_allocator.core.validation import (
    SPAWN_KEYS,
    RequestError,
    check_capacity,
    check_keys,
    parse_cpu,
    parse_gpus,
    parse_hours,
    parse_mem,
)

PER_GPU = 20  # the default quantum: 1/20 GPU = 0.05


# --------------------------------------------------------------------------- gpus


@pytest.mark.parametrize(
    "value, units",
    [
        (0.05, 1),
        (0.25, 5),
        (0.5, 10),
        ("0.5", 10),
        (" 0.5 ", 10),
        ("0.05", 1),
        (0.95, 19),
        (1, 20),
        (1.0, 20),
        ("1", 20),
        (2, 40),
        ("2", 40),
        (4, 80),
    ],
)
def test_parse_gpus_accepts(value, units):
    assert parse_gpus(value, PER_GPU) == units


@pytest.mark.parametrize(
    "value",
    [0, 0.0, "0", -1, -0.5, 1.7, 1.5, "1.5", 2.5, 0.33, 0.01, 0.051, "0.33", 0.3 + 1e-9],
)
def test_parse_gpus_refuses_impossible_amounts(value):
    with pytest.raises(RequestError) as e:
        parse_gpus(value, PER_GPU)
    msg = str(e.value)
    # the message says what is allowed: the quantum and whole GPUs
    assert "0.05" in msg
    assert "whole number" in msg


@pytest.mark.parametrize(
    "value",
    [float("nan"), "nan", "NaN", float("inf"), float("-inf"), "inf", "abc", "", True, False, None, [], {}, [1]],
)
def test_parse_gpus_refuses_non_numbers(value):
    with pytest.raises(RequestError) as e:
        parse_gpus(value, PER_GPU)
    msg = str(e.value)
    assert msg.startswith("gpus ")
    assert "number" in msg
    # even for garbage the user learns what a valid amount looks like
    assert "0.05" in msg and "whole number" in msg


def test_parse_gpus_greater_than_zero_message():
    with pytest.raises(RequestError, match="greater than 0"):
        parse_gpus(0, PER_GPU)
    with pytest.raises(RequestError, match="greater than 0"):
        parse_gpus(-1, PER_GPU)


def test_parse_gpus_zero_only_with_allow_zero():
    assert parse_gpus(0, PER_GPU, allow_zero=True) == 0
    assert parse_gpus("0", PER_GPU, allow_zero=True) == 0
    # allow_zero does not let negative amounts through
    with pytest.raises(RequestError):
        parse_gpus(-1, PER_GPU, allow_zero=True)


def test_parse_gpus_message_follows_the_quantum():
    # with 1/4 GPU units, 0.05 is impossible and the message names 0.25
    with pytest.raises(RequestError) as e:
        parse_gpus(0.05, 4)
    assert "0.25" in str(e.value)
    assert parse_gpus(0.75, 4) == 3
    assert parse_gpus(3, 4) == 12


@settings(deadline=None, max_examples=60)
@given(st.integers(min_value=1, max_value=PER_GPU - 1))
def test_parse_gpus_every_quantum_multiple_below_one(k):
    text = format_gpus(k, PER_GPU)  # "0.05", "0.1", … "0.95"
    assert parse_gpus(text, PER_GPU) == k
    assert parse_gpus(float(text), PER_GPU) == k


@settings(deadline=None, max_examples=60)
@given(st.integers(min_value=1, max_value=64))
def test_parse_gpus_whole_numbers(n):
    assert parse_gpus(n, PER_GPU) == n * PER_GPU
    assert parse_gpus(str(n), PER_GPU) == n * PER_GPU


@settings(deadline=None, max_examples=100)
@given(st.decimals(min_value="0.001", max_value=16, places=3))
def test_parse_gpus_accepts_exactly_the_allowed_set(d):
    g = Fraction(d)
    allowed = (g < 1 and (g * PER_GPU).denominator == 1) or g.denominator == 1
    if allowed:
        assert parse_gpus(str(d), PER_GPU) == g * PER_GPU
    else:
        with pytest.raises(RequestError):
            parse_gpus(str(d), PER_GPU)


@pytest.mark.parametrize(
    "value",
    ["1/2", "1e3", "0x10", "½", "0.5 GPU", "1" * 5000, "1e10000000", "9" * 40, "-0.5", "+", "."],
)
def test_parse_gpus_takes_plain_decimals_only(value):
    with pytest.raises(RequestError) as e:
        parse_gpus(value, PER_GPU)
    assert len(str(e.value)) < 400  # the message never echoes a huge input whole


# --------------------------------------------------------------------------- hostile bodies


HOSTILE_BODIES = [
    b'{"gpus": 1e10000000}',
    b'{"gpus": "1e10000000"}',
    b'{"gpus": ' + b"1" * 5000 + b"}",
    b'{"mem": "' + b"1" * 5000 + b'G"}',
    b'{"gpus": NaN}',
    b'{"gpus": -Infinity}',
    b'{"cpu": 1e-10000000}',
    b"[" * 100000 + b"]" * 100000,
    b"\xff\xfe",
    b"[1, 2]",
    b'"gpus"',
]


@pytest.mark.parametrize("raw", HOSTILE_BODIES, ids=lambda b: repr(b[:24]))
def test_hostile_bodies_are_refused_before_any_arithmetic(raw, monkeypatch):
    """A body is refused by its text's bounds: no Fraction, int or Decimal
    arithmetic that grows with an exponent or a digit string ever runs."""
    import fractions

    from gpuhub.numbers import BodyError, NumberError, exact, parse_object

    calls = []
    real = fractions.Fraction.__new__

    def watched(cls, *args, **kw):
        calls.append(args)
        return real(cls, *args, **kw)

    monkeypatch.setattr(fractions.Fraction, "__new__", watched)
    try:
        data = parse_object(raw)
    except BodyError:
        return
    for key, value in data.items():  # what got through the JSON layer: bounded numbers
        with pytest.raises((NumberError, RequestError)):
            if key == "mem":
                parse_mem(value)
            else:
                exact(value, key)
    assert not any(len(str(a)) > 64 for args in calls for a in args)


# --------------------------------------------------------------------------- cpu


@pytest.mark.parametrize("value, cores", [(1, 1.0), (0.1, 0.1), (0.5, 0.5), ("2.5", 2.5), (16, 16.0)])
def test_parse_cpu_accepts(value, cores):
    assert parse_cpu(value) == cores


@pytest.mark.parametrize("value", [0, -1, 0.05, 1.25, "0", "-0.1"])
def test_parse_cpu_refuses(value):
    with pytest.raises(RequestError) as e:
        parse_cpu(value)
    assert "positive" in str(e.value) and "0.1" in str(e.value)


@pytest.mark.parametrize("value", [float("nan"), "nan", float("inf"), "abc", True, None])
def test_parse_cpu_refuses_non_numbers(value):
    with pytest.raises(RequestError) as e:
        parse_cpu(value)
    msg = str(e.value)
    assert msg.startswith("cpu ") and "number" in msg
    assert "steps of 0.1" in msg


# --------------------------------------------------------------------------- mem


@pytest.mark.parametrize(
    "value, mb",
    [
        ("8G", 8192),
        ("8g", 8192),
        ("8Gi", 8192),
        ("8GB", 8192),
        ("512M", 512),
        ("512Mi", 512),
        ("1.5G", 1536),
        ("1T", 1024 * 1024),
        ("65536K", 64),
        (64 * 1024**2, 64),  # a plain number is bytes
        (str(2 * 1024**3), 2048),
    ],
)
def test_parse_mem_accepts(value, mb):
    assert parse_mem(value) == mb


@pytest.mark.parametrize("value", ["abc", "8X", "G", "-8G", "8 G B", "", True, None, [], float("nan")])
def test_parse_mem_refuses_garbage(value):
    with pytest.raises(RequestError) as e:
        parse_mem(value)
    assert "'512M' or '8G'" in str(e.value)


@pytest.mark.parametrize("value", ["10", 10, "63M", "0G", 1024**2])
def test_parse_mem_refuses_too_small(value):
    # "10" and 10 are bytes, far below the minimum
    with pytest.raises(RequestError) as e:
        parse_mem(value)
    assert "at least 64M" in str(e.value)


# --------------------------------------------------------------------------- max_hours


@pytest.mark.parametrize("value, hours", [(1, 1.0), (0.5, 0.5), ("8", 8.0), (24, 24.0)])
def test_parse_hours_accepts_up_to_the_limit(value, hours):
    assert parse_hours(value, 24) == hours


@pytest.mark.parametrize("value", [0, -1, 24.5, 25, "100"])
def test_parse_hours_refuses_out_of_range(value):
    with pytest.raises(RequestError) as e:
        parse_hours(value, 24)
    msg = str(e.value)
    assert "more than 0" in msg and "at most 24" in msg


@pytest.mark.parametrize("value", [float("nan"), "nan", float("inf"), "soon", None, True])
def test_parse_hours_refuses_non_numbers(value):
    with pytest.raises(RequestError) as e:
        parse_hours(value, 12)
    assert "at most 12" in str(e.value)


def test_parse_hours_fractional_limit():
    assert parse_hours("1.5", 1.5) == 1.5
    with pytest.raises(RequestError, match="at most 1.5"):
        parse_hours(1.6, 1.5)


# --------------------------------------------------------------------------- keys


def test_check_keys_accepts_the_spawn_keys():
    from spawner.options import check_spawn_keys

    # "profile" and "summary" are the spawner's record in user_options (JupyterHub
    # reuses the last options for a spawn without any)
    check_spawn_keys({"gpus": 1, "cpu": 1, "mem": "1G", "max_hours": 1, "profile": "x", "summary": "y"})
    check_keys({"gpus": 1, "cpu": 1, "mem": "1G", "max_hours": 1, "gpu_model": "L4"}, SPAWN_KEYS)
    check_keys({}, SPAWN_KEYS)


def test_check_keys_names_unknown_and_allowed():
    with pytest.raises(RequestError) as e:
        check_keys({"gpu": 1, "gpus": 1, "image": "x"}, SPAWN_KEYS)
    msg = str(e.value)
    assert "'gpu'" in msg and "'image'" in msg
    assert "'gpus'" not in msg.split(";")[0]  # a known key is not reported as unknown
    allowed = msg.split("allowed:")[1]
    for key in ("gpus", "cpu", "mem", "max_hours"):
        assert key in allowed
    # "profile" is written by the spawner itself and not advertised to users
    assert "profile" not in allowed


# --------------------------------------------------------------------------- capacity


def _host(name, n_gpus, cpus, mem_mb, state=HostState.UP, model="m"):
    devs = tuple(Device(name, i, f"{name}-{i}", model, 1000) for i in range(n_gpus))
    return Host(name, devs, cpus, mem_mb, state)


def _pool(*hosts):
    return PoolState.build(hosts, (), PER_GPU)


def _demo_pool():
    return _pool(_host("node-a", 4, 32, 262144, model="A100"), _host("node-b", 2, 16, 131072, model="L4"))


def _req(units, cpu, mem, models=()):
    return Request("u", units, cpu, mem, models=frozenset(models))


def test_check_capacity_accepts_what_some_host_could_hold():
    pool = _demo_pool()
    check_capacity(pool, _req(4 * PER_GPU, 32, 262144))
    check_capacity(pool, _req(2 * PER_GPU, 32, 1024))  # node-a has 2+ GPUs and 32 cores
    check_capacity(pool, _req(0, 1, 1024))


def test_check_capacity_refuses_more_gpus_than_any_host():
    with pytest.raises(RequestError, match="at most 4 GPUs"):
        check_capacity(_demo_pool(), _req(5 * PER_GPU, 1, 1024))


def test_check_capacity_counts_only_the_models_asked_for():
    pool = _demo_pool()
    check_capacity(pool, _req(2 * PER_GPU, 1, 1024, {"L4"}))
    with pytest.raises(RequestError, match="at most 2 GPUs"):
        check_capacity(pool, _req(3 * PER_GPU, 1, 1024, {"L4"}))
    with pytest.raises(RequestError, match="no host has H100; this pool has A100, L4"):
        check_capacity(pool, _req(PER_GPU, 1, 1024, {"H100"}))


def test_check_capacity_cpu_and_mem_on_a_host_with_that_many_gpus():
    pool = _pool(_host("big", 1, 64, 512000), _host("wide", 4, 8, 16384))
    check_capacity(pool, _req(PER_GPU, 64, 512000))  # "big" holds it
    with pytest.raises(RequestError, match="at most 8 cores"):
        check_capacity(pool, _req(2 * PER_GPU, 9, 1024))  # only "wide" has 2 GPUs
    with pytest.raises(RequestError, match="at most 16384M"):
        check_capacity(pool, _req(2 * PER_GPU, 1, 16385))


def test_check_capacity_ignores_lost_hosts():
    pool = _pool(_host("gone", 8, 64, 10**6, state=HostState.LOST), _host("here", 1, 4, 4096))
    with pytest.raises(RequestError, match="at most 1 GPUs"):
        check_capacity(pool, _req(2 * PER_GPU, 1, 1024))


def test_check_capacity_pool_without_gpus():
    pool = _pool(_host("cpu-only", 0, 8, 8192))
    with pytest.raises(RequestError, match="no GPUs"):
        check_capacity(pool, _req(1, 1, 1024))
    check_capacity(pool, _req(0, 1, 1024))


def test_nan_is_never_a_number_anywhere():
    # a sanity net over all parsers: no NaN slips through as a value
    for parse in (lambda v: parse_gpus(v, PER_GPU), parse_cpu, parse_mem, lambda v: parse_hours(v, 8)):
        with pytest.raises(RequestError):
            parse(math.nan)
