"""The CARE/GRPO Kubeflow pipeline, built from a recipe.

    resolve-recipe -> ingest -> sft -> rounds x (rollout -> advantage -> update) -> evaluate

Rounds are unrolled at compile time (KFP v2 has no loops). Every other recipe value is a pipeline
parameter (``pipelines.params``); the first step merges them into the resolved recipe YAML that all
stage components receive. Each stage's ``care_core.stages.<stage>.run_<stage>`` is imported at compile
time (``check_stage``), so a broken stage fails the compile loudly, not later in a pod. ``stages`` may
name a subset (the round chain needs all of rollout, advantage and update).

Platform settings (kfp-kubernetes) come from ``recipe.kubernetes``: GPU type/count on sft, rollout,
update and evaluate, node selectors, tolerations, S3 and MLflow credentials from Secrets as env, a
run workspace PVC for hot checkpoints, caching off for the RL stages, retries with backoff.

Scheduled retraining (``recipe.retrain.registered_model`` set at compile time, README: Scheduled
retraining): ``retrain plan`` follows ingest; the rest runs under ``dsl.If(plan == "train")`` with
SFT warm-started from the plan's ``start`` model, and ``register + gate`` follows evaluate.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import itertools
import linecache
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

from kfp import dsl
from kfp import kubernetes as k8s

from care_core.config import Recipe, recipe_to_yaml
from care_core.constants import MLFLOW_SECRET_KEYS, ROUND_STAGES, S3_SECRET_KEYS, STAGES
from components import make_component
from pipelines.params import PipelineParam, pipeline_params

log = logging.getLogger(__name__)

GPU_STAGES = ("sft", "rollout", "update", "evaluate")
WORKSPACE_MOUNT = "/workspace"
_TYPE_NAMES = {str: "str", int: "int", float: "float", bool: "bool", list: "list", dict: "dict"}
_counter = itertools.count()


def check_stage(stage: str) -> None:
    """Import ``care_core.stages.<stage>`` and find ``run_<stage>``: a broken stage fails the compile here
    (the components import their stage only inside the pod)."""
    try:
        module = importlib.import_module(f"care_core.stages.{stage}")
    except Exception as exc:
        raise ImportError(
            f"pipeline stage {stage!r}: care_core.stages.{stage} failed to import: {exc!r}"
        ) from exc
    if not callable(getattr(module, f"run_{stage}", None)):
        raise ImportError(f"pipeline stage {stage!r}: care_core.stages.{stage} has no function run_{stage}")


def pipeline_name(recipe: Recipe) -> str:
    """KFP-friendly pipeline name from the recipe name (lowercase, dashes)."""
    slug = re.sub(r"[^a-z0-9-]+", "-", recipe.name.lower()).strip("-") or "care"
    return slug if slug.startswith("care") else f"care-{slug}"


def _resolve_component(params: list[PipelineParam], image: str) -> dsl.PythonComponent:
    """A lightweight component with one typed input per pipeline parameter that merges them into the recipe.

    Its source is generated (the parameter list follows the recipe schema) and registered in
    ``linecache`` so KFP can embed it like any other component.
    """
    args = ", ".join(f"{p.name}: {_TYPE_NAMES[p.type]}" for p in params)
    source = (
        f"def resolve_recipe(base_recipe_yaml: str, {args}) -> str:\n"
        '    """Merge the pipeline parameters over the compiled recipe; fail early naming a bad key."""\n'
        "    values = dict(locals())\n"
        "    from pipelines.params import merge_parameters\n"
        "\n"
        "    return merge_parameters(values.pop('base_recipe_yaml'), values)\n"
    )
    filename = f"<care-resolve-recipe-{next(_counter)}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    namespace: dict[str, Any] = {}
    exec(compile(source, filename, "exec", dont_inherit=True), namespace)  # noqa: S102  (generated from the recipe schema)
    return dsl.component(namespace["resolve_recipe"], base_image=image, install_kfp_package=False)


def _apply_platform(task: dsl.PipelineTask, stage: str, recipe: Recipe, workspace: Any) -> None:
    kube = recipe.kubernetes
    gpus = int(kube.gpus.get(stage, 0)) if stage in GPU_STAGES else 0
    if gpus > 0:
        task.set_accelerator_type(kube.accelerator_type).set_accelerator_limit(gpus)
    for key, value in kube.node_selector.items():
        k8s.add_node_selector(task, label_key=key, label_value=value)
    for tol in kube.tolerations:
        k8s.add_toleration(
            task,
            key=tol.get("key"),
            operator=tol.get("operator", "Equal"),
            value=tol.get("value"),
            effect=tol.get("effect"),
        )
    k8s.use_secret_as_env(task, kube.s3_secret, {key: key for key in S3_SECRET_KEYS})
    k8s.use_secret_as_env(task, kube.mlflow_secret, {key: key for key in MLFLOW_SECRET_KEYS}, optional=True)
    if workspace is not None:
        k8s.mount_pvc(task, pvc_name=workspace, mount_path=WORKSPACE_MOUNT)
        task.set_env_variable("CARE_WORKSPACE", WORKSPACE_MOUNT)
        task.set_env_variable("HF_HOME", f"{WORKSPACE_MOUNT}/hf")
    if kube.retries > 0:
        task.set_retry(num_retries=kube.retries, backoff_duration="60s", backoff_factor=2.0)


def _retraining(recipe: Recipe, stages: set[str], trains: bool) -> bool:
    """Whether the pipeline gets the retrain plan and register + gate steps (``retrain.registered_model`` set)."""
    if not recipe.retrain.registered_model:
        return False
    if "evaluate" not in stages or not trains:
        raise ValueError("retrain.registered_model needs the evaluate stage and something trained (SFT or rounds): "
                         "the gate compares eval scores")  # fmt: skip
    if not recipe.train.sft.enable:
        log.warning(
            "retrain: a warm start enters through SFT; with train.sft.enable=false only start_from=base runs"
        )
    return True


def build_pipeline(
    recipe: Recipe, stages: Iterable[str] | None = None, *, platform: bool = True
) -> Callable[..., Any]:
    """The KFP pipeline (a GraphComponent) for ``recipe``.

    ``stages``: stages to include (default: all of ``STAGES``). ``platform``: add kfp-kubernetes
    settings and the workspace PVC (off for ``kfp.local``, which cannot create PVCs).
    """
    stages = set(STAGES if stages is None else stages)
    unknown = stages - set(STAGES)
    if unknown:
        raise ValueError(f"unknown stages {sorted(unknown)}; known: {list(STAGES)}")
    for stage in (s for s in STAGES if s in stages):
        check_stage(stage)
    if "ingest" not in stages:
        raise ValueError("the pipeline needs the ingest stage (care_core.stages.ingest.run_ingest)")
    use_sft = "sft" in stages and recipe.train.sft.enable
    rounds = recipe.train.rounds if set(ROUND_STAGES) <= stages else 0
    if recipe.train.rounds and not rounds:
        log.warning("rounds skipped: stages %s are not in the stage list", sorted(set(ROUND_STAGES) - stages))
    kube = recipe.kubernetes
    params = pipeline_params(recipe)
    base_yaml = recipe_to_yaml(recipe)

    def image(stage: str) -> str:
        return kube.gpu_image if kube.gpus.get(stage, 0) > 0 else kube.image

    comps = {stage: make_component(stage, image(stage)) for stage in stages}
    if "evaluate" in stages and recipe.train.eval_every and rounds:
        comps["evaluate_curve"] = make_component("evaluate_curve", image("evaluate"))
    retraining = _retraining(recipe, stages, use_sft or rounds > 0)
    if retraining:
        comps.update({step: make_component(step, kube.image) for step in ("plan", "register")})
    resolve = _resolve_component(params, kube.image)

    def body(*args: Any, **values: Any) -> str:
        values.update(zip((p.name for p in params), args, strict=False))  # KFP passes channels positionally
        workspace = None
        create_pvc = None
        if platform and kube.workspace_pvc:
            workspace = kube.workspace_pvc
        elif platform:
            create_pvc = k8s.CreatePVC(
                pvc_name_suffix="-care-workspace", access_modes=["ReadWriteOnce"], size=kube.workspace_size,
                storage_class_name="",
            )  # fmt: skip
            workspace = create_pvc.outputs["name"]
        run_id = dsl.PIPELINE_JOB_ID_PLACEHOLDER
        resolved = resolve(base_recipe_yaml=base_yaml, **values).set_display_name("resolve recipe")
        resolved.set_caching_options(False)
        recipe_yaml = resolved.output
        tasks: list[dsl.PipelineTask] = []

        def add(stage: str, name: str, **kwargs: Any) -> dsl.PipelineTask:
            task = comps[stage](recipe_yaml=recipe_yaml, kfp_run_id=run_id, **kwargs).set_display_name(name)
            if stage in ROUND_STAGES or stage in (
                "plan",
                "register",
            ):  # never cached: each round samples anew,
                task.set_caching_options(False)  # the plan and the gate read the registry as it is now
            if platform:
                _apply_platform(task, stage, recipe, workspace)
            tasks.append(task)
            return task

        ingest = add("ingest", "ingest")
        data = ingest.outputs["data"]
        plan = add("plan", "retrain plan", data=data) if retraining else None
        # scheduled retraining: everything after the plan runs only when it says "train" (not "skip")
        with (
            dsl.If(plan.outputs["Output"] == "train", "train")
            if plan is not None
            else contextlib.nullcontext()
        ):
            init = {"init": plan.outputs["start"]} if plan is not None else {}
            policy = add("sft", "sft", data=data, **init).outputs["model"] if use_sft else None
            reference = policy
            state = None
            every = recipe.train.eval_every if "evaluate" in stages and rounds else 0

            curve_evals: list[dsl.PipelineTask] = []

            def eval_at(step: int) -> None:  # a learning-curve point: held-out accuracy after `step` rounds
                model = {"model": policy} if policy is not None else {}
                task = comps["evaluate_curve"](recipe_yaml=recipe_yaml, kfp_run_id=run_id, data=data,
                                               round_index=step, **model)  # fmt: skip
                task.set_display_name(f"evaluate round {step}").set_caching_options(False)
                if platform:
                    _apply_platform(task, "evaluate", recipe, workspace)
                tasks.append(task)
                curve_evals.append(task)

            if every and policy is not None:
                eval_at(0)
            for r in range(rounds):
                maybe_model = {"model": policy} if policy is not None else {}
                ro = add("rollout", f"round {r}: rollout", round_index=r, data=data, **maybe_model)
                adv = add(
                    "advantage", f"round {r}: advantage", round_index=r, rollouts=ro.outputs["rollouts"]
                )
                extra = dict(maybe_model)
                if reference is not None:
                    extra["reference"] = reference
                if state is not None:
                    extra["state"] = state
                up = add(
                    "update", f"round {r}: update", round_index=r, rollouts=adv.outputs["scored"], **extra
                )
                policy = state = up.outputs["updated"]
                if every and (r + 1) % every == 0 and r + 1 < rounds:
                    eval_at(r + 1)
            if "evaluate" in stages:
                ev = add(
                    "evaluate", "evaluate", data=data, **({"model": policy} if policy is not None else {})
                )
                if curve_evals:  # the final evaluate finishes the MLflow run: after every curve point
                    ev.after(*curve_evals)
            if plan is not None:
                add(
                    "register",
                    "register + gate",
                    data=data,
                    results=ev.outputs["results"],
                    model=policy,
                    model_output=f"round-{rounds - 1}/model" if rounds else "sft/model",
                )
            if create_pvc is not None:
                k8s.DeletePVC(pvc_name=create_pvc.outputs["name"]).after(tasks[-1]).set_display_name(
                    "delete workspace"
                )
        if create_pvc is not None and plan is not None:
            with dsl.Else("skip"):
                k8s.DeletePVC(pvc_name=create_pvc.outputs["name"]).after(plan).set_display_name(
                    "delete workspace"
                )
        if plan is not None:  # the steps after the plan may be skipped; every step logs into one MLflow run
            return ingest.outputs["Output"]
        return tasks[-1].outputs["Output"]  # the MLflow run id

    body.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(
                p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=p.default, annotation=p.type
            )
            for p in params
        ],
        return_annotation=str,
    )
    body.__name__ = pipeline_name(recipe).replace("-", "_")
    description = (
        f"CARE pipeline for recipe {recipe.name!r} ({recipe.algorithm.name}), {rounds} rounds, "
        f"stages: {', '.join(s for s in STAGES if s in stages)}. Parameters are recipe keys ('__' = '.')."
    )
    return dsl.pipeline(name=pipeline_name(recipe), description=description)(body)
