"""The job runner's pure parts (gpuhub/jobrun.py); the runner itself runs in
tests/test_jobs.py."""

from gpuhub.jobrun import command_env, exit_code


def test_the_command_finds_the_sessions_tools_after_the_hubs_path():
    env = command_env({"PATH": "/usr/bin:/bin", "GPUHUB_JOB_COMMAND": "[]", "GPUHUB_JOB_ID": "x"},
                      "/opt/envs/k/bin/python")
    assert env["PATH"] == "/usr/bin:/bin:/opt/envs/k/bin"
    assert "GPUHUB_JOB_COMMAND" not in env and env["GPUHUB_JOB_ID"] == "x"
    # already there: left as it is
    assert command_env({"PATH": "/opt/envs/k/bin:/bin"}, "/opt/envs/k/bin/python")["PATH"] == "/opt/envs/k/bin:/bin"
    assert command_env({}, "/e/bin/python")["PATH"].endswith(":/e/bin")


def test_exit_codes_as_the_shell_says_them():
    assert exit_code(0) == (0, None) and exit_code(3) == (3, None) and exit_code(-15) == (143, 15)
