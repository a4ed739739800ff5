"""POST estimates' answer (api.estimates.estimates_answer) on a live pool: starts
now with room, the queue's estimate when full, one simulation per shape, the
budget, per-request errors, the quota; and vfolder space left (pure)."""

from __future__ import annotations

from gpu_allocator.api.estimates import estimates_answer
from gpu_allocator.app import GPUAllocator
from gpu_allocator.core.model import Request
from gpu_allocator.core.quota import Limits
from tests.support import box, open_pool
from vfolder_manager.core.quota import Limit, Usage, bytes_left

NOW = 1_000_000.0


def allocator(pool, budget: float = 5.0) -> GPUAllocator:
    app = GPUAllocator(estimate_budget=budget)
    app.pool, app.estimate_cache = pool, {}
    return app


async def test_estimates_start_now_with_room_and_at_the_end_of_running_shares_when_full(db_url):
    pool = await open_pool(db_url, [box("n", 2, "A100"), box("m", 1, "L4")])
    app = allocator(pool)
    reqs = [{"gpus": "0.5"}, {"gpus": 2, "gpu_model": "A100", "max_hours": 1}, {"gpus": 4}]
    got = estimates_answer(app, "ann", (), reqs)
    assert [e.get("starts_now") for e in got["estimates"][:2]] == [True, True]
    assert got["estimates"][2]["error"] == "gpus: at most 2 GPUs on one host in this pool"
    assert got["quota"]["held"]["gpus"] == "0" and got["quota"]["user"] == "ann"
    held, _ = await pool.submit(Request("bob", 40, 1.0, 1024, 2.0))  # both A100 for 2 h
    got = estimates_answer(app, "ann", (), [{"gpus": 1, "gpu_model": "A100", "max_hours": h} for h in (1, 8)])
    first, second = got["estimates"]
    assert not first["starts_now"] and first["estimated"] and first["eta_latest"] is not None
    assert (first["eta"], first["eta_latest"]) == (second["eta"], second["eta_latest"])  # one simulation
    # over a hard quota: said, not simulated
    await pool.set_quota("user", "ann", Limits(gpu_hours=4.0))
    over = estimates_answer(app, "ann", (), [{"gpus": 1, "gpu_model": "A100", "max_hours": 8}])["estimates"][0]
    assert over["quota"]["verdict"] == "hard" and over["eta"] is None
    assert estimates_answer(app, "ann", (), [{"gpus": 1}])["quota"]["limits"]["gpu_hours"] == 4.0
    await pool.finish(held.id)
    pool.close()


async def test_past_the_budget_the_rest_are_not_estimated(db_url):
    pool = await open_pool(db_url, [box("n", 2, "A100")])
    await pool.submit(Request("bob", 40, 1.0, 1024, 2.0))
    app = allocator(pool, budget=0.0)
    got = estimates_answer(app, "ann", (), [{"gpus": 1}, {"gpus": 2}, {"gpus": 1, "max_hours": 2}])
    assert [e["estimated"] for e in got["estimates"]] == [True, False, True]  # the first shape ran
    # the next form (anyone's) reuses it and computes one more
    got = estimates_answer(app, "cat", (), [{"gpus": 1}, {"gpus": 2}, {"gpus": "0.5"}])
    assert [e["estimated"] for e in got["estimates"]] == [True, True, False]
    app.estimate_cache_seconds = 0
    got = estimates_answer(app, "cat", (), [{"gpus": 2}, {"gpus": 1}])
    assert [e["estimated"] for e in got["estimates"]] == [True, False]
    pool.close()


def test_vfolder_bytes_left_is_the_tighter_limit():
    assert bytes_left([Usage(3, 0), Usage(9, 0)], [Limit(10, None), Limit(20, None, "user ann")]) == (7, 10)
    assert bytes_left([Usage(3, 0), Usage(15, 0)], [Limit(10, None), Limit(20, None, "user ann")]) == (5, 20)
    assert bytes_left([Usage(30, 0)], [Limit(10, None)]) == (0, 10)
    assert bytes_left([Usage(3, 0), Usage(3, 0)], [Limit(None, 5), Limit(None, None)]) == (None, None)
