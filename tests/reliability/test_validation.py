"""Issue 17 item 6: validation at load time, and stages that check their inputs before loading a model.

"Before the model load" is proven with a real model folder whose weights are corrupt: a stage that
loaded the model first would fail on the weights, not name the bad input.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from care_core.cli import main
from care_core.config import BENCHMARK_NAMES, SOURCE_NAMES, RecipeError, build_recipe, load_recipe
from care_core.errors import FileFault, InputError, MissingInput, ModelPathError

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "tiny-care.yaml"


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.prompts_per_round=0", "train.prompts_per_round"),
        ("train.mini_batch_size=0", "train.mini_batch_size"),
        ("train.ppo_epochs=0", "train.ppo_epochs"),
        ("rollout.temperature=-1", "rollout.temperature"),
        ("rollout.top_p=0", "rollout.top_p"),
        ("rollout.top_p=1.5", "rollout.top_p"),
        ("rollout.max_new_tokens=0", "rollout.max_new_tokens"),
        ("rollout.batch_size=0", "rollout.batch_size"),
        ("eval.temperature=-0.5", "eval.temperature"),
        ("eval.top_p=0", "eval.top_p"),
        ("eval.batch_size=0", "eval.batch_size"),
        ("train.sft.batch_size=0", "train.sft.batch_size"),
        ("train.sft.max_steps=0", "train.sft.max_steps"),
        ("algorithm.care.rgr.top_p=2", "algorithm.care.rgr.top_p"),
        ("data.val_fraction=1.0", "data.val_fraction"),
        ("optim.betas=[0.9]", "optim.betas"),
        ("eval.benchmarks=[{name: mathvistaa}]", "eval.benchmarks.0.name"),
        ("eval.benchmarks=[{name: mmmu}, {name: mmmu}]", "eval.benchmarks.1.name"),
        ("data.sources=[{name: virl39kk}]", "data.sources.0.name"),
        ("data.sources=[{name: synthetic, role: train}]", "data.sources.0.role"),
    ],
)
def test_bad_values_are_refused_when_the_recipe_loads(override: str, key: str) -> None:
    with pytest.raises(RecipeError) as info:
        load_recipe(RECIPE, [override])
    err = info.value
    assert err.where == str(RECIPE) and err.what.startswith(f"{key}=")
    assert "\n" not in str(err)


def test_shipped_defaults_still_load() -> None:
    recipe = load_recipe(RECIPE)
    assert recipe.train.prompts_per_round >= 1 and recipe.rollout.temperature > 0
    assert build_recipe({"rollout": {"temperature": 0.0}}).rollout.temperature == 0.0  # greedy is allowed


def test_known_names_match_the_stages() -> None:
    from care_core.data.sources import SOURCES
    from care_core.stages.evaluate import KNOWN_BENCHMARKS

    assert set(SOURCE_NAMES) == {"synthetic", *SOURCES}
    assert set(BENCHMARK_NAMES) == set(KNOWN_BENCHMARKS)


@pytest.mark.parametrize("command", ["compile", "train"])
def test_compile_and_train_refuse_a_benchmark_typo(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        command,
        "-c",
        str(RECIPE),
        "--set",
        "eval.benchmarks=[{name: mathvistaa}]",
        "--set",
        f"train.output_dir={tmp_path / 'runs'}",
        "--set",
        f"tracking.uri=sqlite:///{tmp_path}/m.db",
    ]
    args += ["-o", str(tmp_path / "p.yaml")] if command == "compile" else []
    assert main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0] == (
        f"error: eval.benchmarks.0.name='mathvistaa' is not one of {list(BENCHMARK_NAMES)} "
        f"(unknown benchmark 'mathvistaa') ({RECIPE})"
    )
    assert lines[1].startswith("hint: ") and len(lines) == 2
    assert (
        not (tmp_path / "p.yaml").exists()
        and not (tmp_path / "runs").exists()
        and not (tmp_path / "m.db").exists()
    )


# --------------------------------------------------------------------------- model paths
@pytest.mark.parametrize("ref", ["./no/such/model", "/definitely/not/here", "~/no-such-care-model", "a/b/c"])
def test_missing_local_model_folder_is_named_not_looked_up_on_the_hub(ref: str) -> None:
    from care_core.models import load_policy

    with pytest.raises(ModelPathError, match="does not exist") as info:
        load_policy(ref)
    assert info.value.where == ref and "hub" in info.value.what


def test_org_slash_name_is_local_when_the_org_folder_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from care_core.models.loading import check_model_path, looks_local

    monkeypatch.chdir(tmp_path)
    assert not looks_local("Qwen/Qwen2.5-VL-7B-Instruct")
    (tmp_path / "runs").mkdir()
    assert looks_local("runs/sft")
    with pytest.raises(ModelPathError, match="does not exist"):
        check_model_path("runs/sft")
    (tmp_path / "runs" / "sft").mkdir()
    with pytest.raises(ModelPathError, match="no config.json"):
        check_model_path("runs/sft")


@pytest.fixture(scope="module")
def corrupt_model(micro_dir: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A copy of the micro model with its safetensors file cut in half."""
    folder = tmp_path_factory.mktemp("corrupt") / "model"
    shutil.copytree(micro_dir, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return str(folder)


def test_corrupt_weights_are_named(corrupt_model: str) -> None:
    from care_core.models import load_policy

    with pytest.raises(FileFault, match="SafetensorError") as info:
        load_policy(corrupt_model)
    assert info.value.where == corrupt_model


def _synthetic_data(tmp_path: Path, n_train: int) -> Path:
    from care_core.stages.ingest import run_ingest

    data = tmp_path / "data"
    run_ingest(build_recipe({"data": {"synthetic": {"n_train": n_train, "n_test": 2}}}), data)
    return data


def test_sft_with_an_empty_data_folder_fails_before_the_model_load(
    corrupt_model: str, tmp_path: Path
) -> None:
    from care_core.stages.sft import run_sft

    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingInput, match="neither sft.parquet nor train.parquet") as info:
        run_sft(build_recipe({}), tmp_path / "empty", tmp_path / "out", model_path=corrupt_model)
    assert info.value.where == str(tmp_path / "empty") and not (tmp_path / "out").exists()


def test_more_prompts_per_round_than_rows_fails_before_the_model_load(
    corrupt_model: str, tmp_path: Path
) -> None:
    from care_core.stages.rollout import run_rollout

    data = _synthetic_data(tmp_path, n_train=3)
    recipe = build_recipe({"train": {"prompts_per_round": 4}})
    with pytest.raises(InputError, match=r"train.prompts_per_round=4 is more than the 3 rows") as info:
        run_rollout(recipe, corrupt_model, data, tmp_path / "r.parquet", 0)
    assert info.value.where == str(data / "train.parquet") and not (tmp_path / "r.parquet").exists()


def test_rollout_with_a_missing_model_folder_is_named(tmp_path: Path) -> None:
    from care_core.stages.rollout import run_rollout

    data = _synthetic_data(tmp_path, n_train=3)
    with pytest.raises(ModelPathError, match="does not exist"):
        run_rollout(
            build_recipe({"train": {"prompts_per_round": 2}}),
            str(tmp_path / "nope"),
            data,
            tmp_path / "r.parquet",
            0,
        )


def test_update_with_truncated_rollouts_fails_before_the_model_load(
    corrupt_model: str, tmp_path: Path
) -> None:
    from care_core.stages.update import run_update

    rollouts = tmp_path / "adv.parquet"
    pq.write_table(pa.table({"x": list(range(1000))}), rollouts)
    rollouts.write_bytes(rollouts.read_bytes()[:-40])  # cut off the footer
    with pytest.raises(FileFault, match="cannot read Parquet") as info:
        run_update(build_recipe({}), corrupt_model, rollouts, tmp_path / "out")
    assert info.value.where == str(rollouts) and not (tmp_path / "out").exists()


def test_update_with_a_missing_reference_is_named(micro_dir: str, tmp_path: Path) -> None:
    from care_core.stages.update import run_update

    rollouts = tmp_path / "adv.parquet"
    pq.write_table(pa.table({"x": [1]}), rollouts)
    with pytest.raises(ModelPathError, match="--reference folder does not exist"):
        run_update(
            build_recipe({}), micro_dir, rollouts, tmp_path / "out", reference_path=str(tmp_path / "ref")
        )


def test_evaluate_with_a_missing_model_folder_is_named(tmp_path: Path) -> None:
    from care_core.stages.evaluate import run_evaluate

    with pytest.raises(ModelPathError, match="--model folder does not exist"):
        run_evaluate(build_recipe({}), str(tmp_path / "nope"), tmp_path / "eval")


def test_care_train_refuses_more_prompts_than_rows_before_sft(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "train",
        "-c",
        str(RECIPE),
        "--set",
        "data.synthetic.n_train=4",
        "--set",
        "train.prompts_per_round=8",
        "--set",
        f"train.output_dir={tmp_path / 'runs'}",
        "--set",
        f"tracking.uri=sqlite:///{tmp_path}/m.db",
    ]
    assert main(args) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    run_dir = tmp_path / "runs" / "tiny-care"
    assert (
        lines[-2]
        == f"error: train.prompts_per_round=8 is more than the 4 rows of the data ({run_dir / 'data' / 'train.parquet'})"
    )
    assert not (run_dir / "sft").exists() and not (tmp_path / "m.db").exists()


def test_dynamic_sampling_refill_never_repeats_a_prompt() -> None:
    from care_core.stages.rollout import sample_prompt_indices

    first = sample_prompt_indices(5, 3, seed=0, round_index=1)
    refill = sample_prompt_indices(5, 3, seed=0, round_index=2, exclude=set(first))
    assert len(refill) == 2 and len(set(refill)) == 2 and not set(refill) & set(first)
    assert sample_prompt_indices(5, 3, seed=0, round_index=3, exclude=set(range(5))) == []
