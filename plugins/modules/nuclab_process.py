#!/usr/bin/python
# Copyright: nuclab contributors
# Apache License 2.0
"""Ansible module: keep a long-running process up, supervised by a pid file (no systemd)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: nuclab_process
short_description: Keep a background process running, supervised by a pid file
description:
  - Starts a command in its own session with its output appended to a log file and its pid
    written to a pid file, when it is not already running with the same command line and
    fingerprint. Restarts it when the command line or the fingerprint changed.
  - Stops it (SIGTERM, then SIGKILL after I(stop_timeout) seconds) with I(state=stopped).
  - Used by the simulated lab, where no service manager can be assumed.
options:
  name:
    description: Name of the process; names the pid, log and stamp files in I(state_dir).
    type: str
    required: true
  state:
    description: Whether the process should be running.
    type: str
    choices: [started, stopped]
    default: started
  argv:
    description: The command and its arguments. Required with I(state=started).
    type: list
    elements: str
  state_dir:
    description: Directory for C(<name>.pid), C(<name>.log) and C(<name>.stamp).
    type: path
    required: true
  env:
    description: Extra environment variables for the process.
    type: dict
    default: {}
  netns:
    description:
      - Name of a network namespace (in C(/run/netns)) to run the process in; the process stays
        in this machine's mount namespace. Empty = this module's own network namespace.
    type: str
    default: ""
  fingerprint:
    description:
      - Any string that changes when the process must restart although its command line did
        not (for example checksums of the files it reads).
    type: str
    default: ""
  startup_seconds:
    description: How long the process must stay alive after a start to count as started.
    type: float
    default: 1.0
  stop_timeout:
    description: Seconds to wait after SIGTERM before SIGKILL.
    type: float
    default: 20.0
author: nuclab contributors
"""

EXAMPLES = r"""
- name: Start etcd
  nuclab_process:
    name: etcd
    argv: [/opt/tools/etcd, --data-dir, /var/lib/sim/etcd]
    state_dir: /var/lib/sim/run
"""

RETURN = r"""
pid:
  description: Pid of the running process (absent when stopped).
  returned: when state is started
  type: int
log:
  description: Path of the process's log file.
  returned: always
  type: str
"""

import hashlib
import json
import os
import signal
import subprocess
import time

from ansible.module_utils.basic import AnsibleModule


def _read_pid(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            # A zombie (state Z) has exited; it only waits for its parent to reap it.
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return [part.decode() for part in handle.read().split(b"\0") if part]
    except OSError:
        return []


def _stamp(argv: list[str], env: dict[str, str], fingerprint: str) -> str:
    payload = json.dumps({"argv": argv, "env": env, "fingerprint": fingerprint}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def _stop(pid: int, timeout: float) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    while _alive(pid):
        time.sleep(0.05)


def _log_tail(path: str, lines: int = 20) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    except OSError:
        return ""


def _enter(netns: str):
    """A preexec function that moves the child into a network namespace (none: None)."""
    if not netns:
        return None
    path = os.path.join("/run/netns", netns)

    def enter() -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.setns(fd, os.CLONE_NEWNET)
        finally:
            os.close(fd)

    return enter


def _start(module: AnsibleModule, paths: dict[str, str], argv: list[str], env: dict[str, str]):
    full_env = dict(os.environ)
    full_env.update(env)
    netns = module.params["netns"]
    if netns and not os.path.exists(os.path.join("/run/netns", netns)):
        module.fail_json(msg=f"{module.params['name']}: no network namespace {netns}")
    with open(paths["log"], "ab") as log, open(os.devnull, "rb") as devnull:
        log.write(f"\n--- started {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen(  # argv comes from the playbook, never a shell
                argv,
                stdin=devnull,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=full_env,
                start_new_session=True,
                close_fds=True,
                # Only setns(2) runs between fork and exec: no lock is taken there.
                preexec_fn=_enter(netns),  # noqa: PLW1509
            )
        except OSError as exc:
            module.fail_json(msg=f"{module.params['name']}: cannot start {argv[0]}: {exc}")
    with open(paths["pid"], "w", encoding="ascii") as handle:
        handle.write(str(proc.pid))
    deadline = time.monotonic() + module.params["startup_seconds"]
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            module.fail_json(
                msg=f"{module.params['name']} exited with code {proc.returncode} right after "
                f"starting; last lines of {paths['log']}:\n{_log_tail(paths['log'])}",
                log=paths["log"],
            )
        time.sleep(0.1)
    return proc.pid


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "state": {"type": "str", "default": "started", "choices": ["started", "stopped"]},
            "argv": {"type": "list", "elements": "str"},
            "state_dir": {"type": "path", "required": True},
            "env": {"type": "dict", "default": {}},
            "netns": {"type": "str", "default": ""},
            "fingerprint": {"type": "str", "default": "", "no_log": False},
            "startup_seconds": {"type": "float", "default": 1.0},
            "stop_timeout": {"type": "float", "default": 20.0},
        },
        required_if=[("state", "started", ["argv"])],
        supports_check_mode=True,
    )
    name = module.params["name"]
    state_dir = module.params["state_dir"]
    paths = {ext: os.path.join(state_dir, f"{name}.{ext}") for ext in ("pid", "log", "stamp")}
    pid = _read_pid(paths["pid"])
    running = _alive(pid)

    if module.params["state"] == "stopped":
        if not running and not os.path.exists(paths["pid"]):
            module.exit_json(changed=False, log=paths["log"])
        if not module.check_mode:
            if running:
                _stop(pid, module.params["stop_timeout"])
            for key in ("pid", "stamp"):
                if os.path.exists(paths[key]):
                    os.unlink(paths[key])
        module.exit_json(changed=True, log=paths["log"])

    argv = [str(arg) for arg in module.params["argv"]]
    env = {str(k): str(v) for k, v in module.params["env"].items()}
    want = _stamp(argv, env, module.params["fingerprint"] + module.params["netns"])
    try:
        with open(paths["stamp"], encoding="ascii") as handle:
            have = handle.read().strip()
    except OSError:
        have = ""
    if running and have == want and _cmdline(pid) == argv:
        module.exit_json(changed=False, pid=pid, log=paths["log"])
    if module.check_mode:
        module.exit_json(changed=True, log=paths["log"])

    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    if running:
        _stop(pid, module.params["stop_timeout"])
    new_pid = _start(module, paths, argv, env)
    with open(paths["stamp"], "w", encoding="ascii") as handle:
        handle.write(want)
    module.exit_json(changed=True, pid=new_pid, log=paths["log"], restarted=running)


if __name__ == "__main__":
    main()
