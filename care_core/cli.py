"""The ``care`` command: argument parsing and dispatch to ``care_core.stages`` (no logic here)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from care_core.config import Recipe, load_recipe
from care_core.errors import describe
from care_core.tracking.redact import install_log_redaction, redact

DEMO_RECIPE = "recipes/tiny-demo.yaml"


def _recipe(args: argparse.Namespace) -> Recipe:
    return load_recipe(args.config, args.set)


def _print(result: Any) -> None:
    print(redact(json.dumps(result, indent=2, default=str)))


def _add_recipe_args(
    parser: argparse.ArgumentParser, required: bool = True, default: str | None = None
) -> None:
    parser.add_argument("-c", "--config", required=required, default=default, help="recipe YAML file")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe key (dotted), repeatable",
    )


def cmd_ingest(args: argparse.Namespace) -> Any:
    from care_core.stages.ingest import run_ingest

    recipe = _recipe(args)
    return run_ingest(recipe, Path(args.out))


def cmd_sft(args: argparse.Namespace) -> Any:
    from care_core.stages.sft import run_sft

    recipe = _recipe(args)
    return run_sft(recipe, Path(args.data), Path(args.out), model_path=args.model)


def cmd_rollout(args: argparse.Namespace) -> Any:
    from care_core.stages.rollout import run_rollout

    recipe = _recipe(args)
    return run_rollout(recipe, args.model, Path(args.data), Path(args.out), args.round)


def cmd_advantage(args: argparse.Namespace) -> Any:
    from care_core.stages.advantage import run_advantage

    recipe = _recipe(args)
    return run_advantage(recipe, Path(args.rollouts), Path(args.out))


def cmd_update(args: argparse.Namespace) -> Any:
    from care_core.stages.update import run_update

    recipe = _recipe(args)
    state = Path(args.state) if args.state else None
    return run_update(
        recipe,
        args.model,
        Path(args.rollouts),
        Path(args.out),
        reference_path=args.reference,
        state_dir=state,
    )


def cmd_evaluate(args: argparse.Namespace) -> Any:
    from care_core.stages.evaluate import run_evaluate

    recipe = _recipe(args)
    data = Path(args.data) if args.data else None
    return run_evaluate(recipe, args.model, Path(args.out), data_dir=data)


def cmd_score(args: argparse.Namespace) -> Any:
    from care_core.stages.score import run_score

    recipe = _recipe(args) if args.config else None
    return run_score(
        Path(args.inp), Path(args.out) if args.out else None, benchmark=args.benchmark, recipe=recipe
    )


def cmd_train(args: argparse.Namespace) -> Any:
    from care_core.stages.train import run_train

    recipe = _recipe(args)
    return run_train(recipe, force=args.force)


def cmd_compile(args: argparse.Namespace) -> Any:
    from pipelines.compile import compile_pipeline

    recipe = _recipe(args)
    return compile_pipeline(recipe, Path(args.output))


def cmd_run(args: argparse.Namespace) -> Any:
    from pipelines.local_run import run_local

    recipe = _recipe(args)
    if args.verbose:  # everything kfp.local and the components print, and the summary as JSON
        return run_local(recipe, work_dir=Path(args.work_dir))
    run_local(
        recipe, work_dir=Path(args.work_dir), progress=True
    )  # step lines + summary; the rest to a log file
    return None


def cmd_demo(args: argparse.Namespace) -> Any:
    args.config = args.config or DEMO_RECIPE
    return cmd_run(args)


def cmd_submit(args: argparse.Namespace) -> Any:
    from pipelines.submit import submit

    recipe = _recipe(args)
    return submit(recipe, host=args.host, experiment=args.experiment, run_name=args.run_name)


def cmd_schedule(args: argparse.Namespace) -> Any:
    from pipelines.submit import apply_schedules

    return apply_schedules(Path(args.schedules), host=args.host)


def cmd_compare(args: argparse.Namespace) -> Any:
    from care_core.tracking.compare import compare_experiment, compare_registered

    if args.registered_model:
        return compare_registered(args.tracking_uri, args.registered_model, Path(args.out))
    return compare_experiment(args.tracking_uri, args.experiment, Path(args.out))


def cmd_recipe(args: argparse.Namespace) -> Any:
    from care_core import recipe_docs

    if args.recipe_command == "explain":
        print(recipe_docs.explain(args.key))
    elif args.recipe_command == "show":
        print(recipe_docs.show(_recipe(args)), end="")
    elif args.output:
        Path(args.output).write_text(recipe_docs.reference_markdown())
    else:
        print(recipe_docs.reference_markdown(), end="")
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="care", description="CARE / GRPO RLVR training of VLMs as a Kubeflow pipeline"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true", help="show the full traceback when a command fails")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, handler: Callable[[argparse.Namespace], Any], help_text: str
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument(
            "--debug",
            action="store_true",
            default=argparse.SUPPRESS,
            help="show the full traceback when the command fails",
        )
        p.set_defaults(handler=handler)
        return p

    p = add(
        "demo",
        cmd_demo,
        "run the whole pipeline on the embedded default (tiny VLM, synthetic data, kfp.local)",
    )
    _add_recipe_args(p, required=False)
    p.add_argument("--work-dir", default=".care", help="pipeline root, artifacts and MLflow store")

    p = add("run", cmd_run, "run the whole pipeline through kfp.local")
    _add_recipe_args(p)
    p.add_argument("--work-dir", default=".care", help="pipeline root, artifacts and MLflow store")

    p = add("ingest", cmd_ingest, "ingest the recipe's sources into example-row Parquet files")
    _add_recipe_args(p)
    p.add_argument("--out", required=True, help="output directory (train/test Parquet + manifest.json)")

    p = add("sft", cmd_sft, "cold-start supervised fine-tuning on the rows' solutions")
    _add_recipe_args(p)
    p.add_argument("--data", required=True, help="ingested data directory")
    p.add_argument("--model", default=None, help="starting model (default: recipe model.path)")
    p.add_argument("--out", required=True, help="output HF model directory")

    p = add("rollout", cmd_rollout, "sample G rollouts per prompt, score them, add RGR rows")
    _add_recipe_args(p)
    p.add_argument("--model", required=True, help="policy model directory")
    p.add_argument("--data", required=True, help="ingested data directory")
    p.add_argument("--round", type=int, default=0, help="round index (seeds prompt sampling)")
    p.add_argument("--out", required=True, help="output rollout Parquet file")

    p = add("advantage", cmd_advantage, "compute GRPO / Dr.GRPO / CARE advantages for rollout rows")
    _add_recipe_args(p)
    p.add_argument("--rollouts", required=True, help="input rollout Parquet file (never modified)")
    p.add_argument("--out", required=True, help="output Parquet file with advantage, role, group_kind")

    p = add("update", cmd_update, "PPO-clipped policy update with KL to the reference")
    _add_recipe_args(p)
    p.add_argument("--model", required=True, help="policy model directory")
    p.add_argument(
        "--reference", default=None, help="frozen reference model (default: the policy at round 0)"
    )
    p.add_argument("--rollouts", required=True, help="rollout Parquet with advantages")
    p.add_argument("--state", default=None, help="optimizer/scheduler state directory carried across rounds")
    p.add_argument("--out", required=True, help="output HF model directory")

    p = add("evaluate", cmd_evaluate, "evaluate a model on the recipe's benchmarks")
    _add_recipe_args(p)
    p.add_argument("--model", required=True, help="model directory or hub id")
    p.add_argument("--data", default=None, help="ingested data directory (for the synthetic held-out split)")
    p.add_argument("--out", required=True, help="output directory (results JSON + Markdown table)")

    p = add("score", cmd_score, "score saved predictions (JSONL) without a model")
    _add_recipe_args(p, required=False)
    p.add_argument("--in", dest="inp", required=True, help="predictions JSONL")
    p.add_argument("--out", default=None, help="scored JSONL (default: print the aggregate only)")
    p.add_argument("--benchmark", default=None, help="score with this benchmark's rules")

    p = add("train", cmd_train, "in-process loop: sft -> rounds of rollout -> advantage -> update -> eval")
    _add_recipe_args(p)
    p.add_argument(
        "--force",
        action="store_true",
        help="reuse cached data/SFT/checkpoints although the recipe changed (see docs/reliability.md)",
    )

    p = add("compile", cmd_compile, "compile the KFP pipeline (IR YAML) for the KFP UI")
    _add_recipe_args(p)
    p.add_argument("-o", "--output", required=True, help="output pipeline YAML")

    p = add("submit", cmd_submit, "create a run on a KFP host")
    _add_recipe_args(p)
    p.add_argument("--host", required=True, help="KFP API endpoint")
    p.add_argument("--experiment", default="care", help="KFP experiment name")
    p.add_argument("--run-name", default=None)

    p = add("schedule", cmd_schedule, "apply recurring runs from a schedules YAML (idempotent)")
    p.add_argument("--schedules", required=True, help="schedules YAML kept in git")
    p.add_argument("--host", required=True, help="KFP API endpoint")

    p = add(
        "compare", cmd_compare, "GRPO vs CARE report from an MLflow experiment, or champion vs challenger"
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--experiment", help="MLflow experiment: latest finished GRPO vs CARE runs")
    which.add_argument(
        "--registered-model", help="MLflow registered model: its champion vs challenger versions"
    )
    p.add_argument("--tracking-uri", default="sqlite:///.care/mlflow.db")
    p.add_argument("--out", default=".care/compare", help="report directory (Markdown, HTML, PNG)")

    p = add("recipe", cmd_recipe, "recipe keys: their type, default and meaning (care_core/config.py)")
    actions = p.add_subparsers(dest="recipe_command", required=True, metavar="ACTION")
    a = actions.add_parser("explain", help="one key (dotted, e.g. algorithm.care.K) or a section")
    a.add_argument("key")
    a = actions.add_parser("show", help="the resolved recipe as YAML, each key under its meaning and default")
    _add_recipe_args(a)
    a = actions.add_parser("reference", help="the Markdown reference of every key (docs/recipe-reference.md)")
    a.add_argument("-o", "--output", default=None, help="write it here instead of printing it")
    return parser


def _report_error(exc: BaseException, debug: bool) -> int:
    """One line ``error: <what> (<where>)`` and a hint on stderr (plus the traceback with --debug)."""
    if debug:
        print(redact("".join(traceback.format_exception(exc))), file=sys.stderr, end="")
    report = describe(exc)
    print(redact("\n".join(report.lines())), file=sys.stderr)
    return report.code


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    install_log_redaction()
    try:
        result = args.handler(args)
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001  (every fault ends as one line + hint)
        return _report_error(exc, args.debug)
    if result is not None:
        _print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
