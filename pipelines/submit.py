"""``care submit`` (one run) and ``care schedule`` (recurring runs from a YAML kept in git) via ``kfp.Client``.

KFP cannot update a recurring run, so ``apply_schedules`` is idempotent by delete-and-recreate: every
recurring run it manages carries a marker in its description; for each experiment in the file, managed
runs with a scheduled name are replaced and managed runs no longer in the file are deleted.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from care_core.config import Recipe, RecipeError, RetrainConfig, load_recipe
from care_core.errors import CareError
from pipelines.compile import compile_pipeline
from pipelines.params import pipeline_params

log = logging.getLogger(__name__)

MANAGED_MARKER = "[managed by care schedule]"
_CRON_FIELD = re.compile(
    r"^(\*|\?|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?(,(\*|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/[0-9]+)?)*$"
)

ClientFactory = Callable[[str], Any]


class ScheduleError(CareError, ValueError):
    """An invalid schedules file; the message names the file, the schedule and the field."""

    default_hint = "fix the named schedule in the schedules YAML"


def make_client(host: str) -> Any:
    """A ``kfp.Client`` for ``host`` (auth from the usual KFP env / kube config)."""
    import kfp

    return kfp.Client(host=host)


def _check_arguments(recipe: Recipe, arguments: dict[str, Any], where: str) -> None:
    known = {p.name for p in pipeline_params(recipe)}
    unknown = sorted(set(arguments) - known)
    if unknown:
        raise ScheduleError(
            f"{where}: unknown pipeline parameters {unknown} (names are recipe keys with '__' for '.')"
        )


def submit(
    recipe: Recipe,
    host: str,
    experiment: str = "care",
    run_name: str | None = None,
    arguments: dict[str, Any] | None = None,
    *,
    client_factory: ClientFactory = make_client,
) -> dict[str, Any]:
    """Compile the pipeline for ``recipe`` and create one run on the KFP ``host``; return its ids."""
    arguments = dict(arguments or {})
    _check_arguments(recipe, arguments, "care submit")
    client = client_factory(host)
    run_name = run_name or f"{recipe.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    with tempfile.TemporaryDirectory() as tmp:
        package = compile_pipeline(recipe, Path(tmp) / "pipeline.yaml")
        result = client.create_run_from_pipeline_package(
            str(package), arguments=arguments, run_name=run_name, experiment_name=experiment
        )
    log.info("submitted run %s (%s) to %s", run_name, result.run_id, host)
    return {"host": host, "experiment": experiment, "run_name": run_name, "run_id": result.run_id}


# --------------------------------------------------------------------------- schedules
@dataclass
class Schedule:
    """One recurring run from the schedules file."""

    name: str
    recipe: Path
    cron: str  # 6 fields: second minute hour day-of-month month day-of-week
    experiment: str = "care"
    overrides: list[str] = field(default_factory=list)  # compile-time --set overrides (rounds, kubernetes.*)
    parameters: dict[str, Any] = field(default_factory=dict)  # run-time pipeline parameter values
    enabled: bool = True
    description: str = ""
    retrain: dict[str, Any] = field(default_factory=dict)  # the recipe's retrain section (compile time)

    @property
    def recipe_overrides(self) -> list[str]:
        """``set`` plus the ``retrain`` keys as ``retrain.<key>=<value>`` overrides."""
        return [*self.overrides, *(f"retrain.{k}={json.dumps(v)}" for k, v in self.retrain.items())]


def validate_cron(cron: str, where: str) -> str:
    """KFP cron: exactly 6 space-separated fields (seconds first); each field syntactically valid."""
    fields = cron.split()
    if len(fields) != 6:
        raise ScheduleError(
            f"{where}: cron {cron!r} has {len(fields)} fields; KFP needs 6 (second minute hour day month weekday)"
        )
    for index, part in enumerate(fields):
        if not _CRON_FIELD.match(part):
            raise ScheduleError(f"{where}: cron {cron!r} field {index + 1} ({part!r}) is not valid")
    return cron


def _check_retrain(section: Any, parameters: dict[str, Any], where: str) -> dict[str, Any]:
    """A schedule's ``retrain`` mapping: known keys; champion/skip need a registered model; the model
    name is compile time (it adds the plan and gate steps), so it cannot be a run-time parameter only."""
    if section is None:
        section = {}
    if not isinstance(section, dict):
        raise ScheduleError(
            f"{where}: field 'retrain' must be a mapping of {sorted(RetrainConfig.__dataclass_fields__)}"
        )
    unknown = sorted(set(section) - set(RetrainConfig.__dataclass_fields__))
    if unknown:
        raise ScheduleError(
            f"{where}: retrain: unknown keys {unknown}; allowed: {sorted(RetrainConfig.__dataclass_fields__)}"
        )
    if section and not section.get("registered_model"):
        raise ScheduleError(
            f"{where}: retrain.registered_model is missing: the registry, warm start and gate need it"
        )
    runtime = sorted(k for k in parameters if k.startswith("retrain__"))
    if runtime and not section.get("registered_model"):
        raise ScheduleError(f"{where}: parameters {runtime} have no effect without retrain.registered_model in the "
                            "schedule's retrain section (it adds the plan and gate steps at compile time)")  # fmt: skip
    return dict(section)


def load_schedules(path: str | Path) -> list[Schedule]:
    """Parse and validate a schedules YAML (``schedules: [{name, recipe, cron, ...}]``)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ScheduleError(f"{path}: cannot read schedules: {exc}") from None
    items = data.get("schedules")
    if not isinstance(items, list) or not items:
        raise ScheduleError(f"{path}: expected a non-empty list under 'schedules'")
    allowed = {f.name for f in Schedule.__dataclass_fields__.values()} | {"set"}
    schedules: list[Schedule] = []
    for index, item in enumerate(items):
        where = f"{path}: schedules[{index}]"
        if not isinstance(item, dict):
            raise ScheduleError(f"{where}: expected a mapping")
        unknown = sorted(set(item) - allowed)
        if unknown:
            raise ScheduleError(f"{where}: unknown fields {unknown}; allowed: {sorted(allowed)}")
        for key in ("name", "recipe", "cron"):
            if not item.get(key):
                raise ScheduleError(f"{where}: missing field {key!r}")
        where = f"{path}: schedule {item['name']!r}"
        retrain = _check_retrain(item.get("retrain"), dict(item.get("parameters") or {}), where)
        recipe_path = Path(item["recipe"])
        if not recipe_path.is_absolute():
            beside = path.parent / recipe_path
            recipe_path = beside if beside.is_file() else recipe_path
        schedules.append(
            Schedule(
                name=str(item["name"]),
                recipe=recipe_path,
                cron=validate_cron(str(item["cron"]), where),
                experiment=str(item.get("experiment", "care")),
                overrides=[str(s) for s in item.get("set", item.get("overrides", [])) or []],
                parameters=dict(item.get("parameters") or {}),
                enabled=bool(item.get("enabled", True)),
                description=str(item.get("description", "")),
                retrain=retrain,
            )
        )
    names = [s.name for s in schedules]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ScheduleError(f"{path}: schedule names must be unique; repeated: {duplicates}")
    return schedules


def _list_all_recurring_runs(client: Any, experiment_id: str) -> list[Any]:
    runs: list[Any] = []
    token = ""
    while True:
        response = client.list_recurring_runs(page_token=token, page_size=100, experiment_id=experiment_id)
        runs.extend(response.recurring_runs or [])
        token = response.next_page_token or ""
        if not token:
            return runs


def apply_schedules(
    path: str | Path, host: str, *, client_factory: ClientFactory = make_client
) -> dict[str, Any]:
    """Make the KFP host's recurring runs match the schedules file (delete + recreate; idempotent)."""
    schedules = load_schedules(path)
    compiled: list[tuple[Schedule, Recipe]] = []
    for schedule in schedules:  # validate everything before touching the server
        try:
            recipe = load_recipe(schedule.recipe, schedule.recipe_overrides)
        except RecipeError as exc:
            raise ScheduleError(f"{path}: schedule {schedule.name!r}: {exc}") from None
        _check_arguments(recipe, schedule.parameters, f"{path}: schedule {schedule.name!r}")
        compiled.append((schedule, recipe))

    client = client_factory(host)
    created: list[dict[str, Any]] = []
    deleted: list[str] = []
    wanted_by_experiment: dict[str, set[str]] = {}
    for schedule, _ in compiled:
        wanted_by_experiment.setdefault(schedule.experiment, set()).add(schedule.name)
    experiment_ids = {name: client.create_experiment(name).experiment_id for name in wanted_by_experiment}

    for experiment, wanted in wanted_by_experiment.items():
        for run in _list_all_recurring_runs(client, experiment_ids[experiment]):
            managed = MANAGED_MARKER in (run.description or "")
            if run.display_name in wanted or managed:
                client.delete_recurring_run(run.recurring_run_id)
                deleted.append(run.display_name)

    with tempfile.TemporaryDirectory() as tmp:
        for schedule, recipe in compiled:
            package = compile_pipeline(recipe, Path(tmp) / f"{schedule.name}.yaml")
            run = client.create_recurring_run(
                experiment_id=experiment_ids[schedule.experiment],
                job_name=schedule.name,
                description=f"{schedule.description} {MANAGED_MARKER}".strip(),
                cron_expression=schedule.cron,
                max_concurrency=1,
                no_catchup=True,
                params=schedule.parameters,
                pipeline_package_path=str(package),
                enabled=schedule.enabled,
            )
            created.append({"name": schedule.name, "id": run.recurring_run_id, "cron": schedule.cron})
            log.info("recurring run %s (%s) -> %s", schedule.name, schedule.cron, run.recurring_run_id)
    return {"host": host, "created": created, "deleted": deleted}
