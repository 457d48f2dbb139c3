"""The sandbox's worker process: runs reward code on batches it reads from a pipe. Started by ``sandbox.Sandbox`` as
``python -I -B worker.py REQUEST_FD REPLY_FD`` with stdin/stdout/stderr on /dev/null, a clean environment and its own
process group; it imports nothing from ``robot_rl`` (the host's package stays out of its memory).

Start-up, before any reward code is read from the pipe's first message or run:
network namespace (``unshare``) -> rlimits -> ``import torch`` -> private filesystem (mount namespace, pivot_root
into a read-only root that holds only the interpreter, the import path and /usr, with a noexec tmpfs on /tmp) ->
drop to nobody (when root) -> ``RLIMIT_NOFILE`` -> seccomp filter -> compile the code -> ready reply listing each
layer as active or not (and why).

Running the code: gated code is a module of constants, helpers and ``compute_reward`` (``gate.py``), run afresh in
restricted globals (``torch``, ``math``, an ``np`` of allow-listed NumPy functions, allow-listed builtins) for every
batch, so nothing carries over between calls. ``compute_reward`` may return a reward or ``(reward, components)``,
tensors or NumPy arrays (NumPy code, which names ``np`` and not ``torch``, gets arrays); code written for one sample
at a time is run row by row (``Worker.evaluate``).

Protocol. Host -> worker: ``<Q`` length + pickle (``{"op": "init" | "load", ...}``: the host is trusted) or a batch
``<4sIII`` (``b"BATC"``, N, D, A) + float32 states ``[N, D]`` + float32 actions ``[N, A]``. Worker -> host (never
pickle: the host must not unpickle what reward code could forge): ``<QI`` (frame length, header length) + JSON
header + raw float32 data of the items the header lists.

Length: the worker's half of one security boundary, beside ``sandbox.py``; it runs as a script that imports nothing
from ``robot_rl`` (the host's package stays out of its memory), so it cannot be split into modules of the package.
"""

from __future__ import annotations

import ctypes
import errno
import json
import math
import os
import pickle
import resource
import signal
import struct
import sys
import traceback
import types
from typing import Any

_LEN = struct.Struct("<Q")
_BATCH = struct.Struct("<4sIII")
_REPLY = struct.Struct("<QI")
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_CLONE_THREAD = 0x00010000
_CLONE_NEWNS = 0x00020000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REMOUNT = 0x1, 0x2, 0x4, 0x8, 0x20
_MS_NOATIME, _MS_NODIRATIME, _MS_BIND, _MS_REC, _MS_PRIVATE = 0x400, 0x800, 0x1000, 0x4000, 0x40000
_MS_RELATIME = 1 << 21
_ST_NOEXEC, _ST_NOATIME, _ST_NODIRATIME, _ST_RELATIME = 0x8, 0x400, 0x800, 0x1000
_MNT_DETACH = 2
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
TMP_MB = 16
SYSTEM_DIRS = ("/usr",)
"""Kept (read-only) in the worker's root besides the interpreter and its import path: shared libraries that torch or
numpy may still load. No /etc, no /proc, no /home, no /var, no /run, no /dev/shm."""
DEVICES = ("/dev/null", "/dev/zero", "/dev/urandom")
ROOT_MOUNT_POINTS = ("/mnt", "/media", "/srv", "/opt", "/home", "/var", "/tmp")
"""Where the new root is mounted before ``pivot_root``: the first that exists and holds none of the kept trees."""
NOBODY = 65534


class Worker:
    def __init__(self, request_fd: int, reply_fd: int, shared_fd: int = -1) -> None:
        self.rfd, self.wfd = request_fd, reply_fd
        self.shared = None
        if shared_fd >= 0:  # the host's sealed memfd for batches: read-only here is enough
            import mmap

            self.shared = mmap.mmap(shared_fd, 0)
            os.close(shared_fd)
        self.pid = os.getpid()
        self.layers: list[dict[str, Any]] = []
        self.buffer = bytearray(0)
        self.fn: Any = None
        self.code: Any = None
        self.load_error: str | None = None
        self.snapshots: list[tuple[Any, dict[str, Any]]] = []

    # ---- start-up -------------------------------------------------------------------------------------------------

    def start(self) -> None:
        config = self.read_message()
        self.config = config
        off = set(config["disable"])
        self.layer("network namespace", "netns" not in off, self.unshare_net)
        self.layer("resource limits", "rlimits" not in off, lambda: self.set_limits(config["limits"]))
        import torch

        try:  # pyseccomp finds libseccomp through ldconfig's cache: load it while /etc is still there
            import pyseccomp  # noqa: F401
        except Exception:
            pass  # the seccomp layer reports it
        # import dirs stay reachable through descriptors opened now, should the mount hide them (a checkout or venv
        # under /tmp) or the drop lock them out (a Python under /root)
        held = {p: os.open(p, os.O_RDONLY | os.O_DIRECTORY) for p in sys.path if os.path.isdir(p)}
        # before the drop: mounting needs the capabilities (of the user namespace, for a user who is not root)
        self.layer("private filesystem", "fs" not in off, lambda: self.private_fs(held))
        self.torch = torch
        torch.set_num_threads(int(config["threads"]))
        self.layer("unprivileged user", "user" not in off, self.drop_user)
        moved = self.keep_import_path(held)
        if moved:
            self.layers[-1]["detail"] += f"; {moved} import dirs reached through descriptors opened before"
        if "rlimits" not in off:
            nofile = int(config["limits"]["open_files"])
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
        self.snapshot()
        self.layer("seccomp filter", "seccomp" not in off, self.load_seccomp)
        self.load(config["source"], config["filename"], config["gate"])
        self.send({"ready": True, "layers": self.layers, "error": self.load_error})

    def layer(self, name: str, wanted: bool, apply: Any) -> None:
        if not wanted:
            self.layers.append({"name": name, "active": False, "detail": "switched off (tests only)"})
            return
        try:
            detail = apply()
            self.layers.append({"name": name, "active": True, "detail": detail})
        except Exception as e:  # the kernel or the library refused: report the layer inactive, run without it
            self.layers.append({"name": name, "active": False, "detail": f"unavailable: {' '.join(str(e).split())}"})

    def unshare_net(self) -> str:
        libc = ctypes.CDLL(None, use_errno=True)
        root = os.geteuid() == 0
        flags = _CLONE_NEWNET if root else _CLONE_NEWUSER | _CLONE_NEWNET
        uid, gid = os.geteuid(), os.getegid()  # before: in the new namespace they read as the overflow id
        if libc.unshare(flags) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"unshare({'CLONE_NEWNET' if root else 'CLONE_NEWUSER|CLONE_NEWNET'}): "
                                f"{os.strerror(code)}")
        if not root:  # map the user's own ids to themselves, or files it creates (the private /tmp) fail (EOVERFLOW)
            for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
                with open(f"/proc/self/{name}", "w") as f:
                    f.write(text)
        return "new network namespace: no interfaces up, loopback down" + ("" if root else " (in a user namespace)")

    def private_fs(self, held: dict[str, int]) -> str:
        """A mount namespace of its own whose root is a fresh read-only tmpfs holding, read-only and at their own
        paths, only the interpreter, the import path and /usr (bind mounts), /dev/null, /dev/zero, /dev/urandom, and
        an empty ``noexec`` tmpfs on /tmp: host files (/etc, /proc, /home, ...) are not there, nothing written
        outlives the worker, and nothing written can be mapped executable (no ``dlopen`` of a dropped library).
        ``held``: the import directories opened before (kept for the fallback when this layer is unavailable); on
        success they are closed, so nothing in the worker still points into the host's tree."""
        libc = ctypes.CDLL(None, use_errno=True)
        pivot = _SYS_PIVOT_ROOT.get(os.uname().machine)
        if pivot is None:
            raise OSError(errno.ENOSYS, f"pivot_root: unknown syscall number on {os.uname().machine}")

        def check(result: int, what: str) -> None:
            if result != 0:
                code = ctypes.get_errno()
                raise OSError(code, f"{what}: {os.strerror(code)}")

        keep = sorted({os.path.realpath(p) for p in [*held, sys.prefix, sys.base_prefix, sys.exec_prefix, *SYSTEM_DIRS]
                       if os.path.isdir(p)})
        outer = [p for p in keep if not any(p != q and p.startswith(q.rstrip("/") + "/") for q in keep)]
        # the new root's mount point: an existing directory that none of the kept trees lies in (only this namespace
        # sees the mount; nothing is written to the host)
        root = next((m for m in ROOT_MOUNT_POINTS if os.path.isdir(m) and not os.path.islink(m)
                     and not any(p == m or p.startswith(m + "/") or m.startswith(p + "/") for p in outer)), None)
        if root is None:
            raise OSError(errno.ENOENT, f"no mount point for the new root among {', '.join(ROOT_MOUNT_POINTS)}")
        check(libc.unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
        check(libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None), "mount --make-rprivate /")
        check(libc.mount(b"tmpfs", root.encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV, b"size=1m,mode=0755"),
              "mount tmpfs (new root)")
        os.makedirs(root + "/tmp")
        check(libc.mount(b"tmpfs", (root + "/tmp").encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC,
                         f"size={TMP_MB}m,mode=1777".encode()), "mount tmpfs /tmp")
        for name in ("lib", "lib64", "bin", "sbin"):  # merged-/usr systems: /lib -> usr/lib, as on the host
            if os.path.islink("/" + name):
                os.symlink(os.readlink("/" + name), f"{root}/{name}")
        for path in outer:
            os.makedirs(root + path, mode=0o755, exist_ok=True)
            self.bind_read_only(libc, check, path, root + path, os.statvfs(path).f_flag)
        os.makedirs(root + "/dev", mode=0o755)
        for dev in DEVICES:
            if os.path.exists(dev):
                open(root + dev, "w").close()
                self.bind_read_only(libc, check, dev, root + dev, os.statvfs(dev).f_flag, device=True)
        check(libc.mount(None, root.encode(), None, _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV, None),
              "remount the new root read-only")
        os.chdir(root)
        check(libc.syscall(pivot, b".", b"."), "pivot_root")
        check(libc.umount2(b".", _MNT_DETACH), "umount the host's root")
        os.chdir("/")
        for fd in held.values():  # nothing in the worker may still point into the host's tree
            os.close(fd)
        held.clear()
        return (f"new mount namespace, pivot_root into a read-only root with {len(outer)} read-only trees (the "
                f"interpreter, its import path, /usr) and /dev/null, zero, urandom; /tmp an empty {TMP_MB} MiB noexec "
                "tmpfs; no /etc, /proc, /home, /dev/shm or other writable path of the host")

    @staticmethod
    def bind_read_only(libc: Any, check: Any, source: str, target: str, st_flags: int, device: bool = False) -> None:
        """Bind ``source`` on ``target`` and make it read-only, nosuid (nodev unless a device), keeping the flags the
        kernel locks in a user namespace (noexec and the atime mode of the mount it comes from)."""
        check(libc.mount(source.encode(), target.encode(), None, _MS_BIND | (0 if device else _MS_REC), None),
              f"bind {target}")
        flags = _MS_BIND | _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | (0 if device else _MS_NODEV)
        flags |= _MS_NOEXEC if st_flags & _ST_NOEXEC else 0
        flags |= _MS_NOATIME if st_flags & _ST_NOATIME else 0
        flags |= _MS_NODIRATIME if st_flags & _ST_NODIRATIME else 0
        flags |= _MS_RELATIME if st_flags & _ST_RELATIME else 0
        check(libc.mount(None, target.encode(), None, flags, None), f"remount {target} read-only")

    def set_limits(self, limits: dict[str, Any]) -> str:
        memory = int(limits["memory_mb"]) << 20
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        total = int(limits["cpu_total_s"])
        resource.setrlimit(resource.RLIMIT_CPU, (total, total))
        fsize = int(limits["file_mb"]) << 20
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an oversized write fails with EFBIG instead of killing
        nproc = int(limits["processes"])
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        return (f"AS {limits['memory_mb']} MiB, CPU {limits['cpu_s']:g} s per batch ({total} s in all), "
                f"FSIZE {limits['file_mb']} MiB, NOFILE {limits['open_files']}, NPROC {nproc}")

    def drop_user(self) -> str:
        if os.geteuid() != 0:
            return f"already unprivileged (uid {os.getuid()})"
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        try:
            os.setuid(0)
        except PermissionError:
            pass
        else:
            raise OSError("setuid(0) still succeeds after the drop")
        return f"uid/gid {NOBODY} (nobody), no supplementary groups (RLIMIT_NPROC binds)"

    @staticmethod
    def keep_import_path(held: dict[str, int]) -> int:
        """sys.path directories the worker can no longer reach by name (hidden by the private /tmp, or under a
        directory nobody cannot enter, e.g. /root/.pyenv): reach them through descriptors opened before."""
        moved: dict[str, str] = {}
        for i, entry in enumerate(sys.path):
            fd = held.pop(entry, None)
            if fd is None:
                continue
            if os.access(entry, os.R_OK | os.X_OK):
                os.close(fd)
            else:
                sys.path[i] = moved[entry] = f"/proc/self/fd/{fd}"
        for module in list(sys.modules.values()):  # packages imported before the drop (encodings, ...)
            path = getattr(module, "__path__", None)
            if isinstance(path, list):
                for j, p in enumerate(path):
                    for old, new in moved.items():
                        if isinstance(p, str) and p.startswith(old + os.sep):
                            path[j] = new + p[len(old):]
        sys.path_importer_cache.clear()
        return len(moved)

    def load_seccomp(self) -> str:
        import pyseccomp as sc

        eperm = sc.ERRNO(errno.EPERM)
        f = sc.SyscallFilter(sc.ALLOW)
        f.set_attr(sc.Attr.CTL_TSYNC, 1)  # every thread torch has started, not only this one
        f.add_rule(sc.ERRNO(errno.EACCES), "socket")  # no family needed: reward math never opens a socket
        f.add_rule(sc.ERRNO(errno.EACCES), "socketpair")
        f.add_rule(eperm, "clone", sc.Arg(0, sc.MASKED_EQ, _CLONE_THREAD, 0))  # threads yes, processes no
        f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")  # flags sit behind a pointer: glibc falls back to clone
        for name in ("fork", "vfork", "execve", "execveat", "ptrace", "process_vm_readv", "process_vm_writev",
                     "setsid", "setpgid", "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "bpf",
                     "perf_event_open", "userfaultfd", "io_uring_setup", "keyctl", "add_key", "request_key", "tkill",
                     "kexec_load", "init_module", "finit_module", "reboot", "swapon", "swapoff", "acct", "setuid",
                     "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups"):
            f.add_rule(eperm, name)
        f.add_rule(eperm, "kill", sc.Arg(0, sc.NE, self.pid))  # only itself: not the host, not other pids
        f.add_rule(eperm, "tgkill", sc.Arg(0, sc.NE, self.pid))
        f.load()
        return ("denied: socket, fork/vfork/clone of a process, exec, ptrace, setsid, namespaces, mount, setuid; "
                "kill only of itself")

    def snapshot(self) -> None:
        """Copies of the namespaces reward code could monkey-patch; restored after every call."""
        import builtins

        torch = self.torch
        for obj in (torch, torch.linalg, torch.nn.functional, torch.special, math, builtins):
            self.snapshots.append((obj, dict(vars(obj))))
        self.tensor_dict = dict(vars(torch.Tensor))

    def load(self, source: str, filename: str, gated: bool) -> None:
        """Compile the code; with the gate on, keep only the module's code object (run in fresh globals every call:
        its constants and helpers, then ``compute_reward``)."""
        self.fn = self.code = None
        self.filename, self.gated, self.load_error = filename, gated, None
        self.mode: str | None = None  # "batch" or "row" once a batch of 2+ rows has shown which
        self.per_sample = False
        import linecache

        # the source came over the pipe and its file is not in the worker's root: tracebacks and inspect.getsource
        # (torch.jit.script) read it from here (mtime None: checkcache never drops it)
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        try:
            module = compile(source, filename, "exec")
            names = _global_names(module)
            self.numpy_inputs = ("np" in names or "numpy" in names) and "torch" not in names
            if gated:  # the gate allowed a docstring, constants and functions: run them afresh every call
                found = [c for c in module.co_consts if isinstance(c, types.CodeType) and c.co_name == "compute_reward"]
                if len(found) != 1:
                    raise ValueError("defines no function compute_reward(obs, action)")
                self.code = module
            else:
                import numpy

                scope: dict[str, Any] = {"__name__": "reward", "__builtins__": __builtins__, "torch": self.torch,
                                         "math": math, "np": numpy}
                exec(module, scope)
                self.fn = scope.get("compute_reward")
                if not callable(self.fn):
                    self.load_error = "defines no function compute_reward(obs, action)"
        except BaseException as e:
            self.load_error = f"failed to load: {self.one_line(e)}"

    # ---- batches --------------------------------------------------------------------------------------------------

    def serve(self) -> None:
        while True:
            head = self.read_exact(_LEN.size, allow_eof=True)
            if head is None:
                return
            if head[:4] in (b"BATC", b"SHMB"):
                rest = self.read_exact(_BATCH.size - _LEN.size)
                assert rest is not None
                kind, n, d, a = _BATCH.unpack(head + rest)
                self.batch(n, d, a, kind == b"SHMB")
            else:
                message = pickle.loads(self.read_exact(_LEN.unpack(head)[0]) or b"")
                self.load(message["source"], message["filename"], message["gate"])
                self.send({"ready": True, "layers": self.layers, "error": self.load_error})

    def batch(self, n: int, d: int, a: int, shared: bool) -> None:
        import numpy as np

        torch = self.torch
        size = 4 * n * (d + a)
        if shared and self.shared is not None:
            flat = np.frombuffer(self.shared, np.float32, n * (d + a))  # the host writes again after the reply
        else:
            if len(self.buffer) < size:
                self.buffer = bytearray(size)
            self.read_into(memoryview(self.buffer)[:size])
            flat = np.frombuffer(self.buffer, np.float32, n * (d + a))
        state = torch.from_numpy(flat[:n * d].reshape(n, d))
        obs = {"state": state}
        for name, start, stop in self.config["slices"]:
            obs[name] = state[:, start:stop]
        action = torch.from_numpy(flat[n * d:].reshape(n, a))
        if self.load_error is not None:
            self.send({"error": self.load_error})
            return
        limit = math.ceil(self.cpu_used() + float(self.config["limits"]["cpu_s"]))
        if "rlimits" not in self.config["disable"]:
            hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
            resource.setrlimit(resource.RLIMIT_CPU, (min(limit, hard), hard))
        try:
            fn = self.fn
            if fn is None:
                scope = self.globals()
                exec(self.code, scope)
                fn = scope["compute_reward"]
            out = self.evaluate(fn, obs, action, n)
            reply, data = self.describe(out, n)
        except BaseException as e:
            reply, data = {"error": f"compute_reward raised {self.one_line(e)}"}, []
        if os.getpid() != self.pid:  # a process the reward code forked (seccomp off): never answer for the worker
            os._exit(0)
        # gated code cannot assign attributes or reach a namespace dict, so only ungated code pays for the check
        reply["tampered"] = False if self.gated else self.restore()
        reply["cpu"] = self.cpu_used()
        reply["per_sample"] = self.per_sample
        self.send(reply, data)

    def evaluate(self, fn: Any, obs: dict[str, Any], action: Any, n: int) -> Any:
        """``fn``'s result on the batch: called once on it (batched code), or row by row when that fails or gives
        no reward per row (per-sample code: each row's terms without the batch dimension, a number back). Which of
        the two is fixed by the first batch of 2+ rows. NumPy code (it names ``np`` and not ``torch``) gets arrays."""
        if self.numpy_inputs:
            obs = {k: v.numpy() for k, v in obs.items()}
            action = action.numpy()
        self.per_sample = self.mode == "row"
        if self.mode == "row":
            return self.rows(fn, obs, action, n)
        first: Exception | None = None
        try:
            out = fn(obs, action)
        except Exception as e:
            if self.mode == "batch":
                raise
            first, out = e, None
        else:
            reward = out[0] if isinstance(out, tuple) and len(out) == 2 else out
            if self.mode == "batch" or tuple(getattr(reward, "shape", ())) == (n,):
                if n > 1:
                    self.mode = "batch"
                return out
        try:
            result = self.rows(fn, obs, action, n)
        except Exception:
            if first is not None:
                raise first from None
            return out  # describe() says what is wrong with the batched result
        if n > 1:
            self.mode = "row"
        self.per_sample = True
        return result

    def rows(self, fn: Any, obs: dict[str, Any], action: Any, n: int) -> tuple[Any, dict[str, Any]]:
        """Per-sample code, row by row: reward [n] and components [n] (0 in rows where a component is missing)."""
        import numpy as np

        rewards = np.zeros(n)
        components: dict[Any, Any] = {}
        for i in range(n):
            out = fn({k: v[i] for k, v in obs.items()}, action[i])
            reward, parts = out if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict) else (out, {})
            rewards[i] = _number(reward, "reward", i)
            for key, value in parts.items():
                column = components.get(key)
                if column is None:
                    column = components[key] = np.zeros(n)
                column[i] = _number(value, f"component '{key}'", i)
        torch = self.torch
        return torch.from_numpy(rewards), {k: torch.from_numpy(v) for k, v in components.items()}

    def globals(self) -> dict[str, Any]:
        import builtins

        if not hasattr(self, "allowed"):
            self.allowed = {k: getattr(builtins, k) for k in self.config["builtins"]}
            # torch's C code imports "torch" through the *calling* frame's builtins (e.g. for ``x < 0.05``): give it
            # already-loaded torch and numpy modules only. Reward code cannot name ``__import__`` itself (the gate).
            self.allowed["__import__"] = _loaded_modules_only
            self.np = _numpy_namespace(self.config.get("numpy", ()), self.config.get("numpy_linalg", ()))
        return {"torch": self.torch, "math": math, "np": self.np, "__builtins__": dict(self.allowed)}

    def describe(self, out: Any, n: int) -> tuple[dict[str, Any], list[Any]]:
        if isinstance(out, tuple | dict) and not (isinstance(out, tuple) and len(out) == 2
                                                  and isinstance(out[1], dict)):
            what = f"a tuple of {len(out)}" if isinstance(out, tuple) else type(out).__name__
            return {"error": f"compute_reward must return reward or (reward, components: dict), got {what}"}, []
        if not isinstance(out, tuple):
            out = (out, {})  # a bare reward
        items, data = [], []
        for key, value in [(None, out[0]), *out[1].items()]:
            if key is not None and not isinstance(key, str):
                return {"error": f"compute_reward returned a component key of type {type(key).__name__}, "
                                 "expected str"}, []
            item, blob = self.item(value, n)
            items.append([key, *item])
            if blob is not None:
                data.append(blob)
        return {"items": items}, data

    def item(self, value: Any, n: int) -> tuple[list[Any], Any]:
        """[type, dtype, shape, device, nbytes] and the float32 bytes (only for a floating CPU tensor of shape [n])."""
        import numpy as np

        torch = self.torch
        if isinstance(value, np.ndarray | np.generic) and value.dtype.kind in "biuf":  # NumPy code's result
            value = torch.from_numpy(np.array(value))
        if not isinstance(value, torch.Tensor):
            return [type(value).__name__, None, None, None, 0], None
        shape = list(value.shape)
        meta = ["Tensor", str(value.dtype), shape, str(value.device)]
        if value.device.type != "cpu" or not value.is_floating_point() or shape != [n]:
            return [*meta, 0], None
        array = value.detach().to(torch.float32).contiguous().numpy()
        return [*meta, array.nbytes], memoryview(array).cast("B")

    def restore(self) -> bool:
        """Undo monkey-patching of torch, math and builtins by the last call; True if there was any."""
        tampered = False
        for obj, saved in self.snapshots:
            now = vars(obj)
            try:
                same = now == saved
            except Exception:
                same = False
            if not same:
                tampered = True
                for key in [k for k in now if k not in saved]:
                    delattr(obj, key)
                for key, value in saved.items():
                    if now.get(key, saved) is not value:
                        setattr(obj, key, value)
        tensor = self.torch.Tensor
        if vars(tensor) != self.tensor_dict:
            tampered = True
            for key in [k for k in vars(tensor) if k not in self.tensor_dict]:
                delattr(tensor, key)
            for key, value in self.tensor_dict.items():
                if vars(tensor).get(key, self.tensor_dict) is not value:
                    setattr(tensor, key, value)
        return tampered

    # ---- helpers --------------------------------------------------------------------------------------------------

    @staticmethod
    def cpu_used() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    def one_line(self, exc: BaseException) -> str:
        frames = traceback.extract_tb(exc.__traceback__)
        where = next((f"line {f.lineno}" for f in reversed(frames) if f.filename == self.filename), "")
        text = " ".join(str(exc).split())[:500] or type(exc).__name__
        return f"{type(exc).__name__}{' at ' + where if where else ''}: {text}"

    def send(self, header: dict[str, Any], data: list[Any] | None = None) -> None:
        blob = json.dumps(header).encode()
        data = data or []
        total = _REPLY.size - _LEN.size + len(blob) + sum(len(d) for d in data)
        chunks = [memoryview(_REPLY.pack(total, len(blob))), memoryview(blob), *data]
        while chunks:
            written = os.writev(self.wfd, chunks)
            while chunks and written >= len(chunks[0]):
                written -= len(chunks[0])
                chunks.pop(0)
            if chunks and written:
                chunks[0] = chunks[0][written:]

    def read_message(self) -> dict[str, Any]:
        head = self.read_exact(_LEN.size)
        return dict(pickle.loads(self.read_exact(_LEN.unpack(head or b"")[0]) or b""))

    def read_exact(self, size: int, allow_eof: bool = False) -> bytes | None:
        out = bytearray(size)
        got = self.read_into(memoryview(out), allow_eof)
        return None if got < size else bytes(out)

    def read_into(self, view: memoryview, allow_eof: bool = False) -> int:
        got = 0
        while got < len(view):
            k = os.readv(self.rfd, [view[got:]])
            if k == 0:
                if allow_eof and got == 0:
                    return 0
                os._exit(0)  # the host went away mid-message
            got += k
        return got


def _loaded_modules_only(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (),
                         level: int = 0) -> Any:
    """``__import__`` for gated reward code's frames: torch and numpy modules that are already loaded, nothing else."""
    root = name.partition(".")[0]
    if level != 0 or root not in ("torch", "numpy") or name not in sys.modules:
        raise ImportError(f"import of '{name}' is not allowed in reward code")
    return sys.modules[name if fromlist else root]


def _numpy_namespace(names: Any, linalg: Any) -> types.SimpleNamespace:
    """``np`` for gated code: only the allow-listed NumPy functions and constants (``gate.NUMPY``), and
    ``np.linalg`` with only ``gate.NUMPY_LINALG``."""
    import numpy

    space = {k: getattr(numpy, k) for k in names if k != "linalg" and hasattr(numpy, k)}
    space["linalg"] = types.SimpleNamespace(**{k: getattr(numpy.linalg, k) for k in linalg})
    return types.SimpleNamespace(**space)


def _global_names(code: types.CodeType) -> set[str]:
    """Every global name the module's code (its functions included) reads (not attribute names: ``x.numpy()``)."""
    import dis

    names = {str(i.argval) for i in dis.get_instructions(code) if i.opname in ("LOAD_GLOBAL", "LOAD_NAME")}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _number(value: Any, what: str, row: int) -> float:
    """One row's reward or component as a float: a number, or anything with one element (0-d tensor, array)."""
    if isinstance(value, bool | int | float):
        return float(value)
    shape = getattr(value, "shape", None)
    if shape is not None and math.prod(tuple(shape)) == 1 and hasattr(value, "item"):
        return float(value.item())
    kind = f"shape {list(shape)}" if shape is not None else f"type {type(value).__name__}"
    raise TypeError(f"per sample (row {row}), compute_reward returned {what} of {kind}, expected a number")


def main() -> None:
    worker = Worker(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else -1)
    try:
        worker.start()
    except BaseException as e:  # report a start-up failure on the pipe; stderr goes nowhere
        worker.send({"ready": False, "error": f"the sandbox worker failed to start: {type(e).__name__}: {e}"})
        raise
    worker.serve()


if __name__ == "__main__":
    main()
