"""``robot-rl sweep``: a grid of ``robot-rl train`` or ``robot-rl pipeline`` jobs (tasks x seeds x reward sources,
or any ``--set`` keys), each in its own run folder, as Ray tasks or one after another, gathered into one table and
one plot.

A job is ``robot-rl COMMAND ARGS --out OUT/JOB --set KEY=VALUE ...`` run as a child process (its own interpreter:
nothing leaks between jobs, a crash fails that job only), with ``OMP_NUM_THREADS`` set to its CPU share both on
Ray and sequentially, so the same job gives the same numbers either way. On Ray each job is a task asking for
``num_cpus`` CPUs and, when the cluster has GPUs, one GPU.

Resumable: the sweep's own records live in ``OUT/.sweep/`` (``JOB.log``, ``JOB.started``, ``JOB.json``), never in
a run folder. A job with ``JOB.json`` (written by the job itself after its command succeeded), or whose run folder
holds ``eval.json`` / ``summary.json``, is done and skipped; a started job without them (killed worker or driver)
has its run folder removed and runs again; a run folder the sweep did not start is refused, not deleted.

Results: ``OUT/results.csv`` (one row per job), ``OUT/results.md`` (per job, and mean +- std over seeds per
setting) and ``OUT/results.png`` (a bar per setting, a dot per seed). A job's numbers are the last row of its
``metrics.jsonl``, then its ``eval.json``, then its ``summary.json`` (later ones win on equal keys).
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

COMMANDS = ("train", "pipeline")
DONE_FILES = ("eval.json", "summary.json")
STATE_DIR = ".sweep"
DEFAULT_METRICS = ("eval/success_rate", "eval/return_mean")
KEYS = {"command", "out", "args", "set", "grid", "seed_key", "metrics", "resources", "ray"}


@dataclass(frozen=True)
class Job:
    name: str
    command: str
    argv: tuple[str, ...]
    """Arguments after the command, ``--out`` and the ``--set`` overrides included."""
    run_dir: str
    state_dir: str
    values: tuple[tuple[str, Any], ...]
    """This job's grid values, in the grid's key order."""
    threads: int
    cwd: str
    """The driver's working directory: relative paths in ``argv`` mean the same on every worker (shared file
    system)."""


@dataclass
class SweepConfig:
    command: str
    out: Path
    args: list[str]
    overrides: dict[str, Any]
    grid: dict[str, list[Any]]
    seed_key: str
    metrics: list[str]
    num_cpus: int
    num_gpus: str | float
    ray_address: str | None
    workers: int | None
    source: str = ""
    jobs: list[Job] = field(default_factory=list)


def _bad(path: Path, what: str) -> ValueError:
    return ValueError(f"{path}: {what}")


def parse_sweep(raw: dict[str, Any], path: Path, ray_address: str | None = None,
                out: Path | None = None) -> SweepConfig:
    unknown = sorted(set(raw) - KEYS)
    if unknown:
        raise _bad(path, f"unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(KEYS))})")
    command = raw.get("command", "train")
    if command not in COMMANDS:
        raise _bad(path, f"command: '{command}' is not one of {', '.join(COMMANDS)}")
    args = raw.get("args", [])
    if not isinstance(args, list):
        raise _bad(path, "args: must be a list of command-line arguments, e.g. [--dataset, d.h5]")
    args = [str(a) for a in args]
    if "--out" in args or any(a.startswith("--out=") for a in args):
        raise _bad(path, "args: no --out (each job's run folder is OUT/JOB; set the sweep's out instead)")
    overrides = raw.get("set") or {}
    grid = raw.get("grid") or {}
    if not isinstance(overrides, dict):
        raise _bad(path, "set: must map config keys to values, e.g. {steps: 2000}")
    if not isinstance(grid, dict) or not grid:
        raise _bad(path, "grid: must map config keys to lists of values, e.g. {seed: [0, 1, 2]}")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise _bad(path, f"grid.{key}: must be a non-empty list of values")
    seed_key = str(raw.get("seed_key", "seed"))
    metrics = raw.get("metrics", list(DEFAULT_METRICS))
    if not isinstance(metrics, list) or not metrics or not all(isinstance(m, str) for m in metrics):
        raise _bad(path, "metrics: must be a non-empty list of metric names, e.g. [eval/success_rate]")
    resources = raw.get("resources") or {}
    num_cpus = resources.get("num_cpus", 1)
    num_gpus = resources.get("num_gpus", "auto")
    if not isinstance(num_cpus, int) or num_cpus < 1:
        raise _bad(path, f"resources.num_cpus: must be an integer >= 1, got {num_cpus!r}")
    if num_gpus != "auto" and not (isinstance(num_gpus, int | float) and num_gpus >= 0):
        raise _bad(path, f"resources.num_gpus: must be 'auto' (one where the cluster has GPUs) or >= 0, "
                         f"got {num_gpus!r}")
    ray = raw.get("ray") or {}
    if not isinstance(ray, dict) or set(ray) - {"address", "workers"}:
        raise _bad(path, "ray: must be a mapping with address (ADDR or local) and optionally workers")
    out_dir = Path(out or raw.get("out") or "runs/sweep").absolute()
    cfg = SweepConfig(command, out_dir, args, overrides, {str(k): v for k, v in grid.items()}, seed_key,
                      list(metrics), num_cpus, num_gpus, ray_address or ray.get("address"), ray.get("workers"),
                      source=str(path))
    cfg.jobs = expand(cfg)
    return cfg


def read_sweep(path: Path, ray_address: str | None = None, out: Path | None = None) -> SweepConfig:
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"{path}: cannot read the sweep config ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise _bad(path, "a sweep config must be a mapping (command, args, grid, ...)")
    return parse_sweep(raw, path, ray_address, out)


def value_text(value: Any) -> str:
    """``value`` as the right side of ``--set key=value`` (parsed back as YAML by the command)."""
    if isinstance(value, str) and yaml.safe_load(value) == value:
        return value
    return json.dumps(value)


def _slug(value: Any) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "-", value_text(value)).strip("-") or "x"


def expand(cfg: SweepConfig) -> list[Job]:
    """One job per combination of the grid's values, named ``key=value__key=value`` (unique, file-safe)."""
    keys = list(cfg.grid)
    fixed = [f"{k}={value_text(v)}" for k, v in cfg.overrides.items() if k not in cfg.grid]
    jobs: list[Job] = []
    seen: dict[str, tuple[Any, ...]] = {}
    state = cfg.out / STATE_DIR
    for combo in itertools.product(*(cfg.grid[k] for k in keys)):
        name = "__".join(f"{k.split('.')[-1]}={_slug(v)}" for k, v in zip(keys, combo, strict=True))
        if name in seen:
            raise ValueError(f"{cfg.source}: grid values {seen[name]} and {combo} give the same job name '{name}'")
        seen[name] = combo
        sets = fixed + [f"{k}={value_text(v)}" for k, v in zip(keys, combo, strict=True)]
        run_dir = cfg.out / name
        argv = [*cfg.args, "--out", str(run_dir), *itertools.chain.from_iterable(("--set", s) for s in sets)]
        jobs.append(Job(name, cfg.command, tuple(argv), str(run_dir), str(state), tuple(zip(keys, combo, strict=True)),
                        cfg.num_cpus, os.getcwd()))
    return jobs


# -- one job (runs on a Ray worker or in this process) --------------------------------------------------------------

def job_done(job: Job) -> bool:
    return (Path(job.state_dir) / f"{job.name}.json").exists() or any(
        (Path(job.run_dir) / f).exists() for f in DONE_FILES)


def job_metrics(run_dir: str | Path) -> dict[str, Any]:
    """The numbers of a finished run: last ``metrics.jsonl`` row, then ``eval.json``, then ``summary.json``."""
    run = Path(run_dir)
    out: dict[str, Any] = {}
    lines = (run / "metrics.jsonl").read_text().splitlines() if (run / "metrics.jsonl").exists() else []
    for line in reversed(lines):
        try:
            out.update(json.loads(line))
            break
        except json.JSONDecodeError:  # a torn last line
            continue
    for name in DONE_FILES:
        if (run / name).exists():
            out.update(json.loads((run / name).read_text()))
    return out


def run_job(job: Job) -> dict[str, Any]:
    """Run ``job`` unless it is done; returns its record ``{name, status, seconds, metrics[, error]}``.

    Written to ``STATE/JOB.json`` on success, so a finished job is never run twice, whoever runs the sweep next."""
    state = Path(job.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    record_path = state / f"{job.name}.json"
    if record_path.exists():
        return {**json.loads(record_path.read_text()), "status": "skipped"}
    run_dir = Path(job.run_dir)
    if any((run_dir / f).exists() for f in DONE_FILES):
        return {"name": job.name, "status": "skipped", "seconds": 0.0, "metrics": job_metrics(run_dir)}
    started = state / f"{job.name}.started"
    if run_dir.exists() and any(run_dir.iterdir()):
        if not started.exists():
            return {"name": job.name, "status": "failed", "seconds": 0.0, "metrics": {},
                    "error": f"{run_dir} exists and was not started by this sweep; nothing deleted"}
        shutil.rmtree(run_dir)  # an interrupted job (killed worker or driver): start it anew
    started.write_text(time.strftime("%Y-%m-%dT%H:%M:%S%z") + "\n")
    env = {**os.environ, "OMP_NUM_THREADS": str(job.threads), "MKL_NUM_THREADS": str(job.threads)}
    cmd = [sys.executable, "-m", "robot_rl.cli.main", job.command, *job.argv]
    start = time.monotonic()
    with open(state / f"{job.name}.log", "w") as log:
        log.write(" ".join(cmd) + "\n")
        log.flush()
        code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                               cwd=job.cwd if os.path.isdir(job.cwd) else None)
    seconds = time.monotonic() - start
    if code != 0:
        tail = (state / f"{job.name}.log").read_text(errors="replace").strip().splitlines()[-1:] or [""]
        return {"name": job.name, "status": "failed", "seconds": seconds, "metrics": {},
                "error": f"exit status {code}: {tail[0][:300]} (log: {state / f'{job.name}.log'})"}
    record = {"name": job.name, "status": "done", "seconds": seconds, "metrics": job_metrics(run_dir)}
    tmp = record_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1, default=str))
    os.replace(tmp, record_path)
    return record


# -- the sweep --------------------------------------------------------------------------------------------------------

OnJob = Callable[[Job, dict[str, Any]], None]


def run_sweep(cfg: SweepConfig, on_job: OnJob | None = None) -> list[dict[str, Any]]:
    """Run every job (on Ray when ``cfg.ray_address`` is set, else one after another) and write the results.
    Returns one record per job, in grid order."""
    cfg.out.mkdir(parents=True, exist_ok=True)
    (cfg.out / STATE_DIR).mkdir(exist_ok=True)
    records = _run_ray(cfg, on_job) if cfg.ray_address else _run_here(cfg, on_job)
    write_results(cfg, records)
    return records


def _run_here(cfg: SweepConfig, on_job: OnJob | None) -> list[dict[str, Any]]:
    records = []
    for job in cfg.jobs:
        records.append(run_job(job))
        if on_job is not None:
            on_job(job, records[-1])
    return records


def _run_ray(cfg: SweepConfig, on_job: OnJob | None) -> list[dict[str, Any]]:
    from robot_rl.scale.cluster import cluster_gpus, ray_session, task_error

    assert cfg.ray_address is not None
    with ray_session(cfg.ray_address, cfg.workers) as ray:
        gpus = (1.0 if cluster_gpus(ray) > 0 else 0.0) if cfg.num_gpus == "auto" else float(cfg.num_gpus)
        # max_retries: a job whose worker died (node lost, OOM kill) runs again; its half-made run folder is
        # removed first (run_job). A job whose command fails is a result, not an exception: never retried.
        remote = ray.remote(num_cpus=cfg.num_cpus, num_gpus=gpus, max_retries=2)(run_job)
        refs = {remote.remote(job): job for job in cfg.jobs}
        records: dict[str, dict[str, Any]] = {}
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                job = refs[ref]
                try:
                    record = ray.get(ref)
                except Exception as e:  # the task itself died more times than it is retried
                    record = {"name": job.name, "status": "failed", "seconds": 0.0, "metrics": {},
                              "error": f"its Ray task failed: {task_error(e)}"}
                records[job.name] = record
                if on_job is not None:
                    on_job(job, record)
    return [records[j.name] for j in cfg.jobs]


# -- results ----------------------------------------------------------------------------------------------------------

def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else float("nan")


def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.4g}"


def groups(cfg: SweepConfig, records: list[dict[str, Any]]) -> dict[str, list[tuple[Any, dict[str, Any]]]]:
    """Setting (the grid values other than the seed's) -> [(seed value, record)], in grid order."""
    out: dict[str, list[tuple[Any, dict[str, Any]]]] = {}
    for job, record in zip(cfg.jobs, records, strict=True):
        setting = ", ".join(f"{k}={value_text(v)}" for k, v in job.values if k != cfg.seed_key) or "all"
        seed = dict(job.values).get(cfg.seed_key)
        out.setdefault(setting, []).append((seed, record))
    return out


def write_results(cfg: SweepConfig, records: list[dict[str, Any]]) -> None:
    """``results.csv``, ``results.md`` and ``results.png`` in ``cfg.out``."""
    keys = list(cfg.grid)
    with open(cfg.out / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["job", *keys, "status", "seconds", *cfg.metrics])
        for job, r in zip(cfg.jobs, records, strict=True):
            values = dict(job.values)
            w.writerow([job.name, *(value_text(values[k]) for k in keys), r["status"], f"{r['seconds']:.1f}",
                        *(repr(_number(r["metrics"].get(m))) for m in cfg.metrics)])
    lines = [f"# Sweep: robot-rl {cfg.command} ({len(cfg.jobs)} jobs)", "",
             f"Config `{cfg.source}`; common arguments `{' '.join(cfg.args)}`.", "", "## Per setting (mean ± std over "
             f"{cfg.seed_key})", "", "| setting | jobs | " + " | ".join(cfg.metrics) + " |",
             "|---|---|" + "---|" * len(cfg.metrics)]
    grouped = groups(cfg, records)
    for setting, items in grouped.items():
        cells = []
        for m in cfg.metrics:
            vals = [v for v in (_number(r["metrics"].get(m)) for _, r in items) if not math.isnan(v)]
            cells.append("n/a" if not vals else f"{_mean(vals):.4g} ± {_std(vals):.2g}")
        lines.append(f"| {setting} | {len(items)} | " + " | ".join(cells) + " |")
    lines += ["", "## Per job", "", "| job | status | seconds | " + " | ".join(cfg.metrics) + " |",
              "|---|---|---|" + "---|" * len(cfg.metrics)]
    for job, r in zip(cfg.jobs, records, strict=True):
        cells = [_fmt(_number(r["metrics"].get(m))) for m in cfg.metrics]
        status = r["status"] + (f": {r['error']}" if r.get("error") else "")
        lines.append(f"| {job.name} | {status} | {r['seconds']:.0f} | " + " | ".join(cells) + " |")
    (cfg.out / "results.md").write_text("\n".join(lines) + "\n")
    _plot(cfg, grouped, cfg.out / "results.png")


def _mean(v: list[float]) -> float:
    return sum(v) / len(v)


def _std(v: list[float]) -> float:
    m = _mean(v)
    return math.sqrt(sum((x - m) ** 2 for x in v) / len(v))


def _plot(cfg: SweepConfig, grouped: dict[str, list[tuple[Any, dict[str, Any]]]], path: Path) -> None:
    """One panel per metric (at most 4): a bar per setting at its mean over seeds, a dot per seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = cfg.metrics[:4]
    settings = list(grouped)
    fig, axes = plt.subplots(1, len(metrics), figsize=(max(4.0, 1.2 * len(settings) + 2) * len(metrics), 3.6),
                             squeeze=False, constrained_layout=True)
    for ax, m in zip(axes[0], metrics, strict=False):
        for x, setting in enumerate(settings):
            vals = [_number(r["metrics"].get(m)) for _, r in grouped[setting]]
            vals = [v for v in vals if not math.isnan(v)]
            if vals:
                ax.bar(x, _mean(vals), color="#4c72b0", alpha=0.7)
                offsets = [0.0] if len(vals) == 1 else [-0.2 + 0.4 * i / (len(vals) - 1) for i in range(len(vals))]
                ax.scatter([x + o for o in offsets], vals, color="black", s=14, zorder=3)
        ax.set_xticks(range(len(settings)))
        ax.set_xticklabels([s.replace(", ", "\n") for s in settings], fontsize=7)
        ax.set_title(m, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    fig.savefig(path, dpi=90)
    plt.close(fig)
