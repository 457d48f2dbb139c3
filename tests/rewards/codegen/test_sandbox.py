"""The sandbox's process layers, one test each, and every bad candidate of issue 5 contained by them (with the gate
off, where the gate would have stopped it first) with the sandbox still answering correctly afterwards."""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from robot_rl.rewards.code_reward import CodeReward, RewardCodeError
from robot_rl.rewards.codegen.gate import GateError
from robot_rl.rewards.codegen.sandbox import Sandbox, SandboxError, SandboxLimits, format_layers, sandbox_layers
from tests.rewards.codegen.candidates import GATE_REJECTS, GOOD, SPEC, batch, fn, good_reference

REPO = Path(__file__).resolve().parents[3]
LIMITS = SandboxLimits(deadline_s=3.0, startup_s=60.0)


@pytest.fixture(scope="module")
def box() -> Iterator[Sandbox]:
    """Gate on, every layer on."""
    with Sandbox(GOOD, SPEC, LIMITS) as b:
        yield b


@pytest.fixture(scope="module")
def open_box() -> Iterator[Sandbox]:
    """Gate off (imports, any builtin), every process layer on; started with secrets in the host's environment."""
    saved = {k: os.environ.get(k) for k in ("OPENAI_API_KEY", "ROBOT_RL_TEST_KEY")}
    os.environ.update(OPENAI_API_KEY="sk-secret", ROBOT_RL_TEST_KEY="secret")
    try:
        with Sandbox(GOOD, SPEC, LIMITS, gate=False) as b:
            b.start()
            yield b
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def bare_box() -> Iterator[Sandbox]:
    """Gate, seccomp and the private filesystem off, tight rlimits: what the network namespace, the user drop, the
    rlimits and the deadline alone do (the repository may live under /tmp, e.g. a CI checkout)."""
    limits = SandboxLimits(deadline_s=2.0, startup_s=60.0, cpu_s=1.0, memory_mb=3500, processes=32, open_files=32,
                           max_reply_bytes=1 << 16)
    with Sandbox(GOOD, SPEC, limits, gate=False, disable={"seccomp", "fs"}) as b:
        yield b


def still_good(b: Sandbox) -> None:
    """The sandbox answers the good candidate correctly after a bad one."""
    b.load(GOOD)
    states, actions = batch(32, seed=1)
    reward, components = b(states, actions)
    np.testing.assert_allclose(reward, good_reference(states, actions), rtol=1e-5, atol=1e-6)
    assert reward.dtype == np.float32 and set(components) == {"reach", "effort"}


def fails(b: Sandbox, source: str, message: str, n: int = 16) -> None:
    b.load(source)
    with pytest.raises(SandboxError, match=message) as e:
        b(*batch(n))
    assert "\n" not in str(e.value)
    still_good(b)


def test_good_code_matches_the_reference_and_slices_are_views_of_the_state(box: Sandbox) -> None:
    states, actions = batch(4096)
    reward, components = box(states, actions)
    np.testing.assert_allclose(reward, good_reference(states, actions), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(components["effort"], 0.01 * (actions ** 2).sum(1), rtol=1e-5)
    pid = box.pid
    box(states, actions)
    assert box.pid == pid  # one long-lived worker, not a process per batch


def test_comparisons_with_float_scalars_work_in_gated_code(box: Sandbox) -> None:
    # torch's C code imports "torch" through the calling frame's builtins for a tensor-vs-float comparison
    box.load(fn("gap = obs['hand_pos'][:, 0]\nnear = (gap < 0.05).float()\n"
                "r = torch.where(gap < 0.1, 1.0, 0.0) + near + torch.lt(gap, 0.05).float()\n"
                "return r, {'near': near}"))
    states, actions = batch(64)
    reward, components = box(states, actions)
    near = (states[:, 0] < 0.05).astype(np.float32)
    np.testing.assert_array_equal(components["near"], near)
    np.testing.assert_array_equal(reward, (states[:, 0] < 0.1) + 2 * near)
    still_good(box)


def test_sandbox_layers_probes_the_machine() -> None:
    layers = sandbox_layers()
    table = format_layers(layers)
    names = [x.name for x in layers]
    assert names == ["static gate", "clean environment", "network namespace", "resource limits", "private filesystem",
                     "unprivileged user", "seccomp filter", "restricted globals", "deadline", "output cap",
                     "result checks"]
    for layer in layers:
        assert layer.active or layer.detail.startswith("unavailable:"), layer
        assert layer.name in table
    if os.geteuid() == 0:  # root: every layer is available (CI and this machine)
        assert all(x.active for x in layers), table


def test_gate_errors_come_before_any_process(box: Sandbox) -> None:
    source, reason = GATE_REJECTS["dunder walk"]
    with pytest.raises(GateError, match=re.escape(reason)):
        Sandbox(source, SPEC)
    with pytest.raises(GateError, match="syntax error at line 1"):
        box.load(GATE_REJECTS["syntax error"][0])
    still_good(box)


# ---- layer: clean environment ---------------------------------------------------------------------------------------

def test_the_worker_sees_no_secrets_from_the_host(open_box: Sandbox) -> None:
    assert os.environ["OPENAI_API_KEY"] == "sk-secret"  # set in the host when the worker started
    open_box.load(fn('''
import os
secrets = [k for k in os.environ if "KEY" in k or "OPENAI" in k]
return torch.full((len(action),), float(len(secrets) * 1000 + len(os.environ))), {}
'''))
    reward, _ = open_box(*batch(4))
    assert reward.tolist() == [7.0] * 4  # no secret, and only the 7 variables the sandbox sets
    still_good(open_box)


# ---- layer: network namespace (seccomp off) and seccomp (socket() itself refused) --------------------------------

@pytest.fixture
def listener() -> Iterator[socket.socket]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(4)
    s.settimeout(0.3)
    yield s
    s.close()


def no_connection(listener: socket.socket) -> None:
    with pytest.raises(socket.timeout):
        listener.accept()


CONNECT = '''
import socket
s = socket.socket()
s.settimeout(1.0)
s.connect(("127.0.0.1", {port}))
s.sendall(b"reward data")
return action.sum(-1), {{}}
'''


def test_network_namespace_alone_stops_a_connection_to_the_host(bare_box: Sandbox, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    fails(bare_box, fn(CONNECT.format(port=port)), r"compute_reward raised OSError at line 5: .*unreachable")
    no_connection(listener)


def test_seccomp_refuses_sockets_and_urllib(open_box: Sandbox, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    fails(open_box, fn(CONNECT.format(port=port)), r"PermissionError at line 3: \[Errno 13\] Permission denied")
    fails(open_box, fn(f"import urllib.request\nurllib.request.urlopen('http://127.0.0.1:{port}/', timeout=1)"),
          r"compute_reward raised URLError at line 3: .*Permission denied")
    no_connection(listener)


def test_seccomp_refuses_new_processes(open_box: Sandbox, tmp_path: Path) -> None:
    marker = f"/tmp/sandbox-{uuid.uuid4().hex}"
    fails(open_box, fn(f"import os\nassert os.system('touch {marker}') == 0"), "AssertionError at line 3")
    fails(open_box, fn("import subprocess\nsubprocess.run(['true'])"), r"PermissionError at line 3: \[Errno 1\]")
    fails(open_box, fn(f"import numpy\nassert numpy.f2py.os.system('touch {marker}') == 0"), "AssertionError at line 3")
    fails(open_box, fn("import os\nwhile True:\n    os.fork()"), r"PermissionError at line 4: \[Errno 1\]")
    walk = ("w = [c for c in ().__class__.__bases__[0].__subclasses__() if c.__name__ == '_wrap_close'][0]\n"
            f"assert w.__init__.__globals__['system']('touch {marker}') == 0")
    fails(open_box, fn(walk), "AssertionError at line 3")
    assert not os.path.exists(marker)


def test_seccomp_and_the_user_drop_keep_the_host_alive(open_box: Sandbox, bare_box: Sandbox) -> None:
    kill = fn("import os, signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nos.kill(os.getppid(), 9)")
    fails(open_box, kill, r"PermissionError at line 4")  # seccomp: kill only of itself
    ctypes_kill = fn("import os, numpy\nassert numpy.ctypeslib.ctypes.CDLL(None).kill(os.getppid(), 9) == 0")
    fails(open_box, ctypes_kill, "AssertionError at line 3")
    fails(bare_box, kill, r"PermissionError at line 4")  # no seccomp: nobody cannot signal root
    assert os.getpid() > 0  # still here


# ---- layer: unprivileged user ---------------------------------------------------------------------------------------

def test_the_worker_runs_as_nobody_and_cannot_write_the_repo(bare_box: Sandbox) -> None:
    if os.geteuid() != 0:
        pytest.skip("the drop to nobody happens only for a root host")
    target = REPO / f"sandbox-escape-{uuid.uuid4().hex}"
    try:
        bare_box.load(fn("import os\nreturn torch.full((len(action),), float(os.getuid() + os.getgid())), {}"))
        assert bare_box(*batch(2))[0].tolist() == [2 * 65534.0] * 2
        fails(bare_box, fn(f"open('{target}', 'w').write('x')"), r"PermissionError at line 2: \[Errno 13\]")
        fails(bare_box, fn(f"obs['state'].numpy().tofile('{target}')"), r"PermissionError at line 2")
        fails(bare_box, fn(f"torch.save(obs['state'], '{target}')"), r"compute_reward raised \w+Error")
        fails(bare_box, fn("import numpy\nnumpy.load('/etc/shadow')"), r"PermissionError at line 3")
        fails(bare_box, "open('" + str(target) + "', 'w')\n" + fn("return action.sum(-1), {}"),
              r"failed to load: PermissionError at line 1")
        assert not target.exists()
    finally:
        target.unlink(missing_ok=True)


# ---- layer: private /tmp --------------------------------------------------------------------------------------------

def test_the_worker_has_its_own_empty_tmp(open_box: Sandbox) -> None:
    marker = Path("/tmp") / f"robot-rl-host-{uuid.uuid4().hex}"
    left = Path("/tmp") / f"robot-rl-worker-{uuid.uuid4().hex}"
    layer = next(x for x in open_box.start() if x.name == "private filesystem")
    if not layer.active:
        pytest.skip(f"the private filesystem is not available here: {layer.detail}")
    marker.write_text("host")
    try:
        open_box.load(fn(f"import os\nopen('{left}', 'w').write('x')\n"
                         f"seen = float(os.path.exists('{marker}')) + 10.0 * float(os.path.exists('{left}'))\n"
                         "return torch.full((len(action),), seen), {}"))
        assert open_box(*batch(2))[0].tolist() == [10.0, 10.0]  # its own file yes, the host's no
        assert not left.exists()  # and what it wrote is not in the host's /tmp
    finally:
        marker.unlink(missing_ok=True)
        left.unlink(missing_ok=True)
    still_good(open_box)


# ---- layer: resource limits -----------------------------------------------------------------------------------------

def test_rlimits_contain_memory_files_and_descriptors(bare_box: Sandbox, box: Sandbox) -> None:
    fails(bare_box, fn("x = bytearray(2 << 30)"), "MemoryError at line 2")  # RLIMIT_AS 3.5 GiB, torch maps 3.1
    fails(box, fn("x = torch.ones(10000000000)\nreturn x[:len(action)], {}"), r"RuntimeError at line 2: .*alloc")
    fails(bare_box, fn("f = open('/tmp/sandbox-big-' + str(len(action)), 'wb')\nf.write(bytes(2 << 20))"),
          r"OSError at line 3: \[Errno 27\] File too large")  # RLIMIT_FSIZE 1 MiB
    fails(bare_box, fn("files = [open('/dev/null') for i in range(100)]"), r"OSError at line 2: \[Errno 24\]")
    os.unlink("/tmp/sandbox-big-16") if os.path.exists("/tmp/sandbox-big-16") else None


def test_rlimit_cpu_kills_a_spinning_batch_before_the_deadline(bare_box: Sandbox) -> None:
    bare_box.load(fn("x = 0\nwhile True:\n    x += 1"))
    limits = bare_box.limits
    bare_box.limits = dataclasses.replace(limits, deadline_s=20.0)  # RLIMIT_CPU (cpu_s = 1, whole seconds) alone
    try:
        start = time.monotonic()
        with pytest.raises(SandboxError, match=r"the reward process died \(killed by SIGXCPU \(CPU time limit\)\)"):
            bare_box(*batch(4))
        assert time.monotonic() - start < 20.0
    finally:
        bare_box.limits = limits
    still_good(bare_box)


def test_rlimit_nproc_and_the_deadline_contain_a_fork_bomb_without_seccomp(bare_box: Sandbox) -> None:
    bare_box.load(fn("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"))
    bare_box.start()
    group = bare_box.pid
    with pytest.raises(SandboxError, match=r"did not return within 2 s \(killed its process group\)"):
        bare_box(*batch(4))
    time.sleep(0.2)
    assert group is not None and alive_in_group(group) == []
    still_good(bare_box)


def alive_in_group(pgid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                found.append(int(entry))
    return found


# ---- layers: deadline, output cap ----------------------------------------------------------------------------------

def test_the_deadline_kills_an_infinite_loop_and_the_next_call_respawns(box: Sandbox) -> None:
    box.load(fn("x = 0\nwhile True:\n    x = x + 1"))
    old = box.pid
    start = time.monotonic()
    with pytest.raises(SandboxError, match=r"^compute_reward did not return within 3 s \(killed its process group\)$"):
        box(*batch(4))
    assert 3.0 <= time.monotonic() - start < 5.0
    assert old is not None and alive_in_group(old) == []
    still_good(box)
    assert box.pid != old


def test_a_stopped_or_exiting_worker_is_contained(open_box: Sandbox) -> None:
    fails(open_box, fn("import os, signal\nos.kill(os.getpid(), signal.SIGSTOP)"), "did not return within 3 s")
    fails(open_box, fn("import os\nos._exit(0)"), r"the reward process died \(exit status 0\)")


def test_output_floods_never_reach_the_host(box: Sandbox, open_box: Sandbox, capfd: pytest.CaptureFixture[str]) -> None:
    box.load(fn("print('x' * 100000000)\nreturn action.sum(-1), {}"))
    states, actions = batch(8)
    np.testing.assert_allclose(box(states, actions)[0], actions.sum(1), rtol=1e-6)
    open_box.load(fn("import os, sys\nos.write(1, b'y' * 10000000)\nsys.stderr.write('z' * 10000000)\n"
                     "return action.sum(-1), {}"))
    open_box(states, actions)
    out, err = capfd.readouterr()
    assert "xxx" not in out + err and "yyy" not in out + err and "zzz" not in out + err
    still_good(box)
    still_good(open_box)


def test_oversized_replies_are_rejected(bare_box: Sandbox, box: Sandbox) -> None:
    fails(box, fn("r = action.sum(-1)\nreturn r, {str(i): r for i in range(100)}"),
          "returned 100 components, over the limit of 64")
    fails(bare_box, fn("r = action.sum(-1)\nreturn r, {str(i): r for i in range(60)}"), n=1000,
          message=r"reply of \d+ bytes, over the limit of 65536")


# ---- layer: result checks -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "message"), [
    ("return torch.full((len(action),), float('nan')), {}", r"non-finite reward \(nan at index 0, 16 of 16\)"),
    ("r = action.sum(-1)\nr[3] = float('inf')\nreturn r, {}", r"non-finite reward \(inf at index 3, 1 of 16\)"),
    ("return torch.full((len(action),), 1e30), {}", r"reward 1e\+30 at index 0, over the bound 1e\+06"),
    ("r = action.sum(-1)\nreturn r, {'c': r / 0.0}", r"non-finite component 'c'"),
    ("return obs['state'], {}", r"reward of shape \[16, 39\], expected \[16\]"),
    ("return (obs['hand_pos'][:, 0] > 0).long(), {}", r"reward of dtype torch.int64, expected a floating dtype"),
    ("return action.sum(-1).to('meta'), {}", r"reward on device meta, expected cpu"),
    ("return [1.0] * len(action), {}", r"reward of type list, expected a torch.Tensor"),
    ("r = action.sum(-1)\nreturn r, {'c': r[:3]}", r"component 'c' of shape \[3\], expected \[16\]"),
    ("return action.sum(-1), {}, 1", r"must return reward or \(reward, components: dict\), got a tuple of 3"),
    ("return {'r': action.sum(-1)}", r"must return reward or \(reward, components: dict\), got dict"),
])
def test_result_checks(box: Sandbox, body: str, message: str) -> None:
    fails(box, fn(body), message)


def test_an_exception_on_rare_inputs_names_the_line(box: Sandbox) -> None:
    box.load(fn("if (obs['hand_pos'] > 0.5).any():\n    raise ValueError('hand above 0.5 m')\n"
                "return action.sum(-1), {}"))
    states, actions = batch(16)
    np.testing.assert_allclose(box(states, actions)[0], actions.sum(1), rtol=1e-6)
    with pytest.raises(SandboxError, match=r"^compute_reward raised ValueError at line 3: hand above 0.5 m$"):
        box(*batch(16, high=True))
    np.testing.assert_allclose(box(states, actions)[0], actions.sum(1), rtol=1e-6)
    still_good(box)


# ---- layer: restricted globals / restore after each call ---------------------------------------------------------

def test_monkey_patching_torch_does_not_stick(open_box: Sandbox) -> None:
    host_sum = torch.sum
    open_box.load(fn("torch.sum = lambda *a, **k: torch.zeros(len(action))\n"
                     "torch.Tensor.sum = lambda *a, **k: torch.zeros(len(action))\n"
                     "torch.linalg.norm = None\nreturn action.sum(-1), {}"))
    reward, _ = open_box(*batch(8))
    assert reward.tolist() == [0.0] * 8  # patched within its own call
    assert torch.sum is host_sum
    still_good(open_box)  # uses Tensor.sum and torch.linalg.norm: restored after the call


def test_gated_code_gets_only_allow_listed_builtins(open_box: Sandbox, box: Sandbox) -> None:
    probe = "import builtins\nreturn torch.full((len(action),), float(len(dir(builtins)))), {}"
    open_box.load(fn(probe))
    assert open_box(*batch(2))[0][0] > 100  # gate off: the whole builtins module
    box.load(fn("return torch.full((len(action),), float(len([abs, min, max]))), {}"))
    assert box(*batch(2))[0].tolist() == [3.0, 3.0]
    with pytest.raises(GateError):
        box.load(fn(probe))
    still_good(box)


# ---- CodeReward on the sandbox ------------------------------------------------------------------------------------

def test_code_reward_can_gate_its_file(tmp_path: Path) -> None:
    path = tmp_path / "reward.py"
    path.write_text(GATE_REJECTS["dunder walk"][0])
    with pytest.raises(GateError, match=rf"^{re.escape(str(path))}: line 2: attribute '__class__' is not allowed; "
                                         "line 2: attribute '__bases__' is not allowed; "
                                         "line 2: attribute '__subclasses__' is not allowed$"):
        CodeReward(str(path), SPEC, gate=True)
    path.write_text(GOOD)
    with CodeReward(str(path), SPEC, timeout=5.0, gate=True) as code:
        states, actions = batch(8)
        np.testing.assert_allclose(code(states, actions)[0], good_reference(states, actions), rtol=1e-5, atol=1e-6)
    with pytest.raises(RewardCodeError, match="no such reward code file"):
        CodeReward(str(tmp_path / "missing.py"), SPEC)


# ---- replies as LLMs write them: constants and helpers, bare rewards, NumPy, per-sample code -------------------------

def test_constants_and_helpers_are_made_afresh_every_call(box: Sandbox) -> None:
    box.load("SEEN = []\n\ndef count():\n    SEEN.append(1)\n    return len(SEEN)\n\n"
             + fn("return action.sum(-1) * 0.0 + count()"))
    for _ in range(2):  # no state survives a call: the module runs again in fresh globals
        reward, components = box(*batch(8))
        assert reward.tolist() == [1.0] * 8 and components == {} and not box.per_sample
    still_good(box)


def test_per_sample_code_runs_row_by_row_and_missing_components_count_zero(box: Sandbox) -> None:
    box.load(fn("d = float(torch.norm(obs['hand_pos'] - obs['obj_pos']))\n"
                "parts = {'near': 1.0} if d < 0.5 else {}\nreturn -d, parts"))
    states, actions = batch(64)
    reward, components = box(states, actions)
    d = np.linalg.norm(states[:, 0:3] - states[:, 4:7], axis=1)
    np.testing.assert_allclose(reward, -d, rtol=1e-5)
    np.testing.assert_array_equal(components["near"], (d < 0.5).astype(np.float32))
    assert box.per_sample and 0 < components["near"].sum() < 64
    reward, _ = box(states[:1], actions[:1])  # a batch of one: still per sample
    np.testing.assert_allclose(reward, -d[:1], rtol=1e-5)
    still_good(box)


def test_numpy_code_gets_arrays_and_its_float64_results_come_back(box: Sandbox) -> None:
    box.load(fn("x = obs['hand_pos'][:, 0]\nreturn np.tanh(x), {'ones': np.ones(len(action))}"))
    states, actions = batch(16)
    reward, components = box(states, actions)
    np.testing.assert_allclose(reward, np.tanh(states[:, 0]), rtol=1e-6)
    assert reward.dtype == np.float32 and components["ones"].tolist() == [1.0] * 16
    still_good(box)


def test_a_batched_error_is_not_hidden_by_the_per_sample_attempt(box: Sandbox) -> None:
    fails(box, fn("return obs['handle_angle'].sum(-1)"), r"^compute_reward raised KeyError at line 2: 'handle_angle'$")
    fails(box, fn("return obs['state'][:, :2], {}"), r"reward of shape \[16, 2\], expected \[16\]")


def test_ungated_code_finds_np_without_importing_it(open_box: Sandbox) -> None:
    open_box.load(fn("return np.sqrt(np.square(obs['hand_pos'][:, 0])), {}"))
    states, actions = batch(8)
    np.testing.assert_allclose(open_box(states, actions)[0], np.abs(states[:, 0]), rtol=1e-6)
    still_good(open_box)


def test_large_batches_go_in_calls_of_rows_per_call_and_join_back() -> None:
    code = fn("d = float(torch.norm(obs['hand_pos'] - obs['obj_pos']))\nreturn -d, ({'near': 1.0} if d < 0.3 else {})")
    states, actions = batch(40)
    states[:16, 0:3] = states[:16, 4:7] + 1.0  # no row of the first call is near
    with Sandbox(code, SPEC, SandboxLimits(deadline_s=5.0, rows_per_call=16)) as b:
        reward, components = b(states, actions)
        pid = b.pid
    d = np.linalg.norm(states[:, 0:3] - states[:, 4:7], axis=1)
    np.testing.assert_allclose(reward, -d, rtol=1e-5)
    np.testing.assert_array_equal(components["near"], (d < 0.3).astype(np.float32))
    assert components["near"][:16].sum() == 0 and components["near"].sum() > 0 and pid is not None
