"""care submit / care schedule against a fake kfp.Client (no KFP backend can run here)."""

from __future__ import annotations

import itertools
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from kfp import components

from care_core.config import load_recipe
from pipelines.submit import (
    MANAGED_MARKER,
    ScheduleError,
    apply_schedules,
    load_schedules,
    submit,
    validate_cron,
)


class FakeKfpClient:
    """Records calls; keeps experiments and recurring runs in memory like the KFP API server."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.calls: list[tuple[str, dict]] = []
        self.experiments: dict[str, str] = {}
        self.recurring: dict[str, SimpleNamespace] = {}
        self.packages: dict[str, dict] = {}
        self._ids = itertools.count(1)

    def create_experiment(self, name, description=None, namespace=None):
        self.calls.append(("create_experiment", {"name": name}))
        self.experiments.setdefault(name, f"exp-{next(self._ids)}")
        return SimpleNamespace(experiment_id=self.experiments[name])

    def create_run_from_pipeline_package(
        self, pipeline_file, arguments=None, run_name=None, experiment_name=None, **kw
    ):
        self.calls.append(
            (
                "create_run",
                {"arguments": arguments, "run_name": run_name, "experiment_name": experiment_name, **kw},
            )
        )
        self.packages[run_name] = yaml.safe_load(Path(pipeline_file).read_text().split("\n---\n")[0])
        components.load_component_from_file(pipeline_file)  # a valid pipeline package
        return SimpleNamespace(run_id=f"run-{next(self._ids)}")

    def list_recurring_runs(
        self, page_token="", page_size=10, sort_by="", experiment_id=None, namespace=None, filter=None
    ):
        runs = [r for r in self.recurring.values() if r.experiment_id == experiment_id]
        start = int(page_token or 0)
        page = runs[start : start + 1]  # page size 1 so that pagination is exercised
        token = str(start + 1) if start + 1 < len(runs) else ""
        return SimpleNamespace(recurring_runs=page or None, next_page_token=token)

    def delete_recurring_run(self, recurring_run_id):
        self.calls.append(("delete_recurring_run", {"id": recurring_run_id}))
        del self.recurring[recurring_run_id]
        return {}

    def create_recurring_run(self, experiment_id, job_name, **kw):
        self.calls.append(
            ("create_recurring_run", {"experiment_id": experiment_id, "job_name": job_name, **kw})
        )
        run_id = f"rr-{next(self._ids)}"
        self.packages[run_id] = yaml.safe_load(
            Path(kw["pipeline_package_path"]).read_text().split("\n---\n")[0]
        )
        self.recurring[run_id] = SimpleNamespace(
            recurring_run_id=run_id,
            display_name=job_name,
            description=kw.get("description"),
            experiment_id=experiment_id,
        )
        return SimpleNamespace(recurring_run_id=run_id)


@pytest.fixture
def fake():
    holder: dict[str, FakeKfpClient] = {}

    def factory(host: str) -> FakeKfpClient:
        holder.setdefault(host, FakeKfpClient(host))
        return holder[host]

    return factory


def test_submit_creates_one_run_with_arguments(fake):
    recipe = load_recipe("recipes/tiny-care.yaml", ["train.rounds=1"])
    out = submit(
        recipe,
        "http://kfp:8888",
        experiment="exp-a",
        run_name="r1",
        arguments={"algorithm__name": "grpo"},
        client_factory=fake,
    )
    client = fake("http://kfp:8888")
    ((name, call),) = [c for c in client.calls if c[0] == "create_run"]
    assert call == {"arguments": {"algorithm__name": "grpo"}, "run_name": "r1", "experiment_name": "exp-a"}
    assert out == {"host": "http://kfp:8888", "experiment": "exp-a", "run_name": "r1", "run_id": "run-1"}
    spec = client.packages["r1"]
    assert spec["pipelineInfo"]["name"] == "care-tiny-care"
    with pytest.raises(ScheduleError, match="unknown pipeline parameters.*algorithm.name"):
        submit(recipe, "http://kfp:8888", arguments={"algorithm.name": "grpo"}, client_factory=fake)


def _schedules(tmp_path: Path, items: list[dict]) -> Path:
    path = tmp_path / "schedules.yaml"
    path.write_text(yaml.safe_dump({"schedules": items}))
    return path


def test_apply_schedules_is_idempotent_and_prunes(tmp_path, fake):
    recipe = str(Path("recipes/tiny-care.yaml").resolve())
    items = [
        {"name": "nightly", "recipe": recipe, "cron": "0 0 2 * * *", "experiment": "e1", "set": ["train.rounds=1"],
         "parameters": {"algorithm__name": "grpo"}},
        {"name": "weekly", "recipe": recipe, "cron": "0 30 4 * * 0", "experiment": "e1", "enabled": False},
    ]  # fmt: skip
    path = _schedules(tmp_path, items)
    first = apply_schedules(path, "h", client_factory=fake)
    client = fake("h")
    # an unmanaged recurring run created by hand in the same experiment must survive
    client.recurring["manual"] = SimpleNamespace(
        recurring_run_id="manual", display_name="by-hand", description="", experiment_id="exp-1"
    )
    second = apply_schedules(path, "h", client_factory=fake)
    assert [c["name"] for c in first["created"]] == ["nightly", "weekly"] and first["deleted"] == []
    assert sorted(second["deleted"]) == ["nightly", "weekly"]
    assert sorted(r.display_name for r in client.recurring.values()) == ["by-hand", "nightly", "weekly"]
    creates = [c for name, c in client.calls if name == "create_recurring_run"]
    assert len(creates) == 4
    nightly = creates[-2]
    assert nightly["cron_expression"] == "0 0 2 * * *" and nightly["max_concurrency"] == 1
    assert nightly["no_catchup"] is True and nightly["params"] == {"algorithm__name": "grpo"}
    assert nightly["enabled"] is True and creates[-1]["enabled"] is False
    assert MANAGED_MARKER in nightly["description"]
    # compile-time override applied: one round unrolled
    spec = client.packages[second["created"][0]["id"]]
    names = {t["taskInfo"]["name"] for t in spec["root"]["dag"]["tasks"].values()}
    assert not any(n.startswith("round 1") for n in names)
    # dropping a schedule from the file deletes its managed run
    apply_schedules(_schedules(tmp_path, items[:1]), "h", client_factory=fake)
    assert sorted(r.display_name for r in client.recurring.values()) == ["by-hand", "nightly"]


@pytest.mark.parametrize(
    ("cron", "message"),
    [("0 2 * * *", "has 5 fields"), ("0 0 2 * * * *", "has 7 fields"), ("0 0 2 * * %", "field 6")],
)
def test_bad_cron_rejected(cron, message):
    with pytest.raises(ScheduleError, match=message):
        validate_cron(cron, "s")


def test_schedule_file_errors_name_the_field(tmp_path, fake):
    recipe = str(Path("recipes/tiny-care.yaml").resolve())
    with pytest.raises(ScheduleError, match="missing field 'cron'"):
        load_schedules(_schedules(tmp_path, [{"name": "a", "recipe": recipe}]))
    with pytest.raises(ScheduleError, match="repeated: \\['a'\\]"):
        load_schedules(_schedules(tmp_path, [{"name": "a", "recipe": recipe, "cron": "0 0 * * * *"}] * 2))
    bad_param = [{"name": "a", "recipe": recipe, "cron": "0 0 * * * *", "parameters": {"nope": 1}}]
    with pytest.raises(ScheduleError, match="schedule 'a'.*nope"):
        apply_schedules(_schedules(tmp_path, bad_param), "h2", client_factory=fake)
    assert fake("h2").calls == []  # nothing touched on the server for a bad file


def test_example_schedules_file_is_valid():
    schedules = load_schedules("pipelines/schedules.yaml")
    assert {s.name for s in schedules} == {"nightly-care-7b", "weekly-grpo-baseline-7b"}
    for s in schedules:
        recipe = load_recipe(s.recipe, s.overrides)
        assert recipe.kubernetes.gpus["update"] == 8
