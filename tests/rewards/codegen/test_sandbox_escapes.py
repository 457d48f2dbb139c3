"""The sandbox's process layers hold alone (gate off): no host file read, no write that outlives the worker, no
native code from a writable place, with the worker still answering; the same for a user who is not root. And the
gate refuses each of these attacks first. A failed relabel leaves no spool behind."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import numpy as np
import pytest

from robot_rl.rewards.code_reward import CodeReward
from robot_rl.rewards.codegen.gate import GateError
from robot_rl.rewards.codegen.sandbox import Sandbox
from tests.rewards.codegen.candidates import SPEC, batch
from tests.rewards.codegen.escapes import REPO, native_attack, read_attack, run_all, small_library, write_attack

USER = "robotrl-sandbox"


@pytest.fixture(scope="module")
def as_root(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    return run_all(str(tmp_path_factory.mktemp("escapes")))


def _check(result: dict[str, object]) -> None:
    layers = result["layers"]
    assert isinstance(layers, dict)
    if not layers["private filesystem"][0]:
        pytest.skip(f"the private filesystem is not available here: {layers['private filesystem'][1]}")
    assert result["reads"] and result["read"] == 0.0, result  # nothing of the host's was readable
    targets = result["targets"]
    assert isinstance(targets, list)
    bits = int(result["write_bits"])  # type: ignore[call-overload]
    written = [t for i, t in enumerate(targets) if bits >> i & 1]
    assert all(t.startswith("/tmp/") for t in written), written  # only the worker's own /tmp took a file
    assert result["left_on_host"] == [] and result["host_leftovers"] == []
    if result["library"]:
        assert result["native"] == 1.0  # loads from /usr (read-only, executable); no copy loads from /tmp or /dev/shm


def test_process_layers_hold_alone_as_root(as_root: dict[str, object]) -> None:
    if os.geteuid() != 0:
        pytest.skip("this machine does not run the tests as root; the non-root run below covers it")
    _check(as_root)


def test_process_layers_hold_alone_for_a_user_who_is_not_root(tmp_path: Path) -> None:
    """A plain user (made here) runs the same attacks: the worker's layers come from a user namespace then."""
    if os.geteuid() != 0 or shutil.which("useradd") is None or shutil.which("setpriv") is None:
        pytest.skip("needs root, useradd and setpriv to create and become a user who is not root")
    python = _python_for_others()
    if python is None:
        pytest.skip(f"no Python {sys.version_info.major}.{sys.version_info.minor} that other users can run "
                    f"(this venv's base, {sys.base_prefix}, sits where they cannot read)")
    try:
        pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER], check=True)
    user = pwd.getpwnam(USER)
    shared = Path(tempfile.mkdtemp(prefix="robot-rl-nonroot-", dir="/tmp"))
    try:
        shared.chmod(0o755)
        venv = shared / "venv"
        subprocess.run([python, "-m", "venv", "--without-pip", str(venv)], check=True)
        site = next((venv / "lib").glob("python3*/site-packages"))
        # the project's packages and this checkout, read from where they are (readable by everyone)
        (site / "robot_rl_tests.pth").write_text(f"{sysconfig.get_paths()['purelib']}\n{REPO}\n")
        out = shared / "out"
        out.mkdir(mode=0o777)
        out.chmod(0o777)
        run = subprocess.run(
            ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", "--",
             str(venv / "bin" / "python"), "-m", "tests.rewards.codegen.escapes", str(out)],
            capture_output=True, text=True, timeout=300, cwd=REPO, env={"PATH": "/usr/bin:/bin", "HOME": str(out)})
        assert run.returncode == 0, run.stderr[-3000:]
        result = json.loads(run.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(shared, ignore_errors=True)
    layers = result["layers"]
    assert layers["unprivileged user"][1].startswith("already unprivileged"), layers
    off = {"static gate", "restricted globals"}  # the gate is off in these attacks
    assert all(active for name, (active, _) in layers.items() if name not in off), layers
    _check(result)


def _python_for_others() -> str | None:
    """An interpreter of this Python version that a user who is not root can execute (with its standard library)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (os.path.join(sys.base_prefix, "bin", f"python{version}"), f"/usr/bin/python{version}",
                      f"/usr/local/bin/python{version}"):
        if os.path.exists(candidate) and _others_can_run(candidate):
            return candidate
    return None


def _others_can_run(path: str) -> bool:
    real = Path(os.path.realpath(path))
    for parent in [*reversed(real.parents), real.parent]:
        if not parent.stat().st_mode & 0o001:  # others may not enter
            return False
    return bool(real.stat().st_mode & 0o001)


@pytest.mark.parametrize("source", [read_attack(["/etc/passwd"]), write_attack(["/dev/shm/x"]),
                                    native_attack("/usr/lib/x86_64-linux-gnu/libdl.so.2")])
def test_the_gate_refuses_each_attack_first(source: str) -> None:
    with pytest.raises(GateError):
        Sandbox(source, SPEC)


def test_a_torchscript_decorated_user_file_loads_wherever_it_is_kept(tmp_path: Path) -> None:
    """The worker's root does not hold the user's file: its source comes over the pipe and is served to inspect
    (torch.jit.script reads it), under /tmp or elsewhere."""
    code = ('import torch\n\n@torch.jit.script\ndef reach(d: torch.Tensor) -> torch.Tensor:\n    return -d\n\n'
            'def compute_reward(obs, action):\n    return reach(obs["state"].norm(dim=-1)), {}\n')
    for folder in (tmp_path, REPO / "tests" / "rewards" / "codegen"):
        path = folder / "jit_reward_tmp.py"
        path.write_text(code)
        try:
            states, actions = batch(4)
            with CodeReward(str(path), SPEC) as reward:
                values = reward(states, actions)[0]
            np.testing.assert_allclose(values, -np.linalg.norm(states, axis=1), rtol=1e-5)
        finally:
            path.unlink()


def test_native_library_helper_finds_a_small_library() -> None:
    library = small_library()
    if library is None:
        pytest.skip("no small libdl/libutil on this machine")
    assert os.path.getsize(library) < 512 << 10
