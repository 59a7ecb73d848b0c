"""Progress inside a task (loops that report their steps) and the time left, learned per kind of task."""

import json

import pytest
import torch

import stochthermo
from conftest import scenario_dict
from stochthermo.engine import _eta
from stochthermo.engine._eta import TaskClock, format_seconds
from stochthermo.engine._tasks import Task
from stochthermo.numerics import listening, rk4, steps


def test_a_flow_reports_each_saved_step_to_a_listener_and_costs_nothing_without_one():
    heard = []
    times = torch.linspace(0, 1, 6, dtype=torch.float64)
    with listening(lambda what, done, total: heard.append((what, done, total))):
        rk4(lambda t, x: -x, torch.ones(3, 1, dtype=torch.float64), times)
    assert heard == [("flow", k, 5) for k in range(1, 6)]
    heard.clear()
    rk4(lambda t, x: -x, torch.ones(3, 1, dtype=torch.float64), times)  # nobody listens: nothing is sent
    progress = steps("anything", 2)
    progress.advance(2)
    assert heard == [] and progress.done == 2


class FakeTime:
    """A perf_counter the test moves by hand."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _task(kind: str, seed: int) -> Task:
    return Task(0, kind, seed, f"{kind}-{seed}", f"protocol {kind}, seed {seed}", kind)


def test_the_time_left_is_learned_per_kind_and_remembered_across_runs(tmp_path, monkeypatch):
    """An ODE kind of 1 s and an SDE kind of 10 s: once one task of each has finished, the estimate for the
    rest is the sum of their kinds' durations — not the mean over unlike tasks (which a task-count bar gives);
    a later run knows both kinds from the file before any task of its own has finished."""
    clock_time = FakeTime()
    monkeypatch.setattr(_eta.time, "perf_counter", clock_time)
    history = tmp_path / "cache" / "task_seconds.json"
    clock = TaskClock(history)
    ode, sde = [_task("ode", s) for s in range(3)], [_task("sde", s) for s in range(3)]
    assert clock.remaining(None, [*ode, *sde]) is None  # nothing known yet
    for task, seconds in [(ode[0], 1.0), (sde[0], 10.0)]:
        clock.start()
        clock_time.now += seconds
        assert clock.finished(task) == seconds
    assert clock.remaining(None, [*ode[1:], *sde[1:]]) == pytest.approx(2 * 1.0 + 2 * 10.0)
    clock.start()
    clock_time.now += 4.0  # the running SDE task has run 4 of its kind's 10 s
    assert clock.remaining(sde[1], [sde[2], ode[1]]) == pytest.approx(6.0 + 10.0 + 1.0)
    clock.save()
    assert json.loads(history.read_text()) == {"ode": 1.0, "sde": 10.0}

    later = TaskClock(history)
    assert later.remaining(None, [*ode, *sde]) == pytest.approx(3 * 1.0 + 3 * 10.0)
    unknown = _task("new", 0)  # a kind nobody has timed: the mean of the run's kinds that are known
    assert later.remaining(None, [unknown, ode[0], sde[0]]) == pytest.approx(5.5 + 1.0 + 10.0)


@pytest.mark.parametrize("content", ["not json", "[1, 2]", '{"a": "x", "b": -1, "c": NaN}', ""])
def test_a_damaged_history_is_ignored_and_rewritten(tmp_path, content):
    history = tmp_path / "task_seconds.json"
    history.write_text(content)
    clock = TaskClock(history)
    assert clock.expected(_task("a", 0)) is None
    clock.start()
    clock.finished(_task("a", 0))
    clock.save()
    assert set(json.loads(history.read_text())) == {"a"}


def test_an_unwritable_cache_only_means_no_memory(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("")
    clock = TaskClock(blocked / "sub" / "task_seconds.json")  # its parent is a file: cannot be created
    clock.start()
    clock.finished(_task("a", 0))
    clock.save()  # no error


def test_format_seconds():
    assert format_seconds(None) == "time left unknown"
    assert format_seconds(12.4) == "about 12 s left"
    assert format_seconds(600) == "about 10 min left"
    assert format_seconds(3 * 3600) == "about 3.0 h left"


def test_a_run_with_progress_shows_the_loops_and_the_time_left(tmp_path, monkeypatch, capsys):
    import functools

    from stochthermo.engine import _executors

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    # every redraw shown (tqdm otherwise redraws at most every 0.1 s, and this run takes milliseconds)
    monkeypatch.setattr(_executors, "tqdm", functools.partial(_executors.tqdm, mininterval=0))
    monkeypatch.setattr(_executors, "REDRAW_SECONDS", 0.0)
    spec = scenario_dict(protocols={"cosine": {"process": {"name": "scheduled", "schedule": "cosine"},
                                               "solver": {"name": "stochastic_heun", "gamma": 1.0}}},
                         seeds=[0, 1], particles=64, time_steps=8, observers=["thermodynamics"])
    stochthermo.run(spec, progress=True)
    shown = capsys.readouterr().err
    assert "2/2 tasks" in shown
    assert "protocol cosine, seed 1" in shown and "left" in shown
    assert "protocol cosine, seed 0, SDE flow 1/8" in shown and "protocol cosine, seed 1, SDE flow 8/8" in shown
    history = json.loads((tmp_path / "cache" / "stochthermo" / "task_seconds.json").read_text())
    assert len(history) == 1  # the two seeds are one kind


def test_loop_reports_between_redraws_cost_no_estimate(monkeypatch):
    """A loop's steps arrive far faster than a terminal redraws: between redraws (REDRAW_SECONDS) the bar's text,
    which sums over every pending task, is not made again; a loop's last step always is."""
    from stochthermo.engine import _executors

    made = []
    real = _executors.format_seconds
    monkeypatch.setattr(_executors, "format_seconds", lambda seconds: made.append(seconds) or real(seconds))
    monkeypatch.setattr(_executors, "REDRAW_SECONDS", 3600.0)
    spec = scenario_dict(protocols={"cosine": {"process": {"name": "scheduled", "schedule": "cosine"},
                                               "solver": {"name": "stochastic_heun", "gamma": 1.0}}},
                         seeds=[0], particles=64, time_steps=8, observers=["thermodynamics"])
    stochthermo.run(spec, progress=True)
    # the task's start and the SDE flow's last step (the true and perturbed ensembles are one batched flow; the
    # 1-D forward marginals come from the exact quantile flow, which has no steps): 2, not 1 + its 8 steps
    assert len(made) == 2, len(made)
