"""The waiting page's view of a queued request (spawner.waiting): pure builders."""

from __future__ import annotations

from datetime import datetime, timezone

from spawner.waiting import alternatives, ordinal, queue_message, share_label, sooner, waiting_view

NOW = 1_800_000_000.0


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat()


QUEUED = {"id": "q1", "state": "queued", "gpus": "1", "units": 20, "units_per_gpu": 20, "cpu": "4",
          "mem": "8192M", "max_hours": 8.0, "gpu_model": ["A100"], "position": 3,
          "eta": iso(NOW + 3 * 3600), "eta_latest": iso(NOW + 5 * 3600), "reason": "waiting for 1 × A100 to be free"}


def test_ordinal():
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 101, 111)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "101st", "111th"]


def test_share_label_says_plural_and_model():
    assert share_label("2") == "2 GPUs"
    assert share_label("1") == "1 GPU"
    assert share_label("0.5") == "0.5 GPU"
    assert share_label("1", ["L4"]) == "1 × L4"


def test_alternatives_are_smaller_shares_of_the_same_model_and_the_same_share_of_other_models():
    alts = alternatives(QUEUED, ["0", "0.25", "0.5", "1", "2"], ["A100", "L4"])
    assert [(a["gpus"], a["gpu_model"]) for a in alts] == [("0.25", "A100"), ("0.5", "A100"), ("1", "L4")]
    assert all(a["cpu"] == "4" and a["mem"] == "8192M" and a["max_hours"] == 8.0 for a in alts)


def test_sooner_keeps_what_starts_clearly_earlier_soonest_first():
    cands = alternatives(QUEUED, ["0.25", "0.5", "1"], ["A100", "L4"])
    answer = {"estimates": [
        {"starts_now": False, "eta": iso(NOW + 3600)},  # 0.25 × A100: 2 h sooner
        {"starts_now": False, "eta": iso(NOW + 3 * 3600 - 60)},  # 0.5 × A100: only a minute sooner
        {"starts_now": True, "eta": iso(NOW)},  # 1 × L4: now
    ]}
    got = sooner(QUEUED, cands, answer, NOW)
    assert [(s["share"], s["starts_now"]) for s in got] == [("1 × L4", True), ("0.25 × A100", False)]


def test_sooner_leaves_out_what_the_quota_refuses_or_cannot_start():
    cands = alternatives(QUEUED, ["0.5"], ["L4"])
    answer = {"estimates": [{"starts_now": True, "quota": {"verdict": "hard", "reason": "over"}},
                            {"error": "this pool has no L4 that large"}]}
    assert sooner(QUEUED, cands, answer, NOW) == []


def test_waiting_view_has_what_the_page_shows():
    v = waiting_view(QUEUED, [{"share": "1 × L4"}])
    assert v["share"] == "1 × A100" and v["position_text"] == "3rd"
    assert v["eta"] == QUEUED["eta"] and v["eta_latest"] == QUEUED["eta_latest"]
    assert v["reason"] == "waiting for 1 × A100 to be free" and v["sooner"] == [{"share": "1 × L4"}]


def test_queue_message_names_position_share_and_times():
    m = queue_message(QUEUED)
    assert m.startswith("queued: 3rd for 1 × A100, expected start ") and "(at the latest " in m
