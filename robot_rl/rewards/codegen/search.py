"""The reward-code search loop (Eureka / Text2Reward): ask the LLM for K reward functions, train a policy on each in
parallel, score them (ground-truth success in the sim, and/or agreement with preference labels), reflect, repeat.

``OUT/`` gets, as the search goes:

- ``candidates.jsonl``: one line per candidate the moment it is known (code, reply, reason, scores, statistics),
  and one ``iteration`` line when an iteration ends (with the feedback for the next); written with fsync, so a
  killed search keeps every finished candidate, and ``resume`` continues after the last finished iteration.
- ``prompts/iteration_<i>.json``: the exact messages sent; ``context.txt``: the environment description.
- ``best_reward.py`` (usable by ``robot-rl relabel --source code:...`` and ``finetune --reward code:...``) and
  ``best_reward.json`` (provenance: prompt, model, iteration, scores), updated after every iteration.
- ``report.md`` and ``success_by_iteration.png``.

As Eureka: samples without usable code are asked for again within their iteration (``regenerate``), and the best
reward is finally trained on ``final_seeds`` other seeds, with its correlation to the simulator's reward over the
dataset (``final_eval.py``), in ``best_reward.json`` and ``report.md``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robot_rl.core.specs import EnvSpec
from robot_rl.llm import LLMConfig
from robot_rl.rewards.codegen.context import task_context
from robot_rl.rewards.codegen.generate import PROMPT_VERSION, Sample, build_messages, generate
from robot_rl.rewards.codegen.pool import make_pool
from robot_rl.rewards.codegen.reflect import feedback as make_feedback
from robot_rl.rewards.codegen.train import CandidateJob, TrainBudget

RECORDS = "candidates.jsonl"
SELECTIONS = ("auto", "success", "labels", "distance")
Event = Callable[[str, dict[str, Any]], None]
"""``on_event(kind, data)``: ``iteration`` (start), ``samples`` (replies parsed), ``candidate`` (a result),
``iteration_done``, ``collect`` (offline data being made)."""


@dataclass(frozen=True)
class SearchConfig:
    """One search."""

    llm: LLMConfig
    out: Path
    task: str | None = None
    """Sim task (``None`` only with trainer ``none``: the dataset's spec is used)."""
    iterations: int = 5
    samples: int = 4
    """K: reward functions asked for per iteration."""
    budget: TrainBudget = field(default_factory=TrainBudget)
    workers: int = 2
    """Candidates trained at once (local processes, or Ray tasks)."""
    ray_address: str | None = None
    dataset: str | None = None
    """HDF5 dataset: offline data for the iql trainer, and the segments the labels refer to."""
    labels: str | None = None
    """Label store: rank candidates by agreement with its labels on ``dataset``."""
    labeler: str | None = None
    """Use only this labeler's labels (default: all)."""
    reference: str | None = None
    """A reward label of the dataset (e.g. a reward model trained on the preference labels, or ``ground_truth``):
    every candidate's distance to it (``select.reference_distance``) is recorded and breaks ties."""
    select: str = "auto"
    """``success`` (ground truth after training), ``labels`` (agreement), ``distance`` (to ``reference``, nearest
    first) or ``auto``: labels when given, else distance when trainer ``none`` has a reference, else success."""
    source_context: bool = False
    """Also give the LLM the simulator's environment source (Eureka)."""
    timeout_s: float = 900.0
    """Wall-clock limit per candidate."""
    resume: bool = False
    seed: int = 0
    collect_episodes: int = 40
    """Episodes of the ``suboptimal`` dataset collected for iql when no ``dataset`` is given."""
    sandbox_limits: dict[str, Any] = field(default_factory=dict)
    regenerate: int = 1
    """Rounds per iteration in which samples that gave no usable code (no reply, rejected by the gate) are asked
    for again, as Eureka regenerates failed samples; 0: never."""
    examples: int = 2
    """Text2Reward's few-shot: this many verified rewards of the closest other tasks in the prompt (0: none)."""
    library: str | None = None
    """A folder of finished searches whose best rewards join the built-in examples (``library.py``)."""
    critique: str | None = None
    """A person's critique of the rewards so far, added to every prompt of this run (Text2Reward's feedback)."""
    final_seeds: int = 5
    """After the last iteration, the best reward is trained again on this many other seeds (Eureka's final
    evaluation; 0: skip). Not with trainer ``none``."""

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.samples < 1 or self.workers < 1:
            raise ValueError("iterations, samples and workers must be >= 1")
        if self.regenerate < 0 or self.final_seeds < 0 or self.examples < 0:
            raise ValueError("regenerate, final_seeds and examples must be >= 0")
        if self.select not in SELECTIONS:
            raise ValueError(f"unknown selection '{self.select}'; choose one of {', '.join(SELECTIONS)}")
        if self.labels and not self.dataset:
            raise ValueError("label agreement needs the dataset the labels refer to (--dataset FILE.h5)")
        if self.select == "labels" and not self.labels:
            raise ValueError("selection by labels needs --labels STORE (and --dataset)")
        if self.select == "distance" and not self.reference:
            raise ValueError("selection by distance needs --reference LABEL (a reward label of the dataset)")
        if self.budget.trainer == "none" and not (self.labels or self.reference):
            raise ValueError("trainer 'none' scores candidates on labels or on the distance to a reference label: "
                             "give --dataset and --labels or --reference")
        if self.reference and not self.dataset and self.budget.trainer != "iql":
            raise ValueError("--reference names a reward label of --dataset: give the dataset")
        if self.task is None and self.budget.trainer != "none":
            raise ValueError(f"trainer '{self.budget.trainer}' needs a sim task (--task)")
        if self.timeout_s <= 0:
            raise ValueError(f"the candidate timeout must be > 0 s, got {self.timeout_s}")

    @property
    def ranking(self) -> str:
        if self.select != "auto":
            return self.select
        if self.labels:
            return "labels"
        return "distance" if self.reference and self.budget.trainer == "none" else "success"


@dataclass
class SearchResult:
    best: dict[str, Any] | None
    records: list[dict[str, Any]]
    out: Path
    final: dict[str, Any] | None = None
    """The best reward's final evaluation on other seeds (``final_eval.summarize``), where it ran."""


def score(record: dict[str, Any], ranking: str) -> tuple[float, ...] | None:
    """Sort key of a finished candidate (higher is better); ``None`` when it has no score."""
    if record.get("status") != "ok":
        return None

    def value(key: str) -> float:
        v = record.get(key.lstrip("-"))
        if not isinstance(v, int | float) or not math.isfinite(v):
            return -math.inf
        return -float(v) if key.startswith("-") else float(v)

    keys = {"labels": ("agreement", "-distance", "success_rate", "eval_return"),
            "distance": ("-distance", "agreement", "success_rate", "eval_return")}.get(
        ranking, ("success_rate", "agreement", "-distance", "eval_return"))
    key = tuple(value(k) for k in keys)
    return None if key[0] == -math.inf else key


def best_of(records: list[dict[str, Any]], ranking: str) -> dict[str, Any] | None:
    scored = [(key, -i, r) for i, r in enumerate(records) if (key := score(r, ranking)) is not None]
    return max(scored, key=lambda t: (t[0], t[1]))[2] if scored else None


class _Log:
    """``candidates.jsonl``: appended line by line, each durable before the search goes on."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        out = []
        lines = self.path.read_text().splitlines()
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except ValueError:  # a line cut by a kill mid-write: everything before it is kept
                if n != len(lines):
                    raise ValueError(f"{self.path}: line {n} is not JSON") from None
        return out

    def append(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record, default=_json_default) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON-serializable: {type(value).__name__}")


def task_spec(cfg: SearchConfig) -> tuple[EnvSpec, Any]:
    """The spec (from the sim task, else the dataset) and the task card."""
    from robot_rl.envs import load_task_card

    if cfg.task is None:
        from robot_rl.data import Dataset

        assert cfg.dataset is not None
        with Dataset(cfg.dataset) as ds:
            return ds.spec, load_task_card(ds.spec.name)
    from robot_rl.envs import make_env

    env = make_env(cfg.task)
    try:
        return env.spec, load_task_card(cfg.task)
    finally:
        env.close()


def offline_dataset(cfg: SearchConfig, on_event: Event) -> str | None:
    """The iql trainer's data: ``cfg.dataset``, else a ``suboptimal`` dataset collected once into ``OUT``."""
    if cfg.budget.trainer != "iql":
        return cfg.dataset
    if cfg.dataset:
        return cfg.dataset
    assert cfg.task is not None
    if not cfg.task.startswith("metaworld/"):
        raise ValueError(f"the iql trainer needs --dataset FILE.h5 for '{cfg.task}' (only MetaWorld tasks have a "
                         "scripted expert to collect one); or use --trainer ppo")
    path = cfg.out / f"offline-{cfg.task.rsplit('/', 1)[-1]}-{cfg.collect_episodes}.h5"
    if path.exists():
        return str(path)
    from robot_rl.data.behaviours import resolve_preset
    from robot_rl.data.collect import collect
    from robot_rl.data.writer import DatasetWriter
    from robot_rl.envs import make_env
    from robot_rl.envs.metaworld_env import metaworld_expert

    tmp = path.with_suffix(".partial.h5")
    tmp.unlink(missing_ok=True)
    env = make_env(cfg.task, num_envs=4)
    try:
        with DatasetWriter(tmp, env.spec, source=f"robot-rl reward-search (suboptimal, seed {cfg.seed})") as w:
            collect(env, w, cfg.collect_episodes, resolve_preset("suboptimal"),
                    expert=metaworld_expert(cfg.task.rsplit("/", 1)[-1]), seed=cfg.seed,
                    on_episode=lambda name, ep: on_event("collect", {"episode": name, "total": cfg.collect_episodes}))
    finally:
        env.close()
    os.replace(tmp, path)
    for leftover in tmp.parent.glob(tmp.name + "*"):  # an empty journal left beside the partial file
        leftover.unlink(missing_ok=True)
    return str(path)


def _sample_record(sample: Sample, prompt_sha: str) -> dict[str, Any]:
    return {"kind": "candidate", "id": sample.id, "iteration": sample.iteration, "index": sample.index,
            "code": sample.code, "reply": sample.reply, "model": sample.model,
            "prompt_tokens": sample.prompt_tokens, "completion_tokens": sample.completion_tokens,
            "llm_seconds": sample.seconds, "prompt_sha256": prompt_sha}


class _Search:
    def __init__(self, cfg: SearchConfig, on_event: Event | None) -> None:
        self.cfg = cfg
        self.emit: Event = on_event or (lambda kind, data: None)
        self.log = _Log(cfg.out / RECORDS)
        self.records: list[dict[str, Any]] = []
        self.feedback: str | None = None
        self.first_iteration = 0
        self.finals: list[dict[str, Any]] = []

    def prepare(self) -> None:
        cfg = self.cfg
        cfg.out.mkdir(parents=True, exist_ok=True)
        (cfg.out / "prompts").mkdir(exist_ok=True)
        previous = self.log.read()
        if previous and not cfg.resume:
            raise FileExistsError(f"{cfg.out} already holds a search ({RECORDS}); pass --resume to continue it or "
                                  "pick a new --out")
        done = [r for r in previous if r.get("kind") == "iteration"]
        finished = {r["iteration"] for r in done}
        self.records = [r for r in previous if r.get("kind") == "candidate" and r["iteration"] in finished]
        self.finals = [r for r in previous if r.get("kind") == "final"]
        if done:
            self.first_iteration = max(finished) + 1
            self.feedback = done[-1].get("feedback")
        self.spec, card = task_spec(cfg)
        self.context = task_context(self.spec, card, cfg.source_context)
        (cfg.out / "context.txt").write_text(self.context)
        self.prefs = None
        if cfg.labels:
            from robot_rl.rewards.codegen.select import load_preferences

            assert cfg.dataset is not None
            self.prefs = load_preferences(cfg.dataset, cfg.labels, cfg.labeler)
        self.data = offline_dataset(cfg, self.emit)
        self.reference: tuple[str, str] | None = None
        if cfg.reference:
            from robot_rl.rewards.codegen.select import check_reference

            data = cfg.dataset or self.data
            assert data is not None
            check_reference(data, cfg.reference)
            self.reference = (os.path.abspath(data), cfg.reference)
        from robot_rl.rewards.codegen.library import examples_text, retrieve

        shots = retrieve(self.spec.name, self.spec.task_text or "", cfg.examples, cfg.library)
        self.examples = examples_text(shots) if shots else None

    def iteration(self, it: int, pool: Any) -> None:
        cfg = self.cfg
        messages = build_messages(self.context, self.feedback, self.examples, cfg.critique)
        prompt_path = cfg.out / "prompts" / f"iteration_{it}.json"
        prompt_path.write_text(json.dumps(messages, indent=1))
        prompt_sha = hashlib.sha256(prompt_path.read_bytes()).hexdigest()
        self.emit("iteration", {"iteration": it, "iterations": cfg.iterations, "samples": cfg.samples})
        samples = generate(cfg.llm, messages, cfg.samples, it, cfg.seed)
        for _ in range(cfg.regenerate):  # failed samples asked for again, each under a new index and seed
            failed = sum(s.code is None for s in samples)
            if not failed:
                break
            samples += generate(cfg.llm, messages, failed, it, cfg.seed, first_index=len(samples))
        self.emit("samples", {"iteration": it, "usable": sum(s.code is not None for s in samples),
                              "samples": len(samples)})
        results: dict[str, dict[str, Any]] = {}
        for s in samples:
            if s.code is None:
                record = {**_sample_record(s, prompt_sha), "status": "rejected", "reason": s.reason}
                self._finish(record, results)
        jobs = [self.job(s.id, it, s.index, s.code) for s in samples if s.code is not None]
        by_id = {s.id: s for s in samples}
        pool.run(jobs, on_done=lambda r: self._finish({**_sample_record(by_id[r["id"]], prompt_sha), **r},
                                                      results))
        ordered = [results[s.id] for s in samples]
        best = best_of(self.records, cfg.ranking)
        self.feedback = make_feedback(ordered, best)
        self.log.append({"kind": "iteration", "iteration": it, "best": best["id"] if best else None,
                         "prompt_sha256": prompt_sha, "feedback": self.feedback})
        self.write_outputs(best)
        self.emit("iteration_done", {"iteration": it, "best": best, "results": ordered})

    def job(self, id_: str, iteration: int, index: int, code: str) -> CandidateJob:
        cfg = self.cfg
        return CandidateJob(id_, iteration, index, code, cfg.task, self.spec.to_json(), cfg.budget, self.data,
                            self.prefs, cfg.sandbox_limits, cfg.timeout_s, self.reference)

    def final(self, best: dict[str, Any], pool: Any) -> dict[str, Any] | None:
        """Eureka's final evaluation of ``best`` (``final_eval.py``); None when it does not apply."""
        cfg = self.cfg
        if cfg.final_seeds < 1 or cfg.budget.trainer == "none" or best.get("status") != "ok":
            return None
        from robot_rl.rewards.codegen.final_eval import final_jobs, summarize, truth_correlation
        from robot_rl.rewards.codegen.train import open_reward

        runs = [r for r in self.finals if r.get("best") == best["id"]]
        jobs = final_jobs(best, self.job(best["id"], best["iteration"], best["index"], best["code"]),
                          cfg.final_seeds, {int(r["seed"]) for r in runs})
        seeds = {j.id: j.budget.seed for j in jobs}
        self.emit("final", {"best": best["id"], "seeds": cfg.final_seeds})

        def done(result: dict[str, Any]) -> None:
            record = {"kind": "final", "best": best["id"], "seed": seeds[result["id"]], **result}
            self.log.append(record)
            self.finals.append(record)
            runs.append(record)
            self.emit("final_run", record)

        if jobs:
            pool.run(jobs, on_done=done)
        truth = truth_correlation(best["code"], self.spec, self.data, cfg.sandbox_limits, open_reward)
        return summarize(best, runs, truth)

    def _finish(self, record: dict[str, Any], results: dict[str, dict[str, Any]]) -> None:
        self.log.append(record)
        self.records.append(record)
        results[record["id"]] = record
        self.emit("candidate", record)

    def write_outputs(self, best: dict[str, Any] | None, final: dict[str, Any] | None = None) -> None:
        from robot_rl.rewards.codegen.report import write_report

        if best is not None:
            write_best(self.cfg, best, self.spec, final)
        write_report(self.cfg.out, self.records, best, self.cfg.ranking, self.spec, final)


def write_best(cfg: SearchConfig, best: dict[str, Any], spec: EnvSpec, final: dict[str, Any] | None = None) -> None:
    """``best_reward.py`` (the code, with a provenance comment) and ``best_reward.json``."""
    out = cfg.out
    header = (f"# Reward code found by robot-rl reward-search for {spec.name} ({spec.task_text!r}).\n"
              f"# Candidate {best['id']} (iteration {best['iteration']}), model {best.get('model') or '?'}; "
              f"provenance in best_reward.json.\n")
    code = header + best["code"]
    _atomic_write(out / "best_reward.py", code)
    prompt = out / "prompts" / f"iteration_{best['iteration']}.json"
    info = {
        "id": best["id"], "iteration": best["iteration"], "sample": best["index"], "task": spec.name,
        "task_text": spec.task_text, "model": best.get("model"), "llm_base_url": cfg.llm.base_url,
        "prompt_version": PROMPT_VERSION, "prompt_file": str(prompt.relative_to(out)),
        "prompt_sha256": best.get("prompt_sha256"), "code_sha256": hashlib.sha256(code.encode()).hexdigest(),
        "ranking": cfg.ranking,
        "scores": {k: best.get(k) for k in ("success_rate", "agreement", "distance", "eval_return", "eval_episodes")},
        "trainer": dataclasses.asdict(cfg.budget), "dataset": cfg.dataset, "labels": cfg.labels,
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    if final is not None:
        info["final_evaluation"] = final
    _atomic_write(out / "best_reward.json", json.dumps(info, indent=2, default=_json_default))


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def run_search(cfg: SearchConfig, on_event: Event | None = None) -> SearchResult:
    """Run (or with ``cfg.resume`` continue) the search; see the module docstring for what ``cfg.out`` gets."""
    search = _Search(cfg, on_event)
    search.prepare()
    pool = make_pool(cfg.workers, cfg.ray_address)
    final = None
    try:
        for it in range(search.first_iteration, cfg.iterations):
            search.iteration(it, pool)
        best = best_of(search.records, cfg.ranking)
        if best is not None:
            final = search.final(best, pool)
    finally:
        pool.close()
    search.write_outputs(best, final)
    return SearchResult(best, search.records, cfg.out, final)
