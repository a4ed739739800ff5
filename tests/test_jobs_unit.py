"""Batch jobs without a hub: the allocator's decisions (gpu_allocator.core.jobs,
with hypothesis), the ledger's job rows (SQLite and PostgreSQL), the spawner's
command and environment (spawner/jobs.py), and the runner (gpuhub/jobrun.py) as
a real process: exit codes, output, exit.json, SIGTERM to the whole group, the
HTTP answer the hub waits for."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpu_allocator.core.jobs import (
    SPAWN_GRACE, Job, JobState, Next, cancelled, ended, on_hub, over_limit, parse_job, server_name,
)
from gpu_allocator.core.validation import RequestError
from gpuhub import jobrun
from spawner.jobs import job_cmd, job_env
from tests.support import REPO, free_port, wait_for


def a_job(**kw) -> Job:
    return replace(Job("0123456789ab", "alice", ("sh", "-c", "true"), {"gpus": "1"}, "", submitted=100.0), **kw)


# --- what a job is ------------------------------------------------------------------------


def test_parse_job_takes_a_command_list_the_share_and_a_relative_workdir():
    cmd, options, workdir = parse_job({"command": ["python", "train.py"], "gpus": "0.5", "vfolders": ["data"],
                                       "workdir": "./projects//mnist/", "profile": "small", "cpu": None})
    assert cmd == ("python", "train.py")
    assert options == {"gpus": "0.5", "vfolders": ["data"], "profile": "small"}
    assert workdir == "projects/mnist"
    for body, words in [
        ({"command": "python train.py"}, "list of arguments"),
        ({"command": []}, "list of arguments"),
        ({"command": ["python", 3]}, "each argument"),
        ({"command": ["a\0b"]}, "without NUL"),
        ({"command": [""]}, "is empty"),
        ({"command": ["true"], "image": "x"}, "unknown fields ['image']"),
        ({"command": ["true"], "vfolders": "data"}, "vfolders must be a list"),
        ({"command": ["true"], "workdir": "/etc"}, "relative to your home"),
        ({"command": ["true"], "workdir": "a/../../b"}, "no leading / and no .."),
        ({"command": ["true"], "profile": 3}, "profile must be"),
        ([], "JSON object"),
    ]:
        with pytest.raises(RequestError, match=words.replace("[", r"\[").replace("]", r"\]")):
            parse_job(body)


def test_a_user_may_have_so_many_jobs_at_once():
    assert over_limit(19, 20) is None and over_limit(500, 0) is None
    assert "20 jobs queued or running, the most allowed at once (20)" in over_limit(20, 20)
    assert "gpuhub cancel ID" in over_limit(21, 20)


async def test_a_submission_over_the_limit_is_refused_before_anything_is_written():
    import logging
    from types import SimpleNamespace

    from gpu_allocator.jobs import Jobs, SubmitRefused

    jobs = Jobs(SimpleNamespace(log=logging.getLogger("test"), max_jobs_per_user=1))  # no pool: nothing to write
    jobs.active = {"0123456789ab": a_job(), "bbbbbbbbbbbb": a_job(id="bbbbbbbbbbbb", user="bob")}
    with pytest.raises(SubmitRefused) as refused:
        await jobs.submit("alice", ("true",), {}, "")
    assert refused.value.status == 429 and "at once (1)" in refused.value.message


def test_a_jobs_server_and_folder_are_named_by_its_id():
    j = a_job()
    assert j.server == server_name(j.id) == "job-0123456789ab"
    assert j.folder == "jobs/0123456789ab"


# --- what the hub's view means ----------------------------------------------------------------


def test_on_hub_spawns_starts_and_ends_as_the_hub_sees_the_server():
    queued = a_job()
    assert on_hub(queued, None, 200.0) is Next.SPAWN
    asked = replace(queued, spawned=200.0)
    assert on_hub(asked, None, 200.0 + SPAWN_GRACE / 2) is Next.NOTHING  # the hub has not taken it yet
    assert on_hub(asked, None, 200.0 + SPAWN_GRACE + 1) is Next.ENDED  # never came up
    assert on_hub(asked, {"ready": False, "pending": "spawn"}, 500.0) is Next.NOTHING  # waiting in the queue
    assert on_hub(asked, {"ready": True}, 500.0) is Next.STARTED
    running = replace(asked, state=JobState.RUNNING, started=300.0)
    assert on_hub(running, {"ready": True}, 500.0) is Next.NOTHING
    assert on_hub(running, None, 300.5) is Next.ENDED  # gone: at once, no grace
    done = replace(running, state=JobState.SUCCEEDED, ended=400.0, exit_code=0)
    assert on_hub(done, {"ready": True}, 500.0) is Next.REMOVE
    assert on_hub(replace(done, removed=True), None, 500.0) is Next.NOTHING


jobs = st.builds(
    lambda state, spawned, removed, started: a_job(state=state, spawned=spawned, removed=removed, started=started),
    st.sampled_from(list(JobState)), st.one_of(st.none(), st.floats(0, 1e4)), st.booleans(),
    st.one_of(st.none(), st.floats(0, 1e4)),
)
servers = st.one_of(st.none(), st.fixed_dictionaries({"ready": st.booleans(),
                                                      "pending": st.sampled_from([None, "spawn", "stop"])}))


@given(jobs, servers, st.floats(0, 2e4))
def test_on_hub_never_spawns_twice_nor_touches_a_removed_ended_job(job, server, now):
    step = on_hub(job, server, now)
    if job.state.final:
        assert step in (Next.REMOVE, Next.NOTHING) and (step is Next.NOTHING) == job.removed
    else:
        assert step is not Next.REMOVE
        assert (step is Next.SPAWN) == (job.spawned is None)
        if step is Next.STARTED:
            assert server and server["ready"] and job.state is JobState.QUEUED


# --- how it ended -------------------------------------------------------------------------------


def test_ended_reads_the_exit_record_else_what_became_of_the_share():
    running = a_job(state=JobState.RUNNING, spawned=101.0, started=102.0, home_vfolder="v")
    ok = ended(running, {"exit_code": 0, "signal": None, "ended_at": 150.0}, None, 160.0)
    assert (ok.state, ok.exit_code, ok.ended, ok.reason) == (JobState.SUCCEEDED, 0, 150.0, "")
    bad = ended(running, {"exit_code": 3, "signal": None}, {"state": "released"}, 160.0)
    assert (bad.state, bad.exit_code, bad.reason) == (JobState.FAILED, 3, "the command exited with 3")
    killed = ended(running, {"exit_code": 143, "signal": 15, "stopped": True}, None, 160.0)
    assert killed.reason == "the command was killed by signal 15 when its server was stopped"
    over = ended(running, {"exit_code": 143, "signal": 15, "stopped": True},
                 {"state": "expired", "max_hours": 1.0}, 160.0)
    assert over.state is JobState.EXPIRED and "max_hours 1.0 h" in over.reason and over.exit_code == 143
    assert ended(running, None, {"state": "expired", "max_hours": 2.0}, 160.0).state is JobState.EXPIRED
    lost = ended(running, None, {"state": "lost", "host": "node-a"}, 160.0)
    assert (lost.state, lost.reason) == (JobState.FAILED, "its GPU host node-a was lost")
    assert "revoked" in ended(running, None, {"state": "revoked"}, 160.0).reason
    silent = ended(running, None, None, 160.0)
    assert silent.state is JobState.FAILED and "without recording an exit status" in silent.reason
    never = ended(a_job(spawned=101.0), None, None, 160.0)
    assert "did not start" in never.reason and never.exit_code is None


@given(jobs, st.one_of(st.none(), st.fixed_dictionaries({"exit_code": st.integers(0, 255),
                                                          "signal": st.one_of(st.none(), st.integers(1, 64))})),
       st.one_of(st.none(), st.fixed_dictionaries({"state": st.sampled_from(
           ["granted", "released", "lost", "revoked", "expired"]), "max_hours": st.just(1.0)})))
def test_ended_is_always_final_and_keeps_the_exit_code_it_was_given(job, record, allocation):
    done = ended(job, record, allocation, 500.0)
    assert done.state.final and done.ended is not None
    assert done.exit_code == (record["exit_code"] if record else job.exit_code)
    assert (done.state is JobState.SUCCEEDED) == bool(record and record["exit_code"] == 0)


def test_cancelled_says_by_whom():
    assert cancelled(a_job(), "alice", 5.0).reason == "cancelled by its owner"
    assert cancelled(a_job(), "root", 5.0).reason == "cancelled by an administrator (root)"


# --- the ledger ----------------------------------------------------------------------------------


def test_the_ledger_keeps_jobs_across_a_restart(db_url):
    from gpu_allocator.store.ledger import DeleteJob, Ledger, PutJob

    ledger = Ledger(db_url, 20)
    first = a_job(id="aaaaaaaaaaaa", options={"gpus": "0.5", "vfolders": ["d"]}, workdir="w")
    second = a_job(id="bbbbbbbbbbbb", submitted=200.0)
    ledger.write([PutJob(first), PutJob(second)])
    done = replace(first, state=JobState.FAILED, ended=300.0, exit_code=2, reason="x" * 2000, host="node-a",
                   home_vfolder="v" * 32)
    ledger.write([PutJob(done)])
    ledger.close()
    ledger = Ledger(db_url, 20)
    got = ledger.get_job("aaaaaaaaaaaa")
    assert got == replace(done, reason="x" * 1000)
    assert [j.id for j in ledger.jobs("alice")] == ["bbbbbbbbbbbb", "aaaaaaaaaaaa"]  # newest first
    assert ledger.jobs("bob") == []
    # still followed: the queued one, and the ended one whose server is not removed yet
    assert {j.id for j in ledger.load_jobs()} == {"aaaaaaaaaaaa", "bbbbbbbbbbbb"}
    ledger.write([PutJob(replace(got, removed=True)), DeleteJob("bbbbbbbbbbbb")])
    assert ledger.load_jobs() == [] and ledger.get_job("bbbbbbbbbbbb") is None
    ledger.close()


# --- the spawner's command and environment ---------------------------------------------------------


def test_job_cmd_replaces_jupyterlab_by_the_runner_and_keeps_a_wrapper():
    assert job_cmd(["/opt/env/bin/python", "-m", "jupyterhub.singleuser"]) == \
        ["/opt/env/bin/python", "-m", "gpuhub.jobrun"]
    assert job_cmd(["jupyterhub-singleuser"]) == ["python3", "-m", "gpuhub.jobrun"]
    wrapped = ["unshare", "--mount", "--", "/bin/sh", "-c", "exec \"$@\"", "x", "/py", "-m", "jupyterhub.singleuser"]
    assert job_cmd(wrapped) == wrapped[:-1] + ["gpuhub.jobrun"]
    with pytest.raises(ValueError, match="c.Spawner.cmd"):
        job_cmd(["/usr/bin/start-notebook.sh"])
    env = job_env({"id": "0123456789ab", "command": ["sh", "-c", "echo 'a b'"], "workdir": "w"})
    assert json.loads(env["GPUHUB_JOB_COMMAND"]) == ["sh", "-c", "echo 'a b'"]
    assert env["GPUHUB_JOB_ID"] == "0123456789ab" and env["GPUHUB_JOB_WORKDIR"] == "w"


# --- the runner, as a real process --------------------------------------------------------------------


def runner_env(tmp_path, command, **extra) -> dict:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {**{k: v for k, v in os.environ.items() if not k.startswith(("JUPYTERHUB_", "GPUHUB_"))},
            "HOME": str(home), "GPUHUB_JOB_ID": "0123456789ab", "GPUHUB_JOB_COMMAND": json.dumps(command),
            "PYTHONPATH": str(REPO), **extra}


def folder(tmp_path):
    return tmp_path / "home" / "jobs" / "0123456789ab"


def test_the_runner_keeps_output_and_exit_code_in_the_jobs_folder(tmp_path):
    (tmp_path / "home" / "work").mkdir(parents=True)
    env = runner_env(tmp_path, ["sh", "-c", "pwd; echo out; echo err >&2; echo $GPUHUB_JOB_ID; exit 4"],
                     GPUHUB_JOB_WORKDIR="work")
    assert asyncio.run(jobrun.run(env)) == 4
    log = (folder(tmp_path) / "output.log").read_text().splitlines()
    assert log == [str(tmp_path / "home" / "work"), "out", "err", "0123456789ab"]
    record = json.loads((folder(tmp_path) / "exit.json").read_text())
    assert record["exit_code"] == 4 and record["signal"] is None and record["stopped"] is False
    assert record["started_at"] <= record["ended_at"]
    # a second run of the same job (a restarted server) appends to the log
    assert asyncio.run(jobrun.run(runner_env(tmp_path, ["sh", "-c", "echo again"]))) == 0
    assert (folder(tmp_path) / "output.log").read_text().endswith("again\n")


def test_a_command_that_does_not_exist_is_127_with_the_reason_in_the_log(tmp_path):
    assert asyncio.run(jobrun.run(runner_env(tmp_path, ["no-such-program-xyz"]))) == 127
    assert "cannot run 'no-such-program-xyz'" in (folder(tmp_path) / "output.log").read_text()
    assert json.loads((folder(tmp_path) / "exit.json").read_text())["exit_code"] == 127


def test_sigterm_ends_the_commands_whole_group_and_is_recorded(tmp_path):
    port = free_port()
    env = runner_env(tmp_path, ["sh", "-c", "sleep 300 & echo started; wait"],
                     JUPYTERHUB_SERVICE_URL=f"http://127.0.0.1:{port}/user/alice/job-0123456789ab/")
    proc = subprocess.Popen([sys.executable, "-m", "gpuhub.jobrun"], env=env, start_new_session=True)
    try:
        wait_for(lambda: "started" in (folder(tmp_path) / "output.log").read_text()
                 if (folder(tmp_path) / "output.log").exists() else False, 20, "the command")
        # it answers HTTP where the hub looks for the server, saying nothing about the job
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/user/alice/job-0123456789ab/", timeout=5) as r:
            assert r.status == 200 and b"batch job" in r.read()
        sleeper = subprocess.run(["pgrep", "-g", str(proc.pid), "-f", "sleep 300"], capture_output=True, text=True)
        assert sleeper.stdout.strip()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
    record = json.loads((folder(tmp_path) / "exit.json").read_text())
    assert (record["signal"], record["stopped"]) == (signal.SIGTERM, True)
    wait_for(lambda: not subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True).stdout, 10,
             "the group gone")


def test_a_command_that_ends_at_once_waits_until_the_hub_saw_the_server(tmp_path):
    port = free_port()
    env = runner_env(tmp_path, ["true"], JUPYTERHUB_SERVICE_URL=f"http://127.0.0.1:{port}/",
                     GPUHUB_JOB_UP_WAIT="20")
    proc = subprocess.Popen([sys.executable, "-m", "gpuhub.jobrun"], env=env)
    try:
        wait_for(lambda: (folder(tmp_path) / "exit.json").exists(), 20, "the command's end")
        time.sleep(0.5)
        assert proc.poll() is None  # still up: the hub has not asked yet
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_the_runner_outside_a_job_says_how_to_submit_one():
    p = subprocess.run([sys.executable, "-m", "gpuhub.jobrun"], capture_output=True, text=True,
                       env={k: v for k, v in os.environ.items() if not k.startswith("GPUHUB_JOB")})
    assert p.returncode == 2 and "gpuhub run -- COMMAND" in p.stderr


def test_the_command_finds_the_sessions_tools_after_the_hubs_path_and_prints_unbuffered():
    env = jobrun.command_env({"PATH": "/usr/bin:/bin", "GPUHUB_JOB_COMMAND": "[]", "GPUHUB_JOB_ID": "x"},
                             "/opt/envs/k/bin/python")
    assert env["PATH"] == "/usr/bin:/bin:/opt/envs/k/bin"
    assert "GPUHUB_JOB_COMMAND" not in env and env["GPUHUB_JOB_ID"] == "x"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert jobrun.command_env({"PYTHONUNBUFFERED": ""}, "/e/bin/python")["PYTHONUNBUFFERED"] == ""
    # already there: left as it is
    assert jobrun.command_env({"PATH": "/opt/envs/k/bin:/bin"}, "/opt/envs/k/bin/python")["PATH"] == \
        "/opt/envs/k/bin:/bin"
    assert jobrun.command_env({}, "/e/bin/python")["PATH"].endswith(":/e/bin")


def test_exit_codes_as_the_shell_says_them():
    assert jobrun.exit_code(0) == (0, None) and jobrun.exit_code(3) == (3, None)
    assert jobrun.exit_code(-15) == (143, 15)
