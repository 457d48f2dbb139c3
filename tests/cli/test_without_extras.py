"""The CLI without the optional extras (``ray``, ``dds``, ``interop``): every command's parser builds, a plain command
runs, and a command that needs a missing extra says which in one line.

Run in a fresh interpreter where importing the extras' top modules fails, as in an environment that never installed
them (e.g. ``.venv-isaaclab``, where building the parser once imported ``cyclonedds`` for ``robot-rl actor``'s flags and
so broke every command)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXTRAS = ("cyclonedds", "ray", "minari", "pyarrow", "av", "pandas", "rclpy")


def _run(body: str) -> subprocess.CompletedProcess[str]:
    blocked = ", ".join(repr(m) for m in EXTRAS)
    code = textwrap.dedent(f"""
        import sys
        for name in ({blocked},):
            sys.modules[name] = None  # `import name` now raises ImportError, as if not installed
    """) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_every_parser_builds_and_help_prints_without_extras():
    res = _run("""
        from robot_rl.cli.main import build_parser
        parser = build_parser()
        names = parser._subparsers._group_actions[0].choices
        assert {"actor", "learner", "collect", "train", "relabel"} <= set(names), sorted(names)
        for name in names:
            try:
                parser.parse_args([name, "--help"])
            except SystemExit as e:
                assert e.code == 0, name
        print("parsers", len(names))
    """)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "parsers" in res.stdout


def test_commands_that_need_an_extra_say_which(tmp_path):
    res = _run(f"""
        from robot_rl.cli.main import main
        code = main(["actor", "--spec", "{tmp_path}/spec.json", "--spool", "{tmp_path}/spool"])
        print("exit", code)
    """)
    assert "exit 2" in res.stdout, res.stdout + res.stderr[-2000:]
    assert "cyclonedds" in res.stderr and "Traceback" not in res.stderr, res.stderr[-2000:]
