"""The hub admin panel and the Prometheus metrics (issue #13), through a real
JupyterHub: an admin opens Services → gpu-allocator in Chromium, sees a running
0.5 share on its device, drains its host (a new spawn avoids it), revokes the
share (the session stops and its user is told why), exports CSV and reads the
audit log; a non-admin gets a 403 from every admin page and API; a read:metrics
token scrapes both services. Screenshots go to tests/artifacts/admin/."""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect, sync_playwright
from prometheus_client.parser import text_string_to_metric_families

from tests.support import API, CHROMIUM, Hub, browser_login, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.hub(config={"GPUAllocator": {"sample_interval": 1.0}})]

ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "admin"
PANEL = "/services/gpu-allocator/admin/"


@pytest.fixture(scope="module", autouse=True)
def artifacts():
    ARTIFACTS.mkdir(parents=True, exist_ok=True)



VIEWPORT = {"width": 1360, "height": 900}  # the screenshots' size


def confirm(page, button, reason: str = "") -> None:
    """Press an action's button, check the dialog asks, confirm."""
    button.click()
    dialog = page.locator("#gpuhub-confirm")
    expect(dialog).to_be_visible()
    if reason:
        page.fill("#gpuhub-confirm-reason", reason)
    page.click("#gpuhub-confirm-ok")
    expect(page.locator("#gpuhub-flash")).to_be_visible()


def test_admin_sees_the_map_drains_revokes_exports_and_audits(hub):
    assert os.path.exists(CHROMIUM)
    alice, bob = hub.login("gpuhub-alice"), hub.login("gpuhub-bob")
    r = alice.spawn({"gpus": 0.5})
    assert r.status_code in (201, 202), r.text
    alice.wait_ready()
    (share,) = alice.allocations()
    host, uuid = share["host"], share["devices"][0]["uuid"]
    with sync_playwright() as p:
        browser, page = browser_login(p, hub, "admin", viewport=VIEWPORT)
        # the panel is in the hub's Services menu
        page.goto(hub.url + "/hub/home")
        page.click("text=Services")
        page.click(".dropdown-menu >> text=gpu-allocator")
        page.wait_for_url(f"**{PANEL}**")
        seg = page.locator(f'.gpuhub-device[data-uuid="{uuid}"] .gpuhub-share[data-allocation="{share["id"]}"]')
        expect(seg).to_have_text("0.5 gpuhub-alice")
        assert page.locator(f'#host-{host} .gpuhub-device[data-uuid="{uuid}"]').count() == 1
        assert "NVLink" in page.locator("#host-node-a").inner_text()
        page.screenshot(path=str(ARTIFACTS / "pool-map.png"), full_page=True)

        # drain alice's host: bob's new spawn goes elsewhere
        confirm(page, page.locator(f"#host-{host} .gpuhub-drain"), "disk replacement")
        expect(page.locator(f"#host-{host} .gpuhub-state")).to_have_text("drained")
        # users see the drain: the form marks the host under maintenance
        form = bob.session.get(hub.url + "/hub/spawn/gpuhub-bob").text
        assert f'<li>{host}: ' in form and "under maintenance" in form, form[-3000:]
        r = bob.spawn({"gpus": 0.5})
        assert r.status_code in (201, 202), r.text
        bob.wait_ready()
        (bobs,) = bob.allocations()
        assert bobs["host"] != host
        bob.stop()

        # revoke alice's share: the hub stops her session and tells her why
        page.reload()
        confirm(page, page.locator(f'tr[data-allocation="{share["id"]}"] .gpuhub-revoke'), "urgent maintenance")
        assert page.locator(f'.gpuhub-share[data-allocation="{share["id"]}"]').count() == 0
        alice.wait_stopped(timeout=60)
        r = alice.call("GET", f"{API}/allocations/{share['id']}")
        assert r.json()["state"] == "revoked" and r.json()["reason"] == "urgent maintenance"
        form = alice.session.get(hub.url + "/hub/spawn/gpuhub-alice")
        assert 'id="gpuhub-stop-reason"' in form.text
        assert "revoked its GPU share" in form.text and "urgent maintenance" in form.text
        # her JupyterLab URL (an open tab reloading) lands on the hub's page that says
        # why, who and when, not a bare "Server not running"
        lab = alice.session.get(hub.url + "/user/gpuhub-alice/lab")
        assert lab.status_code == 424 and "Your server was stopped" in lab.text, lab.text[-2000:]
        assert "an administrator (admin) revoked its GPU share" in lab.text and "urgent maintenance" in lab.text

        confirm(page, page.locator(f"#host-{host} .gpuhub-undrain"))
        expect(page.locator(f"#host-{host} .gpuhub-state")).to_have_text("up")

        # usage: GPU-hours table, charts, CSV export
        page.click("#tab-usage")
        expect(page.locator('#gpuhub-usage tr[data-name="gpuhub-alice"]')).to_be_visible()
        assert page.locator(".gpuhub-charts[data-window='24h'] svg.gpuhub-chart").count() >= 1
        with page.expect_download() as dl:
            page.click("#gpuhub-csv")
        rows = list(csv.DictReader(io.StringIO(Path(dl.value.path()).read_text())))
        dl.value.save_as(ARTIFACTS / "gpu-hours.csv")
        hours = {r["user"]: float(r["gpu_hours"]) for r in rows}
        assert hours["gpuhub-alice"] > 0 and hours["gpuhub-bob"] > 0
        page.screenshot(path=str(ARTIFACTS / "usage.png"), full_page=True)

        # the audit log lists each action
        page.click("#tab-audit")
        page.wait_for_selector("#gpuhub-audit tbody tr[data-action]")
        actions = page.eval_on_selector_all(
            "#gpuhub-audit tbody tr", "rows => rows.map(r => [r.dataset.action, r.dataset.target])")
        assert actions[:3] == [["undrain", f"host:{host}"], ["revoke", f"allocation:{share['id']}"],
                               ["drain", f"host:{host}"]]
        assert "admin" in page.locator("#gpuhub-audit").inner_text()
        page.screenshot(path=str(ARTIFACTS / "audit.png"), full_page=True)

        page.click("#tab-storage")
        expect(page.locator('#gpuhub-storage tr[data-host="local"] .gpuhub-capacity')).to_be_visible()
        # the tab shows the vfolder service's one figure (df's Use%), which the lab panel shows too
        shown = page.locator('#gpuhub-storage tr[data-host="local"] .progress').get_attribute("aria-valuenow")
        (local,) = [h for h in alice.call("GET", "/services/vfolders/api/v1/storage/hosts").json()["hosts"]
                    if h["name"] == "local"]
        assert int(shown) == round(local["stats"]["used_percent"]), (shown, local["stats"])
        page.screenshot(path=str(ARTIFACTS / "storage.png"), full_page=True)
        page.click("#tab-queue")
        expect(page.locator("#gpuhub-queue-empty")).to_be_visible()
        browser.close()

    # each action was also an API call's worth of record
    admin = hub.login("admin")
    r = admin.call("GET", API + "/audit")
    assert r.status_code == 200, r.text
    entries = r.json()["entries"]
    assert [e["action"] for e in entries[:3]] == ["undrain", "revoke", "drain"]
    assert all(e["actor"] == "admin" for e in entries[:3])
    assert entries[2]["detail"]["reason"] == "disk replacement"
    assert admin.allocations() == []


def test_actions_are_api_calls_too(hub):
    admin, carol = hub.login("admin"), hub.login("gpuhub-carol")
    r = carol.call("POST", API + "/allocations", json={"gpus": 0.25})
    assert r.status_code == 201, r.text
    aid = r.json()["id"]
    r = admin.call("POST", API + "/hosts/node-b/drain", json={"reason": "api"})
    assert r.status_code == 200 and r.json()["drained"] is True
    r = admin.call("POST", API + "/hosts/node-b/undrain")
    assert r.status_code == 200 and r.json()["drained"] is False
    r = admin.call("POST", f"{API}/allocations/{aid}/revoke", json={"reason": "api test"})
    assert r.status_code == 200 and r.json()["state"] == "revoked", r.text
    assert admin.call("POST", f"{API}/allocations/{aid}/revoke").status_code == 404
    entries = admin.call("GET", API + "/audit", params={"limit": 3}).json()["entries"]
    assert [(e["action"], e["target"]) for e in entries] == [
        ("revoke", f"allocation:{aid}"), ("undrain", "host:node-b"), ("drain", "host:node-b")]
    r = admin.call("GET", API + "/usage/summary", params={"by": "user", "format": "csv"})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/csv")
    assert "gpuhub-carol" in r.text
    # per group: the groups come from the hub
    r = admin.call("POST", "/hub/api/groups/gpuhub-ml", json={"users": ["gpuhub-carol"]})
    assert r.status_code == 201, r.text
    rows = admin.call("GET", API + "/usage/summary", params={"by": "group"}).json()["rows"]
    assert [x["name"] for x in rows if x["allocations"]] == ["gpuhub-ml"] and rows[0]["gpu_hours"] > 0
    u = admin.call("GET", API + "/utilisation", params={"window": "24h"}).json()
    assert set(u["models"]) == {"A100-SXM4-80GB", "L4"}
    s = admin.call("GET", API + "/pool/summary").json()
    assert {m["model"]: m["gpus"] for m in s["models"]} == {"A100-SXM4-80GB": 4, "L4": 2}


def confirm_form(page, submit, reason: str = "", shows: str = "") -> None:
    """Submit a form through the confirmation dialog (its fields listed there)."""
    submit.click()
    expect(page.locator("#gpuhub-confirm")).to_be_visible()
    if shows:
        expect(page.locator("#gpuhub-confirm-summary")).to_contain_text(shows)
    if reason:
        page.fill("#gpuhub-confirm-reason", reason)
    page.click("#gpuhub-confirm-ok")
    expect(page.locator("#gpuhub-flash")).to_be_visible()


def test_queue_tab_quotas_priority_cancel_and_metrics(hub):
    """The admin sets a group quota in the Queue tab: a member's spawn over it is
    refused, a request over it now is queued (reason: quota); a request that waits
    for capacity shows its ETA; the admin changes a priority and cancels, each
    confirmed and audited, and the same through the API; the metrics follow the
    queue."""
    admin, gina, svc = hub.login("admin"), hub.login("gpuhub-gina"), hub.admin_allocator()
    token = (hub.data_dir / "gpuhub-prometheus-token").read_text().strip()
    metrics_url = hub.url + "/services/gpu-allocator/metrics"
    r = admin.call("POST", "/hub/api/groups/gpuhub-qa", json={"users": ["gpuhub-gina"]})
    assert r.status_code in (201, 409), r.text
    a100 = {"gpu_model": "A100-SXM4-80GB", "max_hours": 1, "cpu": 1, "mem": "1G"}
    made = []
    try:
        full = svc.call("POST", API + "/allocations", json={"user": "gpuhub-hank", "gpus": 4, **a100})
        assert full.status_code == 201, full.text
        made.append(full.json()["id"])
        with sync_playwright() as p:
            browser, page = browser_login(p, hub, "admin", viewport=VIEWPORT)
            page.goto(hub.url + PANEL + "queue")
            expect(page.locator("#gpuhub-queue-empty")).to_be_visible()
            page.select_option("#q-kind", "group")
            page.fill("#q-name", "gpuhub-qa")
            page.fill("#q-gpus", "0.5")
            page.fill("#q-sessions", "3")
            confirm_form(page, page.locator("#q-submit"), "course limits", shows="gpus: 0.5")
            row = page.locator('#gpuhub-quota-table tr[data-kind="group"][data-name="gpuhub-qa"]')
            expect(row.locator('td[data-field="gpus"]')).to_have_text("0.5")
            expect(row.locator('td[data-field="sessions"]')).to_have_text("3")

            # the member's spawn over the limit is refused; one within it starts
            r = gina.spawn({"gpus": 1})
            assert r.status_code == 400 and "your limit is 0.5 GPUs at once" in r.json()["message"], r.text
            r = gina.spawn({"gpus": 0.5})
            assert r.status_code in (201, 202), r.text
            gina.wait_ready()
            # over the quota now: queued, reason quota
            mine = [gina.call("POST", API + "/allocations", json={"gpus": 0.25}) for _ in range(2)]
            assert [x.status_code for x in mine] == [202, 202], [x.text for x in mine]
            assert "over your GPU quota" in mine[0].json()["reason"]
            r1, r2 = (x.json()["id"] for x in mine)
            # waiting for capacity: the A100s are all held for an hour
            hank = svc.call("POST", API + "/allocations", json={"user": "gpuhub-hank", "gpus": 1, **a100})
            assert hank.status_code == 202, hank.text
            h1 = hank.json()["id"]
            queue = admin.call("GET", API + "/queue").json()["queued"]
            assert {q["id"] for q in queue} == {r1, r2, h1}

            m = samples(scrape(metrics_url, token).text)
            assert m["gpuhub_queue_pending_requests"][0][1] == len(queue) == 3
            by = {lab["reason"]: v for lab, v in m["gpuhub_queue_pending_by_reason"]}
            assert by == {"quota": 2, "capacity": 1, "reservation": 0}
            waits_before = m["gpuhub_queue_wait_duration_seconds_count"][0][1]

            page.reload()
            for rid, kind in ((r1, "quota"), (r2, "quota"), (h1, "capacity")):
                expect(page.locator(f'tr[data-request="{rid}"] .gpuhub-kind')).to_have_text(kind)
            expect(page.locator(f'tr[data-request="{r1}"] .gpuhub-reason')).to_contain_text("over your GPU quota")
            expect(page.locator(f'tr[data-request="{h1}"] .gpuhub-reason')).to_contain_text("to be free")
            assert page.locator(f'tr[data-request="{h1}"] .gpuhub-eta').inner_text() != "unknown"
            assert page.locator(f'tr[data-request="{h1}"] .gpuhub-eta-latest').inner_text() != "unknown"
            page.screenshot(path=str(ARTIFACTS / "queue.png"), full_page=True)

            # the priority of one of gina's requests (her other keeps hers), then cancel the other
            page.fill(f'tr[data-request="{r1}"] .gpuhub-priority', "5")
            confirm_form(page, page.locator(f'tr[data-request="{r1}"] .gpuhub-priority-form [type=submit]'),
                         "deadline", shows="priority: 5")
            expect(page.locator(f'tr[data-request="{r1}"] .gpuhub-priority')).to_have_value("5")
            expect(page.locator(f'tr[data-request="{r1}"] .gpuhub-priority-source')).to_have_text("own")
            expect(page.locator(f'tr[data-request="{r2}"] .gpuhub-priority')).to_have_value("")
            expect(page.locator(f'tr[data-request="{r2}"] .gpuhub-priority-source')).to_have_text("user's")
            page.screenshot(path=str(ARTIFACTS / "queue-priority.png"), full_page=True)
            confirm(page, page.locator(f'tr[data-request="{r2}"] .gpuhub-cancel'), "duplicate")
            expect(page.locator(f'tr[data-request="{r2}"]')).to_have_count(0)
            r = gina.call("GET", f"{API}/allocations/{r2}")
            assert r.json()["state"] == "cancelled" and "duplicate" in r.json()["reason"], r.text
            page.screenshot(path=str(ARTIFACTS / "queue-after.png"), full_page=True)
            browser.close()

        # the same actions through the API
        r = admin.call("PATCH", f"{API}/queue/{h1}", json={"priority": 2, "reason": "api"})
        assert r.status_code == 200 and r.json()["priority"] == 2 and r.json()["user"] == "gpuhub-hank", r.text
        assert admin.call("PATCH", f"{API}/queue/{h1}", json={"priority": "x"}).status_code == 400
        assert admin.call("PATCH", f"{API}/queue/{h1}", json={"reason": "no priority"}).status_code == 400
        assert admin.call("PATCH", f"{API}/queue/nothing", json={"priority": 1}).status_code == 404
        r = admin.call("PATCH", f"{API}/queue/{h1}", json={"priority": None})
        assert r.status_code == 200 and r.json()["priority"] is None and r.json()["previous"] == 2, r.text
        r = admin.call("POST", f"{API}/queue/{h1}/cancel", json={"reason": "api"})
        assert r.status_code == 200 and r.json()["state"] == "cancelled", r.text
        assert admin.call("POST", f"{API}/queue/{h1}/cancel").status_code == 404
        # raising the quota (the existing API, audited) lets gina's request start
        r = admin.call("PUT", API + "/quotas/group/gpuhub-qa", json={"gpus": 1, "sessions": 3})
        assert r.status_code == 200, r.text
        wait_for(lambda: gina.call("GET", f"{API}/allocations/{r1}").json()["state"] == "granted", 30,
                 "the queued request to start")
        made.append(r1)
        m = samples(scrape(metrics_url, token).text)
        assert m["gpuhub_queue_pending_requests"][0][1] == 0 == len(admin.call("GET", API + "/queue").json()["queued"])
        assert m["gpuhub_queue_wait_duration_seconds_count"][0][1] == waits_before + 1
        assert m["gpuhub_queue_wait_duration_seconds_sum"][0][1] > 0

        entries = admin.call("GET", API + "/audit", params={"limit": 6}).json()["entries"]
        assert [(e["action"], e["target"]) for e in entries] == [
            ("quota", "group:gpuhub-qa"), ("cancel", f"request:{h1}"), ("priority", f"request:{h1}"),
            ("priority", f"request:{h1}"), ("cancel", f"request:{r2}"), ("priority", f"request:{r1}")]
        assert all(e["actor"] == "admin" for e in entries)
        assert entries[-1]["detail"] == {"user": "gpuhub-gina", "priority": 5, "previous": None,
                                         "user_priority": 0, "reason": "deadline"}
    finally:
        for q in admin.call("GET", API + "/queue").json()["queued"]:
            admin.call("DELETE", f"{API}/allocations/{q['id']}")
        for aid in made:
            admin.call("DELETE", f"{API}/allocations/{aid}")
        gina.stop()
        admin.call("DELETE", API + "/quotas/group/gpuhub-qa")
        admin.call("DELETE", API + "/quotas/user/gpuhub-gina")
        admin.call("DELETE", API + "/quotas/user/gpuhub-hank")


def test_reservations_tab_books_marks_the_map_cancels_and_audits(hub):
    """Issue #10 in the panel: the admin books node-b's L4s for a user (confirmed),
    the map marks the devices reserved, the user sees their reservation and nobody
    else's, the admin cancels it (confirmed); both actions are in the audit log,
    and the same through the API (the gpu-admin role holds the reserve scope)."""
    admin, rita, sam = hub.login("admin"), hub.login("gpuhub-rita"), hub.login("gpuhub-sam")
    with sync_playwright() as p:
        browser, page = browser_login(p, hub, "admin", viewport=VIEWPORT)
        page.goto(hub.url + PANEL + "reservations")
        expect(page.locator("#gpuhub-reservations-empty")).to_be_visible()
        page.fill("#r-user", "gpuhub-rita")
        page.select_option("#r-host", "node-b")
        page.fill("#r-gpus", "2")
        page.fill("#r-note", "course demo")
        confirm_form(page, page.locator("#r-submit"), shows="host: node-b")
        row = page.locator('#gpuhub-reservation-table tr[data-user="gpuhub-rita"]')
        expect(row).to_have_count(1)
        expect(row).to_contain_text("2 × L4")
        rid = row.get_attribute("data-reservation")
        page.screenshot(path=str(ARTIFACTS / "reservations.png"), full_page=True)
        page.goto(hub.url + PANEL + "?host=node-b")
        expect(page.locator(f'#host-node-b .gpuhub-reserved[data-reservation="{rid}"]')).to_have_count(2)
        page.screenshot(path=str(ARTIFACTS / "pool-map-reserved.png"), full_page=True)

        mine = rita.call("GET", API + "/reservations").json()["reservations"]
        assert [r["id"] for r in mine] == [rid] and len(mine[0]["devices"]) == 2
        assert sam.call("GET", API + "/reservations").json()["reservations"] == []
        assert sam.call("GET", f"{API}/reservations/{rid}").status_code == 404
        # sam's 8 hours on an L4 would run into it: sam waits, told until when (not for whom)
        r = sam.call("POST", API + "/allocations", json={"gpus": 1, "gpu_model": "L4", "max_hours": 8})
        assert r.status_code == 202 and "reserved until" in r.json()["reason"], r.text
        assert "rita" not in r.json()["reason"]
        waiting = r.json()["id"]
        page.goto(hub.url + PANEL + "queue")
        expect(page.locator(f'tr[data-request="{waiting}"] .gpuhub-kind')).to_have_text("reservation")
        expect(page.locator(f'tr[data-request="{waiting}"] .gpuhub-reason')).to_contain_text(
            "reserved for gpuhub-rita until")
        page.screenshot(path=str(ARTIFACTS / "queue-reservation.png"), full_page=True)

        page.goto(hub.url + PANEL + "reservations")
        confirm(page, page.locator(f'tr[data-reservation="{rid}"] .gpuhub-unreserve'), "room changed")
        expect(page.locator("#gpuhub-reservations-empty")).to_be_visible()
        # the devices are everyone's again: sam's request starts
        wait_for(lambda: sam.call("GET", f"{API}/allocations/{waiting}").json()["state"] == "granted", 30,
                 "the request that waited for the reservation to start")
        sam.call("DELETE", f"{API}/allocations/{waiting}")
        page.goto(hub.url + PANEL + "audit")
        expect(page.locator(f'#gpuhub-audit tr[data-target="reservation:{rid}"]')).to_have_count(2)
        browser.close()
    assert rita.call("GET", f"{API}/reservations/{rid}").json()["state"] == "cancelled"
    r = admin.call("POST", API + "/reservations", json={"host": "node-a", "gpus": 2, "model": "A100-SXM4-80GB",
                                                         "start": "2099-01-01T09:00:00Z", "end": "2099-01-01T17:00:00Z"})
    assert r.status_code == 201 and r.json()["user"] == "admin", r.text
    assert admin.call("DELETE", f"{API}/reservations/{r.json()['id']}").json()["state"] == "cancelled"
    entries = admin.call("GET", API + "/audit", params={"limit": 4}).json()["entries"]
    assert [(e["action"], e["target"]) for e in entries] == [
        ("unreserve", f"reservation:{r.json()['id']}"), ("reserve", f"reservation:{r.json()['id']}"),
        ("unreserve", f"reservation:{rid}"), ("reserve", f"reservation:{rid}")]
    assert entries[2]["detail"]["reason"] == "room changed" and entries[3]["detail"]["note"] == "course demo"


def test_non_admins_get_403_from_every_admin_page_and_api(hub):
    dave = hub.login("gpuhub-dave")
    r = dave.call("POST", API + "/allocations", json={"gpus": 0.25})
    aid = r.json()["id"]
    try:
        for method, path in [
            ("GET", "/audit"), ("GET", "/usage/summary"), ("GET", "/usage/summary?format=csv"), ("GET", "/utilisation"),
            ("GET", "/pool/hosts"), ("GET", "/pool/summary"), ("POST", f"/allocations/{aid}/revoke"),
            ("POST", "/hosts/node-a/drain"), ("POST", "/hosts/node-a/undrain"),
            ("PATCH", "/queue/nothing"), ("POST", "/queue/nothing/cancel"),
            ("PUT", "/quotas/group/gpuhub-x"), ("DELETE", "/quotas/user/gpuhub-dave"),
            ("POST", "/reservations"),  # without custom:gpu-allocator:reserve
        ]:
            r = dave.call(method, API + path, json={} if method in ("POST", "PATCH", "PUT") else None)
            assert r.status_code == 403, (path, r.status_code, r.text)
        for path in ("", "queue", "reservations", "usage", "usage.csv", "storage", "audit"):
            r = dave.call("GET", PANEL + path)
            assert r.status_code == 403, (path, r.status_code)
            assert "gpuhub-action" not in r.text
        for path in ("hosts/node-a/drain", f"allocations/{aid}/revoke", "queue/nothing/cancel",
                     "queue/nothing/priority", "quotas", "reservations/new", "reservations/nothing/cancel"):
            r = dave.call("POST", PANEL + path, data={"reason": "x"})
            assert r.status_code == 403, (path, r.status_code)
        with sync_playwright() as p:
            browser, page = browser_login(p, hub, "gpuhub-dave", viewport=VIEWPORT)
            resp = page.goto(hub.url + PANEL)
            assert resp.status == 403
            expect(page.locator("#gpuhub-error-message")).to_contain_text("GPU pool admins")
            assert page.locator(".gpuhub-action").count() == 0
            page.screenshot(path=str(ARTIFACTS / "non-admin-403.png"))
            browser.close()
        (still,) = dave.allocations()
        assert still["id"] == aid
        assert hub.login("admin").call("GET", API + "/audit").json()["entries"][0]["target"] != f"allocation:{aid}"
    finally:
        dave.call("DELETE", f"{API}/allocations/{aid}")


def scrape(url: str, token: str | None) -> requests.Response:
    headers = {"Authorization": f"token {token}"} if token else {}
    return requests.get(url, headers=headers, timeout=30)


def samples(text: str) -> dict:
    out = {}
    for fam in text_string_to_metric_families(text):
        out.setdefault(fam.name, [])  # (a family may have no samples yet)
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def test_metrics_with_read_metrics_match_the_pool(hub):
    token = (hub.data_dir / "gpuhub-prometheus-token").read_text().strip()
    admin = hub.admin_allocator()
    granted = [admin.call("POST", API + "/allocations", json={"user": "gpuhub-erin", "gpus": g})
               for g in (1, 0.5)]
    assert [g.status_code for g in granted] == [201, 201], [g.text for g in granted]
    refused = admin.call("POST", API + "/allocations", json={"user": "gpuhub-erin", "gpus": 8})
    assert refused.status_code in (400, 409)
    try:
        m = samples(scrape(hub.url + "/services/gpu-allocator/metrics", token).text)
        pool = admin.pool()
        installed = {}
        for h in pool["hosts"]:
            for d in h["devices"]:
                installed[d["model"]] = installed.get(d["model"], 0) + 1
        got = {}
        for labels, v in m["gpuhub_gpus_installed"]:
            got[labels["model"]] = got.get(labels["model"], 0) + v
        assert got == installed
        allocated = sum(v for _, v in m["gpuhub_gpus_allocated"])
        assert allocated == pytest.approx(1.5)
        idle = sum(v for _, v in m["gpuhub_gpus_idle"])
        assert idle == pytest.approx(sum(installed.values()) - 1.5)
        assert dict((lab["state"], v) for lab, v in m["gpuhub_hosts"])["up"] == len(pool["hosts"])
        assert m["gpuhub_allocations_active"][0][1] == 2
        assert m["gpuhub_allocations_granted_total"][0][1] >= 2
        refusals = dict((lab["reason"], v) for lab, v in m["gpuhub_allocations_refused_total"])
        assert refused.status_code == 400 or refusals["capacity"] >= 1
        assert "gpuhub_allocation_decision_duration_seconds_count" in m
        assert "gpuhub_queue_pending_requests" in m and "gpuhub_gpus_fragmented" in m
        assert "gpuhub_allocations_refused_total" in m and "gpuhub_hosts_lost_total" in m

        v = samples(scrape(hub.url + "/services/vfolders/metrics", token).text)
        assert [lab["storage_host"] for lab, _ in v["gpuhub_storage_capacity_bytes"]] == ["local"]
        assert "gpuhub_vfolder_usage_bytes" in v and "gpuhub_vfolder_quota_bytes" in v
        assert "gpuhub_storage_read_bytes_total" in v
        # the hub's own metrics with the same token
        assert scrape(hub.url + "/hub/metrics", token).status_code == 200
        # every gpuhub metric the README's Grafana dashboard plots exists
        dashboard = (Path(__file__).resolve().parent.parent / "docs" / "grafana-dashboard.json").read_text()
        plotted = set(re.findall(r"gpuhub_[a-z_]+", dashboard)) - {"gpuhub_pool"}
        assert plotted and plotted <= set(m) | set(v), plotted - set(m) - set(v)
    finally:
        for g in granted:
            admin.call("DELETE", f"{API}/allocations/{g.json()['id']}")
    # a token without read:metrics (a user's, who may use both services): 403
    user = hub.login("gpuhub-frank")
    for svc in ("gpu-allocator", "vfolders"):
        assert scrape(f"{hub.url}/services/{svc}/metrics", user.token).status_code == 403
        assert scrape(f"{hub.url}/services/{svc}/metrics", None).status_code in (401, 403)


def write_inventory(path: Path, hosts: int, gpus: int) -> Path:
    lines = ["hosts:"]
    for i in range(hosts):
        model = "H100-SXM5-80GB" if i % 3 else "A100-SXM4-80GB"
        lines += [f"  - name: gpu-{i:04d}", "    cpus: 128", "    memory: 1T", "    gpus:",
                  f"      - model: {model}", "        memory: 80G", f"        count: {gpus}",
                  f"        nvlink_island: nvswitch{i % 2}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_pool_map_of_1250_hosts_is_paged(tmp_path_factory):
    work = tmp_path_factory.mktemp("bighub")
    inventory = write_inventory(work / "inventory.yaml", 1250, 8)
    h = Hub(work, config={"GPUAllocator": {"inventory_file": str(inventory)}})
    h.start(timeout=120)
    try:
        admin = h.login("admin")
        r = admin.session.get(h.url + PANEL)  # the OAuth dance, then the page
        assert r.status_code == 200, r.text[:500]
        assert r.text.count('class="card mb-2 gpuhub-host"') == 25
        assert "of 1,250" in r.text and "page 1 of 50" in r.text
        assert r.text.count('class="gpuhub-device"') == 25 * 8
        r = admin.session.get(h.url + PANEL, params={"page": 50})
        assert 'id="host-gpu-1249"' in r.text and 'id="host-gpu-0000"' not in r.text
        r = admin.session.get(h.url + PANEL, params={"host": "gpu-0042"})
        assert r.text.count('class="card mb-2 gpuhub-host"') == 1
        r = admin.session.get(h.url + PANEL, params={"model": "A100-SXM4-80GB", "page": 2})
        assert "of 417" in r.text
        page = admin.call("GET", API + "/pool/hosts", params={"per_page": 100, "page": 13}).json()
        assert page["matched"] == 1250 and page["pages"] == 13 and len(page["hosts"]) == 50
        with sync_playwright() as p:
            browser, pg = browser_login(p, h, "admin", viewport=VIEWPORT)
            pg.goto(h.url + PANEL)
            expect(pg.locator(".gpuhub-host")).to_have_count(25)
            pg.click(".gpuhub-next >> nth=0")
            expect(pg.locator("#host-gpu-0025")).to_be_visible()
            pg.screenshot(path=str(ARTIFACTS / "pool-map-1250-hosts.png"))
            browser.close()
    finally:
        h.stop()
