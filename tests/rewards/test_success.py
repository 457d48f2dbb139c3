"""Success classifier on a small real MetaWorld drawer-open dataset: training sources, held-out and ground-truth
accuracy, threshold and calibration outputs, relabeling, the online reward source, and one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from robot_rl.cli.main import main
from robot_rl.data import Dataset
from robot_rl.rewards.relabel import active_label, make_rewarder, relabel
from robot_rl.rewards.sources import SuccessReward, dataset_reward_source, resolve_reward_source
from robot_rl.rewards.store import LabelStore
from robot_rl.rewards.success import (
    PLOT_FILE,
    ClassifierSuccess,
    ConstantSuccess,
    FlippedSuccess,
    SuccessClassifier,
    SuccessConfig,
    SuccessError,
    collect_examples,
    train_success,
)
from robot_rl.rewards.success.labels import ScriptedSuccessTeacher, frame_truth, label_success

FAST = {"steps": 300, "batch_size": 64, "members": 2, "valid_fraction": 0.3, "log_every": 100}


@pytest.fixture(autouse=True)
def _egl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUJOCO_GL", "egl")


@pytest.fixture(scope="module")
def drawer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 sub-optimal drawer-open episodes (a few reach success), sim states stored, no frames."""
    path = tmp_path_factory.mktemp("success") / "drawer-open.h5"
    assert main(["collect", "--task", "metaworld/drawer-open-v3", "--episodes", "30", "--seed", "0",
                 "--out", str(path)]) == 0
    with Dataset(path) as ds:
        successes = sum(ds.load_episode(n).success for n in ds.episode_names)
    assert 3 <= successes <= 27, f"the fixture needs both outcomes, got {successes} successes of 30"
    return path


@pytest.fixture(scope="module")
def state_run(drawer: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("success_state")
    metrics = train_success(str(drawer), out, SuccessConfig(obs="state", **FAST), labels_from="ground_truth")
    return out, metrics


def _truth_obs(ds: Dataset) -> tuple[torch.Tensor, np.ndarray]:
    states, truth = [], []
    for n in ds.episode_names:
        ep = ds.load_episode(n)
        t = frame_truth(ep)
        states.append(ep.states[1:])
        truth.append(t[1:])
    return torch.as_tensor(np.concatenate(states)), np.concatenate(truth)


def test_state_classifier_separates_true_success_on_held_out_episodes(state_run: tuple[Path, dict]) -> None:
    out, m = state_run
    assert m["valid_episodes"] >= 5 and m["valid"]["count"] > 0
    assert m["valid"]["accuracy"] >= 0.9
    truth = m["truth"]  # every step of the held-out episodes, ground truth only measured
    assert truth["positives"] > 0 and truth["count"] - truth["positives"] > 0
    assert truth["balanced_accuracy"] >= 0.8, truth
    assert 0.0 < m["threshold"] < 1.0
    saved = json.loads((out / "success_metrics.json").read_text())
    assert saved["provenance"]["labels_from"] == "ground_truth"
    assert any("ground truth" in note for note in saved["provenance"]["notes"])
    assert (out / PLOT_FILE).stat().st_size > 10_000
    cal = saved["valid_calibration"]
    assert sum(cal["count"]) == m["valid"]["count"] and 0.0 <= cal["ece"] <= 1.0


def test_saved_classifier_roundtrips_and_threshold_is_used(state_run: tuple[Path, dict], drawer: Path) -> None:
    out, m = state_run
    clf = SuccessClassifier.load(out)
    assert clf.threshold == pytest.approx(m["threshold"]) and clf.provenance["labels_from"] == "ground_truth"
    with Dataset(drawer) as ds:
        states, truth = _truth_obs(ds)
    p = clf.probability({"state": states})
    assert p.shape == (len(states),) and float(p.min()) >= 0.0 and float(p.max()) <= 1.0
    success = ClassifierSuccess(out)
    assert success.name == "success_classifier" and success.threshold == clf.threshold
    assert torch.allclose(success({"state": states}), p)
    # on all the data (train and held out) the decision agrees with ground truth far above chance
    pred = p.numpy() >= clf.threshold
    known = np.isfinite(truth)
    pos, neg = truth[known] > 0.5, truth[known] <= 0.5
    assert pred[known][pos].mean() >= 0.8 and (~pred[known][neg]).mean() >= 0.9


def test_success_reward_from_resolve_reward_source(state_run: tuple[Path, dict], drawer: Path) -> None:
    out, _ = state_run
    source = resolve_reward_source(f"success:{out}", str(drawer))
    assert isinstance(source, SuccessReward) and source.name == "success"
    with Dataset(drawer) as ds:
        states, _ = _truth_obs(ds)
    clf = SuccessClassifier.load(out)
    action = torch.zeros(len(states), 4)
    r = source({"state": states}, action, {"state": states}, torch.full((len(states),), float("nan")))
    want = (clf.probability({"state": states}) >= clf.threshold).float()
    assert torch.equal(r, want) and set(r.unique().tolist()) <= {0.0, 1.0} and 0 < r.sum() < len(r)
    # reward is computed on next_obs, not obs
    zeros = source({"state": states}, action, {"state": states[:1].repeat(len(states), 1)}, r)
    assert torch.equal(zeros, want[:1].repeat(len(states)))


def test_relabel_success_writes_sparse_rewards_with_provenance(state_run: tuple[Path, dict], drawer: Path,
                                                              tmp_path: Path) -> None:
    out, _ = state_run
    data = tmp_path / "d.h5"
    shutil.copy(drawer, data)
    with Dataset(data) as ds:
        rewarder = make_rewarder(f"success:{out}", ds)
    result = relabel(str(data), rewarder, activate=True)
    assert result.label_id == "success" and active_label(str(data)) == "success"
    agree, total = 0, 0
    with Dataset(data) as ds:
        for n in ds.episode_names:
            ep = ds.load_episode(n)
            values, prov = ep.reward_labels["success"]
            assert set(np.unique(values).tolist()) <= {0.0, 1.0}
            assert prov["source"] == f"success:{out}" and prov["threshold"] == pytest.approx(
                SuccessClassifier.load(out).threshold) and len(prov["sha256"]) == 64
            assert ep.successes is not None
            agree += int(((values > 0.5) == ep.successes).sum())
            total += ep.length
    assert agree / total >= 0.95
    online = dataset_reward_source(str(data))
    assert isinstance(online, SuccessReward)


def test_scripted_success_labels_train_without_ground_truth_flag(drawer: Path, tmp_path: Path) -> None:
    store = tmp_path / "success.sqlite"
    job = label_success(str(drawer), ScriptedSuccessTeacher(mistake=0.1, seed=3), 120, store=str(store))
    assert len(job.labels) == 120 and job.asked == 120
    assert 0.8 <= job.accuracy < 1.0  # 10 % mistakes, measured against ground truth
    again = label_success(str(drawer), ScriptedSuccessTeacher(mistake=0.1, seed=3), 120, store=str(store))
    assert again.asked == 0 and again.reused == 120
    assert [lb.value for lb in again.labels] == [lb.value for lb in job.labels]
    with Dataset(drawer) as ds:  # without --labels-from ground_truth, the sim's flags are not used
        ex, record = collect_examples(ds, SuccessConfig(), "dataset", str(store))
    assert "final" not in record["sources"] and "labeler:success-scripted" in record["sources"]
    assert record["sources"]["labeler:success-scripted"]["stored"] == 120
    m = train_success(str(drawer), tmp_path / "run", SuccessConfig(**FAST), success_store=str(store))
    assert m["truth"]["balanced_accuracy"] >= 0.75
    # the preference store's reader would take success rows for pairs; they are kept in their own file
    with LabelStore(store) as s:
        assert {r.identity["query"] for r in s.labels()} == {"success"}


def test_no_labels_at_all_is_a_clear_error(drawer: Path, tmp_path: Path) -> None:
    with pytest.raises(SuccessError, match=r"no positive \(success\) examples.*--labels-from ground_truth"):
        train_success(str(drawer), tmp_path / "run", SuccessConfig(**FAST),
                      success_store=str(tmp_path / "none.sqlite"))


def test_image_classifier_on_rendered_frames(drawer: Path, tmp_path: Path) -> None:
    cfg = SuccessConfig(obs="image", image_size=64, steps=150, batch_size=32, members=1, first_frames=1,
                        final_frames=2, eval_frames=4, valid_fraction=0.3, log_every=50)
    m = train_success(str(drawer), tmp_path / "img", cfg, labels_from="ground_truth")
    assert m["camera"] == "corner" and m["valid"]["count"] > 0
    assert m["valid"]["balanced_accuracy"] >= 0.7, m["valid"]
    clf = SuccessClassifier.load(tmp_path / "img")
    # an image classifier without its camera in the observation: one line naming the camera and the fix
    with pytest.raises(SuccessError) as e:
        ClassifierSuccess(clf)({"state": torch.zeros(2, 39)})
    msg = str(e.value)
    assert "\n" not in msg and "'image/corner'" in msg and "cameras=('corner',)" in msg
    with pytest.raises(SuccessError, match=r"uint8 \[N, 64, 64, 3\], got uint8 \[2, 32, 32, 3\]"):
        clf.probability({"image/corner": torch.zeros(2, 32, 32, 3, dtype=torch.uint8)})
    p = clf.probability({"image/corner": torch.zeros(3, 64, 64, 3, dtype=torch.uint8)})
    assert p.shape == (3,)


def test_wrong_state_dim_and_corrupt_file_are_one_line_errors(state_run: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = state_run
    clf = SuccessClassifier.load(out)
    with pytest.raises(SuccessError, match=r"obs\['state'\] must be \[N, 39\].*got \[5, 4\]") as e:
        clf.probability({"state": torch.zeros(5, 4)})
    assert "\n" not in str(e.value)
    with pytest.raises(SuccessError, match=r"needs obs\['state'\]"):
        clf.probability({"image/corner": torch.zeros(1, 64, 64, 3, dtype=torch.uint8)})
    with pytest.raises(SuccessError, match="NaN or inf values"):
        clf.probability({"state": torch.full((2, 39), float("nan"))})
    bad = tmp_path / "success_classifier.pt"
    bad.write_bytes((out / "success_classifier.pt").read_bytes()[:300])
    with pytest.raises(SuccessError, match="not a readable success classifier file") as e:
        SuccessClassifier.load(bad)
    assert "\n" not in str(e.value) and str(bad) in str(e.value)
    with pytest.raises(SuccessError, match="no such success classifier file"):
        SuccessClassifier.load(tmp_path / "missing")
    torch.save({"format": "something else"}, bad)
    with pytest.raises(SuccessError, match="not a robot_rl success classifier file"):
        SuccessClassifier.load(bad)


def test_constant_and_flipped_signals_for_loop_tests(state_run: tuple[Path, dict], drawer: Path) -> None:
    obs = {"state": torch.zeros(4, 39)}
    always = ConstantSuccess(1.0)
    never = ConstantSuccess(0.0)
    assert always.name == "constant" and torch.equal(always(obs), torch.ones(4))
    assert torch.equal(SuccessReward(never)(obs, torch.zeros(4, 4), obs, torch.zeros(4)), torch.zeros(4))
    assert torch.equal(SuccessReward(always)(obs, torch.zeros(4, 4), obs, torch.zeros(4)), torch.ones(4))
    with pytest.raises(SuccessError, match=r"p must be in \[0, 1\]"):
        ConstantSuccess(1.5)
    good = ClassifierSuccess(state_run[0])
    with Dataset(drawer) as ds:
        states, _ = _truth_obs(ds)
    wrong = FlippedSuccess(good)
    assert torch.allclose(wrong({"state": states}), 1 - good({"state": states}))


def test_train_success_cli(drawer: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    rc = main(["train-success", "--dataset", str(drawer), "--labels-from", "ground_truth", "--out", str(out),
               "--steps", "100", "--set", "members=1", "--success-labels", str(tmp_path / "s.sqlite")])
    assert rc == 0
    err = capsys.readouterr().err
    assert "held-out" in err and "threshold" in err
    for name in ("success_classifier.pt", "success_config.yaml", "success_metrics.json", PLOT_FILE):
        assert (out / name).is_file(), name
    rc = main(["train-success", "--dataset", str(drawer), "--obs", "image", "--image-size", "16", "--out",
               str(tmp_path / "x"), "--labels-from", "ground_truth"])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "image_size 16 is too small" in err[0]


def test_preference_losers_are_weighted_negatives_and_their_noise_is_measured(drawer: Path, tmp_path: Path) -> None:
    from robot_rl.rewards.jobs import label_dataset
    from robot_rl.rewards.labelers.scripted import ScriptedTeacher

    prefs = tmp_path / "prefs.sqlite"
    job = label_dataset(str(drawer), ScriptedTeacher(), 60, 10, store=str(prefs))
    strict = sum(lb.value in (0.0, 1.0) for lb in job.result.labels)
    with Dataset(drawer) as ds:
        ex, record = collect_examples(ds, SuccessConfig(preference_negatives=True, preference_weight=0.25),
                                      "ground_truth", str(tmp_path / "none.sqlite"), str(prefs))
    pref = [i for i, s in enumerate(ex.sources) if s == "preference"]
    assert len(pref) == strict > 0
    assert all(ex.labels[i] == 0.0 and ex.weights[i] == 0.25 for i in pref)
    info = record["sources"]["preference"]
    assert info["negatives"] == strict and info["positives"] == 0 and 0.0 <= info["true_success_rate"] <= 1.0
    assert record["preference_store"] == str(prefs.resolve())


def test_a_rejected_claim_retrains_the_state_classifier_against_that_state(state_run, drawer):
    from robot_rl.rewards.success.verify import ScriptedClaimTeacher, VerifiedSuccess, VerifyConfig

    out, _ = state_run
    signal = ClassifierSuccess(SuccessClassifier.load(out))
    with Dataset(drawer) as ds:
        states, truth = _truth_obs(ds)
    p = signal({"state": states})
    claimed = torch.nonzero((p >= signal.threshold) & torch.as_tensor(truth > 0.5)).flatten()
    assert len(claimed) > 0
    state = {"state": states[claimed[:1]]}
    before = float(signal(state)[0])
    # a teacher that always says the opposite of the truth rejects this (truly solved) claimed state
    verified = VerifiedSuccess(signal, ScriptedClaimTeacher(mistake=1.0), VerifyConfig(budget=2, requery_after=5,
                                                                                      retrain_steps=150), "open")
    assert verified.name == "verified:success_classifier" and verified.threshold == signal.threshold
    info = {"success": torch.tensor([True])}
    assert verified.check(state, info, step=10) == "rejected"
    assert verified.update() and not verified.update()  # changed once
    after = float(verified(state)[0])
    assert after < min(before, signal.threshold) - 0.1, (before, after)  # the wrapped classifier itself learned
    assert verified.classifier is signal.classifier and signal.classifier.threshold == signal.threshold
    assert verified.check(state, info, step=15) == "held"  # within requery_after of the rejection: no query
    assert verified.check(state, info, step=16) == "rejected"  # asked again: the budget of 2 is spent now
    assert verified.check(state, info, step=30) == "unverified"
    assert verified.metrics() == {"claims_confirmed": 0.0, "claims_rejected": 2.0, "claims_held": 1.0,
                                  "claims_unverified": 1.0, "classifier_retrains": 2.0}


def test_claim_teachers_answer_from_ground_truth_or_a_person_and_refuse_what_they_cannot():
    from robot_rl.rewards.success.verify import HumanClaimTeacher, ScriptedClaimTeacher, VerifyConfig

    obs = {"state": torch.zeros(1, 3)}
    teacher = ScriptedClaimTeacher()
    assert teacher.confirm(obs, {"success": torch.tensor([True])}, "t")
    assert not teacher.confirm(obs, {"success": np.array([False])}, "t")
    with pytest.raises(SuccessError, match="no 'success'.*--claim-teacher human"):
        teacher.confirm(obs, {}, "drawer-open")
    answers = iter(["maybe", " Y "])
    asked: list[str] = []
    person = HumanClaimTeacher(ask=lambda q: (asked.append(q), next(answers))[1])
    assert person.confirm(obs, {}, "drawer-open") and len(asked) == 2 and "'drawer-open' is done" in asked[0]
    def closed(question: str) -> str:
        raise EOFError

    with pytest.raises(SuccessError, match="the input closed while asking whether 'drawer-open' is done"):
        HumanClaimTeacher(ask=closed).confirm(obs, {}, "drawer-open")
    with pytest.raises(SuccessError, match="budget"):
        VerifyConfig(budget=0)


def test_verified_success_refuses_a_classifier_whose_dataset_is_gone_before_the_run(drawer, tmp_path):
    from robot_rl.rewards.success.verify import ScriptedClaimTeacher, VerifiedSuccess, VerifyConfig

    moved = tmp_path / "moved.h5"
    shutil.copy(drawer, moved)
    train_success(str(moved), tmp_path / "clf", SuccessConfig(obs="state", **FAST), labels_from="ground_truth")
    moved.unlink()
    signal = ClassifierSuccess(tmp_path / "clf")
    with pytest.raises(SuccessError, match=r"needs the dataset the classifier was trained on \(.*moved.h5\), which "
                                           "is not there"):
        VerifiedSuccess(signal, ScriptedClaimTeacher(), VerifyConfig(), "open")
    VerifiedSuccess(signal, ScriptedClaimTeacher(), VerifyConfig(retrain_steps=0), "open")  # no retraining: fine
