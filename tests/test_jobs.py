"""Batch jobs against the real hub (the shared ``hub`` fixture: the demo's config,
local processes, the mock inventory), through the ``gpuhub`` command as a user
runs it: ``run --wait`` prints the share's CUDA_VISIBLE_DEVICES and passes the
command's exit code through, a job writes into a mounted vfolder, ``jobs``
lists them, no share is held after; with the pool full a job waits with an
expected start and starts by itself; cancel while queued and while running;
``kill -9`` of the allocator and of the job's runner while it runs, and a vfolder
service that does not answer while a job ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.support import (
    API as A, cli_login, job, job_servers, jobs_of, pids_with_cmdline, pids_with_env, shares_of,
    submitted, wait_for,
)

def test_run_wait_prints_the_shares_devices_and_the_exit_code_comes_back(hub, cli):
    user = cli_login(hub, cli, "jobber")
    p = cli("run", "--gpus", "0.5", "--hours", "1", "--wait", "--",
            "sh", "-c", 'echo "CVD=$CUDA_VISIBLE_DEVICES ID=$GPUHUB_JOB_ID"; echo to-stderr >&2')
    out = p.stdout.decode()
    first = job(cli, submitted(p))
    assert f"ID={first['id']}" in out and "to-stderr" in out
    cvd = out.split("CVD=")[1].split()[0]
    assert cvd, out  # the share's device, as the spawner set it for the session's own
    assert first["state"] == "succeeded" and first["exit_code"] == 0 and first["host"]
    assert "succeeded (exit code 0)" in p.stderr.decode()
    # a failing command's own exit code comes back through --wait
    p = cli("run", "--gpus", "0", "--wait", "--", "sh", "-c", "echo oops >&2; exit 3", check=False)
    assert p.returncode == 3, p.stderr.decode()
    assert "oops" in p.stdout.decode()
    failed = job(cli, submitted(p))
    assert failed["state"] == "failed" and failed["exit_code"] == 3
    assert failed["reason"] == "the command exited with 3"
    # `logs` prints the kept output afterwards; `jobs` lists both, newest first
    assert "oops" in cli("logs", failed["id"]).stdout.decode()
    table = cli("jobs").stdout.decode()
    assert table.index(failed["id"]) < table.index(first["id"]) and "failed" in table
    # its GPU-hours are in the accounting, marked as a job's
    days = user.call("GET", A + "/usage").json()["days"]
    assert sum(d["job_gpu_hours"] for d in days) > 0
    assert sum(d["job_gpu_hours"] for d in days) == pytest.approx(sum(d["gpu_hours"] for d in days))
    # nothing held after: no share, no job server at the hub
    wait_for(lambda: not shares_of(hub, "jobber") and not job_servers(user), 30, "shares and servers gone")


def test_ctrl_c_while_following_leaves_the_job_running_and_says_how_to_cancel(hub, cli):
    user = cli_login(hub, cli, "jobctrlc")
    proc = subprocess.Popen([sys.executable, "-m", "gpuhub.cli", "run", "--gpus", "0", "--wait", "--",
                             "sh", "-c", "echo begun; sleep 600"], env=cli.env, cwd=cli.tmp,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            # as at a terminal: a suite started in the background has SIGINT ignored
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stdout.readline() == b"begun\n"  # its output, followed
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    text = err.decode()
    assert "Traceback" not in text and "goes on: gpuhub logs -f" in text, text
    job_id = text.split("Job ")[1].split(":")[0]
    assert job(cli, job_id)["state"] == "running"  # not cancelled without asking
    cli("cancel", job_id)
    wait_for(lambda: not job_servers(user), 30, "the job's server gone")


def test_a_job_writes_into_a_mounted_vfolder_and_the_file_downloads(hub, cli):
    cli_login(hub, cli, "jobwriter")
    cli("vfolder", "create", "results")
    p = cli("run", "--gpus", "0.25", "--vfolder", "results", "--wait", "--",
            "sh", "-c", "pwd; echo trained > ~/vfolders/results/model.txt")
    assert p.stdout.decode().splitlines()[0].endswith("/jobwriter")  # it ran in the home
    got = cli("vfolder", "download", "results", "model.txt", "-").stdout
    assert got == b"trained\n"
    # the output is in the home vfolder, under jobs/ID/, with the exit record
    j = jobs_of(cli)[0]
    log = cli("vfolder", "download", "home", f"{j['folder']}/output.log", "-").stdout.decode()
    record = json.loads(cli("vfolder", "download", "home", f"{j['folder']}/exit.json", "-").stdout)
    assert log.splitlines()[0].endswith("/jobwriter")
    assert record["exit_code"] == 0 and record["signal"] is None


def test_bad_input_is_a_4xx_and_keeps_no_job(hub, cli):
    user = cli_login(hub, cli, "jobbad")
    p = cli("run", "--gpus", "1.5", "--", "true", check=False)
    assert p.returncode == 1 and "1.5" in p.stderr.decode() and "allowed" in p.stderr.decode()
    p = cli("run", "--profile", "no-such-profile", "--", "true", check=False)
    assert p.returncode == 1 and "no-such-profile" in p.stderr.decode()
    p = cli("run", "--gpus", "1", check=False)
    assert p.returncode == 2 and "after --" in p.stderr.decode()
    assert jobs_of(cli) == []
    r = user.call("POST", A + "/jobs", json={"command": "echo hi"})
    assert r.status_code == 400 and "list of arguments" in r.json()["error"]
    r = user.call("POST", A + "/jobs", json={"command": ["true"], "gpus": "1", "image": "x"})
    assert r.status_code == 400 and "unknown fields ['image']" in r.json()["error"]
    # a job's server name is not for sessions
    r = user.spawn({"gpus": "0"}, name="job-123456789abc")
    assert r.status_code == 400 and "batch jobs" in r.text
    # nor are other users' jobs visible
    other = hub.login("jobpeek")
    assert other.call("GET", A + "/jobs").json()["jobs"] == []


@pytest.fixture
def full_pool(hub):
    """Every GPU of the demo's pool held by someone else (admin grants), given back after."""
    admin = hub.admin_allocator()
    held = []
    for host, gpus in (("node-a", 4), ("node-b", 2)):
        r = admin.call("POST", A + "/allocations", json={"user": "hog", "gpus": gpus, "cpu": 1, "mem": "1G",
                                                        "max_hours": 2, "queue": False})
        assert r.status_code == 201, r.text
        held.append(r.json()["id"])
    yield held
    for a in held:
        admin.call("DELETE", A + f"/allocations/{a}")


def test_with_the_pool_full_a_job_waits_with_an_eta_starts_by_itself_and_cancels(hub, cli, full_pool):
    user = cli_login(hub, cli, "jobqueue")
    p = cli("run", "--gpus", "1", "--hours", "1", "--", "sh", "-c", "echo started; sleep 600")
    line = p.stdout.decode()
    assert "queued, position 1, expected start" in line, line
    waiting = submitted(p)
    j = job(cli, waiting)
    assert j["state"] == "queued" and j["queue"]["eta"] and j["queue"]["position"] == 1
    # a second one, cancelled while it waits: it leaves the queue, nothing is held
    second = submitted(cli("run", "--gpus", "1", "--", "true"))
    wait_for(lambda: job(cli, second)["queue"], 30, "the second job in the queue")
    out = cli("cancel", second).stdout.decode()
    assert "cancelled" in out
    wait_for(lambda: not [q for q in hub.admin_allocator().call("GET", A + "/allocations?user=jobqueue")
                          .json()["queued"] if q["server"] == f"job-{second}"], 30, "the queue left")
    # the GPUs come free: the first starts by itself
    hub.admin_allocator().call("DELETE", A + f"/allocations/{full_pool.pop()}")
    wait_for(lambda: job(cli, waiting)["state"] == "running", 60, "the job to start")
    wait_for(lambda: "started" in cli("logs", waiting).stdout.decode(), 30, "its output")
    # cancelled while running: SIGTERM, the share goes back, the server goes
    assert job(cli, waiting)["allocation"]["gpus"] == "1"
    cli("cancel", waiting)
    wait_for(lambda: not shares_of(hub, "jobqueue") and not job_servers(user), 30, "everything freed")
    done = job(cli, waiting)
    assert done["state"] == "cancelled" and done["reason"] == "cancelled by its owner"
    assert job(cli, second)["state"] == "cancelled"
    p = cli("cancel", waiting, check=False)
    assert p.returncode == 1 and "already cancelled" in p.stderr.decode()


def test_kill_9_of_the_allocator_or_the_runner_while_a_job_runs_loses_nothing(hub, cli):
    user = cli_login(hub, cli, "jobkill")
    # the allocator dies while the job runs; its supervisor restarts it; the job ends meanwhile
    first = submitted(cli("run", "--gpus", "0.5", "--", "sh", "-c", "sleep 3; echo finished"))
    wait_for(lambda: job(cli, first)["state"] == "running", 60, "the job to run")
    for pid in hub.allocator_pids():
        os.kill(pid, signal.SIGKILL)
    time.sleep(4)  # the command ends while the allocator is down or restarting
    wait_for(lambda: job(cli, first)["state"] == "succeeded", 60, "the job found ended")
    assert "finished" in cli("logs", first).stdout.decode()
    # the vfolder service (which holds the job's exit record) does not answer while a
    # job ends: the end waits for it, and is recorded with the job's own exit code
    third = submitted(cli("run", "--gpus", "0", "--", "sh", "-c", "sleep 1; exit 5"))
    wait_for(lambda: job(cli, third)["state"] == "running", 60, "the third job to run")
    vfolders = pids_with_cmdline(f"--config={hub.data_dir}/vfolders_config.py", "vfolder_manager",
                                 not_part="gpuhub.supervise")
    assert vfolders
    for pid in vfolders:
        os.kill(pid, signal.SIGSTOP)
    try:
        wait_for(lambda: f"job {third}: ended must wait" in hub.log_tail(400), 60, "the end to wait")
        assert job(cli, third)["state"] == "running"
    finally:
        for pid in vfolders:
            os.kill(pid, signal.SIGCONT)
    wait_for(lambda: job(cli, third)["state"] != "running", 60, "the third job's end")
    assert (job(cli, third)["state"], job(cli, third)["exit_code"]) == ("failed", 5)
    # the runner dies (kill -9): its command dies with it, the job fails with the reason
    second = submitted(cli("run", "--gpus", "0.5", "--", "sh", "-c", "echo up; sleep 600"))
    wait_for(lambda: job(cli, second)["state"] == "running", 60, "the second job to run")
    runners = pids_with_env("GPUHUB_JOB_ID", second, "gpuhub.jobrun")
    assert runners
    for pid in runners:
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: job(cli, second)["state"] == "failed", 60, "the job marked failed")
    j = job(cli, second)
    assert "without recording an exit status" in j["reason"], j
    wait_for(lambda: not shares_of(hub, "jobkill") and not job_servers(user), 30, "everything freed")
    assert not pids_with_env("GPUHUB_JOB_ID", second, "sleep")


def test_kill_9_of_the_hub_and_its_services_while_a_job_runs_loses_nothing(own_hub):
    """The hub, its proxy and its services die at once (kill -9), as in a crash of
    the hub host's gpuhub processes; the job's own processes live on, as sessions
    do. The restarted hub and allocator find the job again, and its end is
    recorded with its exit code; nothing is left held."""
    hub = own_hub
    user = hub.login("jobcrash")
    r = user.call("POST", A + "/jobs", json={"command": ["sh", "-c", "echo up; sleep 6; echo finished; exit 2"],
                                             "gpus": "0.5"})
    assert r.status_code == 201, r.text
    jid = r.json()["id"]
    state = lambda: user.call("GET", f"{A}/jobs/{jid}").json()  # noqa: E731
    wait_for(lambda: state()["state"] == "running", 60, "the job to run")
    victims = [hub.proc.pid, *pids_with_cmdline(f"--config={hub.data_dir}/"),
               *pids_with_cmdline("configurable-http-proxy", str(hub.port))]
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    hub.proc.wait(10)
    assert pids_with_env("GPUHUB_JOB_ID", jid, "gpuhub.jobrun")  # the job goes on meanwhile
    hub.start()
    wait_for(lambda: state()["state"] != "running", 90, "the job's end, seen after the restart")
    j = state()
    assert (j["state"], j["exit_code"], j["reason"]) == ("failed", 2, "the command exited with 2"), j
    logs = user.call("GET", f"{A}/jobs/{jid}/logs")
    assert logs.text == "up\nfinished\n" and logs.headers["X-Job-Exit-Code"] == "2"
    wait_for(lambda: not hub.admin_allocator().allocations("jobcrash") and not job_servers(user), 60,
             "the share and the job's server gone")

