"""Typed recipe: one dataclass tree, YAML recipes merged with ``--set`` overrides.

Defaults equal the CARE reference values (``docs/method.md``); recipes for small machines
scale sizes down. Loading validates every key and type: an unknown key or a wrong type is a
``RecipeError`` naming the key and the recipe file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import MISSING, OmegaConf  # noqa: F401  (MISSING re-exported for recipes)
from omegaconf.errors import OmegaConfBaseException

from care_core.errors import CareError


class RecipeError(CareError, ValueError):
    """An invalid recipe: unknown key, wrong type, or an inconsistent value (``where``: the recipe file)."""

    exit_code = 2
    default_hint = "fix the key in the recipe file or its --set override (README.md: Recipes)"


# --------------------------------------------------------------------------- model
@dataclass
class TinyModelConfig:
    """Settings of the random-initialised offline Qwen-VL (used when ``model.path`` is ``tiny://``)."""

    preset: str = "tiny"  # tiny | small | micro
    seed: int = 0
    vocab_size: int = 1024  # BPE vocabulary trained on the synthetic corpus (special tokens added on top)
    image_size: int = 64  # synthetic images are rendered at this side length (pixels)


@dataclass
class ModelConfig:
    """Policy model. ``path``: a local HF folder, a hub id, or ``tiny://<preset>``."""

    path: str = "tiny://tiny"
    dtype: str = "float32"  # float32 | bfloat16 | float16
    attn_implementation: str = "sdpa"
    freeze_vision: bool = False
    gradient_checkpointing: bool = False
    cache_dir: str = ".care/models"
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)


# --------------------------------------------------------------------------- data
@dataclass
class SourceConfig:
    """One dataset source. ``name`` picks the adapter (``synthetic``, ``virl39k``, ``geometry3k``, ...)."""

    name: str = "synthetic"
    hub_id: str | None = None
    path: str | None = None  # local files in the hub's own layout (the offline path)
    config_name: str | None = None
    split: str = "train"
    limit: int | None = None
    image_root: str | None = None  # Vision-R1-cold: images live outside the repo
    role: str = "rl"  # rl | sft | both


@dataclass
class SyntheticConfig:
    """The generated, verifiable visual task suite (embedded default)."""

    families: list[str] = field(default_factory=lambda: ["count", "compare", "bar_read", "bar_add", "choice"])
    difficulty: list[int] = field(default_factory=lambda: [1, 2])
    n_train: int = 2000
    n_test: int = 200
    seed: int = 0
    test_seed: int = 1_000_003


@dataclass
class DataConfig:
    sources: list[SourceConfig] = field(default_factory=lambda: [SourceConfig()])
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    bad_rows: str = "error"  # error | skip
    dedup: bool = True
    val_fraction: float = 0.0
    system_prompt: str = (
        "You are a helpful assistant. First think step by step inside <think></think>, "
        "then give the final answer inside <answer></answer>."
    )
    prompt_template: str = "{problem}"
    max_prompt_length: int = 1024
    image_max_pixels: int = 1_003_520


# --------------------------------------------------------------------------- rollout
@dataclass
class VLLMConfig:
    gpu_memory_utilization: float = 0.6
    tensor_parallel_size: int = 1
    enforce_eager: bool = False
    max_model_len: int = 4096


@dataclass
class RolloutConfig:
    engine: str = "hf"  # hf | vllm
    n: int = 8  # G rollouts per prompt
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 1024
    batch_size: int = 64  # prompts decoded together
    vllm: VLLMConfig = field(default_factory=VLLMConfig)


# --------------------------------------------------------------------------- algorithm
@dataclass
class RescueConfig:
    """All-negative rescue (docs/method.md §5)."""

    enable: bool = True
    delta: float = 0.1
    normalize: bool = True  # true: z-score pseudo-rewards (reference; delta cancels)
    logprob_norm: str = "sum"  # sum | mean: pseudo-anchor score
    # authors: first pick farthest from the pseudo-anchor t, then distances to the picked negatives
    # only (the reference code); pseudo_anchor: t counts as picked throughout (earlier project choice)
    seeding: str = "authors"  # authors | pseudo_anchor


@dataclass
class RGRConfig:
    """Reflection-Guided Resampling (docs/method.md §6)."""

    enable: bool = True
    template: str = "structured"  # structured | sentence | none (promptless-resampling control)
    train_on: str = "continuation"  # continuation | repaired_response
    temperature: float = 0.6
    top_p: float = 0.95
    max_tokens: int = 512


@dataclass
class RegionConfig:
    """Region-weighted token advantages (docs/method.md §7)."""

    enable: bool = True
    tau_pos: float = 0.005
    include_tags: bool = False  # false: spans are the content between the tags (authors); true: tags too
    no_answer: str = "whole"  # whole: no answer span -> every token is answer (authors) | outside_think
    pseudo_anchor_think: bool = False  # false: the rescue pseudo-anchor's think weighs 0; true: tau_pos


@dataclass
class CareConfig:
    K: int = 4
    M: int = 6
    s: float = 0.5
    s_refl: float | None = None  # None: s / 2
    eps: float = 1e-6
    equalize: bool = True
    positive_rule: str = "accuracy"  # accuracy (accuracy == 1) | reward (reward > 0, reference code)
    rescue: RescueConfig = field(default_factory=RescueConfig)
    rgr: RGRConfig = field(default_factory=RGRConfig)
    region: RegionConfig = field(default_factory=RegionConfig)

    @property
    def reflection_scale(self) -> float:
        """s_refl, or s / 2 when unset (the one place it is resolved)."""
        return self.s / 2 if self.s_refl is None else self.s_refl


@dataclass
class GRPOConfig:
    std: str = "unbiased"  # unbiased (EasyR1/verl torch.std) | population
    eps: float = 1e-6


@dataclass
class DynamicSamplingConfig:
    """DAPO dynamic sampling: drop all-correct / all-wrong groups and refill."""

    enable: bool = False
    max_tries: int = 3


@dataclass
class AlgorithmConfig:
    name: str = "care"  # a registered algorithm: grpo | dr_grpo | care (care_core.algorithms.registry)
    care: CareConfig = field(default_factory=CareConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    dynamic_sampling: DynamicSamplingConfig = field(default_factory=DynamicSamplingConfig)
    params: dict[str, Any] = field(default_factory=dict)  # free-form, for algorithms registered elsewhere


# --------------------------------------------------------------------------- reward / loss / optim
@dataclass
class RewardConfig:
    format_weight: float = 0.1  # lam in r = (1 - lam) * accuracy + lam * format
    fallback: str = "last_number"  # none | last_number | last_line: answer extraction fallback
    math_verify_timeout_s: float = 3.0


@dataclass
class KLConfig:
    enable: bool = True
    type: str = "k3"  # k1 | k2 | k3
    beta: float = 0.01


@dataclass
class LossConfig:
    eps_low: float = 0.2
    eps_high: float = 0.3
    dual_clip: float | None = 3.0
    agg: str = "token-mean"  # token-mean | seq-mean-token-mean | seq-mean-token-sum-norm
    kl: KLConfig = field(default_factory=KLConfig)


@dataclass
class OptimConfig:
    lr: float = 1e-6
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    grad_clip: float = 1.0
    warmup_steps: int = 0
    scheduler: str = "constant"  # constant | cosine | linear


# --------------------------------------------------------------------------- training
@dataclass
class SFTConfig:
    """Cold-start supervised fine-tuning on the rows' ``solution``."""

    enable: bool = True
    epochs: float = 1.0
    max_steps: int = -1
    lr: float = 1e-5
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    max_length: int = 1024
    warmup_steps: int = 0  # linear LR warm-up (then linear decay), as transformers' TrainingArguments


@dataclass
class DistributedConfig:
    backend: str = "plain"  # plain | deepspeed
    zero_stage: int = 2
    launcher: str = "torchrun"  # torchrun | deepspeed
    nodes: int = 1
    procs_per_node: int = 1
    bf16: bool = False


@dataclass
class TrainConfig:
    rounds: int = 3
    prompts_per_round: int = 512
    mini_batch_size: int = 128  # prompts per optimizer step
    micro_batch_size: int = 4  # sequences per forward/backward
    ppo_epochs: int = 1
    recompute_old_logprobs: bool = False  # required when rollouts came from vLLM
    seed: int = 0
    output_dir: str = ".care/runs"
    resume: str = "auto"  # auto | never | <checkpoint path>
    eval_every: int = 0  # rounds between periodic evals in `care train` (0: only at the end)
    sft: SFTConfig = field(default_factory=SFTConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)


# --------------------------------------------------------------------------- eval / tracking / storage
@dataclass
class BenchmarkConfig:
    name: str = "synthetic"  # synthetic | mathvista | mathverse | mathvision | mmmu | mmmu_pro_standard | mmmu_pro_vision
    hub_id: str | None = None
    path: str | None = None
    config_name: str | None = None
    split: str | None = None
    limit: int | None = None


@dataclass
class EvalConfig:
    benchmarks: list[BenchmarkConfig] = field(default_factory=lambda: [BenchmarkConfig()])
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 1024
    batch_size: int = 32
    # official: each benchmark's own deterministic rule (leaderboard-comparable); strict: the
    # project's stricter rules (docs/benchmarks.md, "Scoring modes")
    scoring: str = "official"


@dataclass
class TrackingConfig:
    uri: str = "sqlite:///.care/mlflow.db"
    experiment: str = "care"
    run_name: str | None = None


@dataclass
class StorageConfig:
    artifact_root: str = ".care/artifacts"  # local path or s3://bucket/prefix
    retries: int = 5
    multipart_threshold_mb: int = 64


@dataclass
class KubernetesConfig:
    """Platform settings applied by kfp-kubernetes when compiling the pipeline."""

    image: str = "ghcr.io/care-pipelines/care:0.1.0"
    gpu_image: str = "ghcr.io/care-pipelines/care-gpu:0.1.0"
    accelerator_type: str = "nvidia.com/gpu"
    gpus: dict[str, int] = field(default_factory=dict)  # stage -> GPU count (sft, rollout, update, evaluate)
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, str]] = field(default_factory=list)
    s3_secret: str = "care-s3"
    mlflow_secret: str = "care-mlflow"
    workspace_pvc: str | None = None
    workspace_size: str = "200Gi"
    retries: int = 2


@dataclass
class RetrainConfig:
    """Scheduled retraining with the MLflow Model Registry (README: Scheduled retraining).

    The pipeline gets its lineage/warm-start step and its register + eval-gate step when
    ``registered_model`` is set at compile time. ``start_from``: ``base`` (the recipe's model),
    ``champion`` (the version the registered model's ``champion`` alias points to; base when there is
    none yet) or a model URI (``s3://``, ``runs:/``, ``models:/``, ``mlflow-artifacts:/`` or a local folder).
    """

    registered_model: str | None = None
    start_from: str = "base"  # base | champion | <model URI>
    min_improvement: float = 0.0  # promote when score >= champion's score + min_improvement
    skip_if_unchanged: bool = True  # same data fingerprint and training recipe as the champion: skip


@dataclass
class Recipe:
    """The whole run configuration. ``name`` defaults to the recipe file's stem."""

    name: str = "care"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    kubernetes: KubernetesConfig = field(default_factory=KubernetesConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)


_CHOICES: dict[str, tuple[str, ...]] = {
    "model.dtype": ("float32", "bfloat16", "float16"),
    "data.bad_rows": ("error", "skip"),
    "rollout.engine": ("hf", "vllm"),
    "algorithm.care.positive_rule": ("accuracy", "reward"),
    "algorithm.care.rescue.logprob_norm": ("sum", "mean"),
    "algorithm.care.rescue.seeding": ("authors", "pseudo_anchor"),
    "algorithm.care.region.no_answer": ("whole", "outside_think"),
    "algorithm.care.rgr.template": ("structured", "sentence", "none"),
    "algorithm.care.rgr.train_on": ("continuation", "repaired_response"),
    "algorithm.grpo.std": ("unbiased", "population"),
    "loss.kl.type": ("k1", "k2", "k3"),
    "loss.agg": ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"),
    "optim.scheduler": ("constant", "cosine", "linear"),
    "train.distributed.backend": ("plain", "deepspeed"),
    "train.distributed.launcher": ("torchrun", "deepspeed"),
    "reward.fallback": ("none", "last_number", "last_line"),
    "eval.scoring": ("official", "strict"),
}


def _get(recipe: Recipe, dotted: str) -> Any:
    value: Any = recipe
    for part in dotted.split("."):
        value = value[int(part)] if part.isdigit() else getattr(value, part)
    return value


# names the stages know (kept equal to care_core.data.sources.SOURCES / care_core.stages.evaluate, tested)
SOURCE_NAMES = ("synthetic", "chartqa", "geometry3k", "mathverse", "mathvision", "mathvista", "mmmu",
                "mmmu_pro_standard", "mmmu_pro_vision", "virl39k", "vision_r1_cold")
BENCHMARK_NAMES = ("synthetic", "mathvista", "mathverse", "mathvision", "mmmu", "mmmu_pro_standard", "mmmu_pro_vision")
SOURCE_ROLES = ("rl", "sft", "both")


def _plain_name(value: str | None) -> bool:
    """A single path component: no separators, not ``.``/``..``, no leading dot or control characters."""
    if value is None:
        return True
    return (bool(value.strip()) and "/" not in value and "\\" not in value and not value.startswith(".")
            and value.isprintable())


def _range_checks(recipe: Recipe) -> list[tuple[str, bool, str]]:
    """(key, ok, message) for every size, rate and range rule of the recipe (validation runs at load time)."""
    care, ro, t, ev, d = recipe.algorithm.care, recipe.rollout, recipe.train, recipe.eval, recipe.data
    opt = recipe.optim
    return [
        ("model.tiny.vocab_size", recipe.model.tiny.vocab_size >= 1, "must be >= 1"),
        ("model.tiny.image_size", recipe.model.tiny.image_size >= 1, "must be >= 1"),
        ("data.val_fraction", 0 <= d.val_fraction < 1, "must be in [0, 1)"),
        ("data.max_prompt_length", d.max_prompt_length >= 1, "must be >= 1"),
        ("data.image_max_pixels", d.image_max_pixels >= 1, "must be >= 1"),
        ("data.synthetic.n_train", d.synthetic.n_train >= 0, "must be >= 0"),
        ("data.synthetic.n_test", d.synthetic.n_test >= 0, "must be >= 0"),
        ("rollout.n", ro.n >= 1, "must be >= 1"),
        ("rollout.temperature", ro.temperature >= 0, "must be >= 0 (0: greedy, every sample of a group alike)"),
        ("rollout.top_p", 0 < ro.top_p <= 1, "must be in (0, 1]"),
        ("rollout.top_k", ro.top_k >= 0, "must be >= 0 (0: off)"),
        ("rollout.max_new_tokens", ro.max_new_tokens >= 1, "must be >= 1"),
        ("rollout.batch_size", ro.batch_size >= 1, "must be >= 1"),
        ("rollout.vllm.gpu_memory_utilization", 0 < ro.vllm.gpu_memory_utilization <= 1, "must be in (0, 1]"),
        ("rollout.vllm.tensor_parallel_size", ro.vllm.tensor_parallel_size >= 1, "must be >= 1"),
        ("rollout.vllm.max_model_len", ro.vllm.max_model_len >= 1, "must be >= 1"),
        ("algorithm.care.K", care.K >= 1, "must be >= 1"),
        ("algorithm.care.M", care.M >= care.K, f"must be >= algorithm.care.K ({care.K})"),
        ("algorithm.care.s", care.s >= 0, "must be >= 0"),
        ("algorithm.care.s_refl", care.s_refl is None or care.s_refl >= 0, "must be >= 0 or null"),
        ("algorithm.care.eps", care.eps > 0, "must be > 0"),
        ("algorithm.care.rescue.delta", care.rescue.delta > 0, "must be > 0"),
        ("algorithm.care.rgr.temperature", care.rgr.temperature >= 0, "must be >= 0"),
        ("algorithm.care.rgr.top_p", 0 < care.rgr.top_p <= 1, "must be in (0, 1]"),
        ("algorithm.care.rgr.max_tokens", care.rgr.max_tokens >= 1, "must be >= 1"),
        ("algorithm.care.region.tau_pos", care.region.tau_pos >= 0, "must be >= 0"),
        ("algorithm.grpo.eps", recipe.algorithm.grpo.eps > 0, "must be > 0"),
        ("algorithm.dynamic_sampling.max_tries", recipe.algorithm.dynamic_sampling.max_tries >= 1, "must be >= 1"),
        ("reward.format_weight", 0 <= recipe.reward.format_weight <= 1, "must be in [0, 1]"),
        ("reward.math_verify_timeout_s", recipe.reward.math_verify_timeout_s > 0, "must be > 0"),
        ("loss.eps_low", 0 <= recipe.loss.eps_low < 1, "must be in [0, 1)"),
        ("loss.eps_high", recipe.loss.eps_high >= 0, "must be >= 0"),
        ("loss.dual_clip", recipe.loss.dual_clip is None or recipe.loss.dual_clip > 1, "must be > 1 or null"),
        ("loss.kl.beta", recipe.loss.kl.beta >= 0, "must be >= 0"),
        ("optim.lr", opt.lr > 0, "must be > 0"),
        ("optim.weight_decay", opt.weight_decay >= 0, "must be >= 0"),
        ("optim.betas", len(opt.betas) == 2 and all(0 <= b < 1 for b in opt.betas), "must be two numbers in [0, 1)"),
        ("optim.grad_clip", opt.grad_clip >= 0, "must be >= 0 (0: no clipping)"),
        ("optim.warmup_steps", opt.warmup_steps >= 0, "must be >= 0"),
        ("train.rounds", t.rounds >= 0, "must be >= 0"),
        ("train.prompts_per_round", t.prompts_per_round >= 1, "must be >= 1"),
        ("train.mini_batch_size", t.mini_batch_size >= 1, "must be >= 1"),
        ("train.micro_batch_size", t.micro_batch_size >= 1, "must be >= 1"),
        ("train.ppo_epochs", t.ppo_epochs >= 1, "must be >= 1"),
        ("train.eval_every", t.eval_every >= 0, "must be >= 0 (0: only at the end)"),
        ("train.sft.epochs", t.sft.epochs > 0 or t.sft.max_steps > 0, "must be > 0 (or set train.sft.max_steps > 0)"),
        ("train.sft.max_steps", t.sft.max_steps == -1 or t.sft.max_steps >= 1, "must be >= 1, or -1 (use epochs)"),
        ("train.sft.lr", t.sft.lr > 0, "must be > 0"),
        ("train.sft.batch_size", t.sft.batch_size >= 1, "must be >= 1"),
        ("train.sft.gradient_accumulation_steps", t.sft.gradient_accumulation_steps >= 1, "must be >= 1"),
        ("train.sft.max_length", t.sft.max_length >= 1, "must be >= 1"),
        ("train.sft.warmup_steps", t.sft.warmup_steps >= 0, "must be >= 0"),
        ("train.distributed.zero_stage", t.distributed.zero_stage in (0, 1, 2, 3), "must be 0-3"),
        ("train.distributed.nodes", t.distributed.nodes >= 1, "must be >= 1"),
        ("train.distributed.procs_per_node", t.distributed.procs_per_node >= 1, "must be >= 1"),
        ("eval.temperature", ev.temperature >= 0, "must be >= 0 (0: greedy)"),
        ("eval.top_p", 0 < ev.top_p <= 1, "must be in (0, 1]"),
        ("eval.max_new_tokens", ev.max_new_tokens >= 1, "must be >= 1"),
        ("eval.batch_size", ev.batch_size >= 1, "must be >= 1"),
        ("tracking.run_name", _plain_name(recipe.tracking.run_name),
         "must be a plain folder name (no slashes, no leading '.'): it names a folder under train.output_dir"),
        ("name", _plain_name(recipe.name), "must be a plain folder name (no slashes, no leading '.'): it names the run folder"),
        ("storage.retries", recipe.storage.retries >= 0, "must be >= 0"),
        ("storage.multipart_threshold_mb", recipe.storage.multipart_threshold_mb >= 1, "must be >= 1"),
        ("kubernetes.retries", recipe.kubernetes.retries >= 0, "must be >= 0"),
        ("retrain.registered_model", recipe.retrain.registered_model is None
         or (bool(recipe.retrain.registered_model.strip()) and recipe.retrain.registered_model.isprintable()),
         "must be a non-empty name or null"),
        ("retrain.start_from", _model_source(recipe.retrain.start_from),
         "must be base, champion or a model URI (s3://, runs:/, models:/, mlflow-artifacts:/, an absolute folder)"),
        ("retrain.min_improvement", math.isfinite(recipe.retrain.min_improvement), "must be a finite number"),
    ]


def _model_source(value: str) -> bool:
    """``retrain.start_from``: ``base``, ``champion``, a URI with a scheme or an absolute local folder."""
    return value in ("base", "champion") or "://" in value or value.startswith(("runs:/", "models:/", "mlflow-artifacts:/", "/"))


def _list_checks(recipe: Recipe) -> list[tuple[str, bool, str]]:
    """Rules for the items of ``data.sources`` and ``eval.benchmarks``."""
    out: list[tuple[str, bool, str]] = []
    for i, src in enumerate(recipe.data.sources):
        out += [
            (f"data.sources.{i}.name", src.name in SOURCE_NAMES,
             f"is not one of {list(SOURCE_NAMES)} (unknown source {src.name!r})"),
            (f"data.sources.{i}.role", src.role in SOURCE_ROLES, f"is not one of {list(SOURCE_ROLES)}"),
            (f"data.sources.{i}.limit", src.limit is None or src.limit >= 1, "must be >= 1 or null"),
        ]
    names = [b.name for b in recipe.eval.benchmarks]
    for i, bench in enumerate(recipe.eval.benchmarks):
        out += [
            (f"eval.benchmarks.{i}.name", bench.name in BENCHMARK_NAMES,
             f"is not one of {list(BENCHMARK_NAMES)} (unknown benchmark {bench.name!r})"),
            (f"eval.benchmarks.{i}.name", names.index(bench.name) == i, "is listed twice in eval.benchmarks"),
            (f"eval.benchmarks.{i}.limit", bench.limit is None or bench.limit >= 1, "must be >= 1 or null"),
        ]
    return out


def validate(recipe: Recipe, origin: str = "<recipe>") -> Recipe:
    """Check enumerated choices, names, sizes and ranges at load time (so ``care compile`` and every
    stage refuse alike); raise ``RecipeError`` naming the key (``what``) and the recipe (``where``)."""
    for key, allowed in _CHOICES.items():
        value = _get(recipe, key)
        if value not in allowed:
            raise RecipeError(f"{key}={value!r} is not one of {list(allowed)}", origin)
    from care_core.algorithms.registry import list_algorithms  # the registered algorithms (lazy: torch)

    if recipe.algorithm.name not in list_algorithms():
        raise RecipeError(f"algorithm.name={recipe.algorithm.name!r} is not one of {list_algorithms()}", origin)
    for key, ok, message in _range_checks(recipe) + _list_checks(recipe):
        if not ok:
            raise RecipeError(f"{key}={_get(recipe, key)!r} {message}", origin)
    return recipe


def _parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise RecipeError(f"--set {item!r}: expected key=value (e.g. algorithm.name=grpo)")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise RecipeError(f"--set {item!r}: empty key")
    return key, yaml.safe_load(raw) if raw != "" else ""


def _check_key(schema: Any, dotted: str, origin: str) -> None:
    node = schema
    walked: list[str] = []
    for part in dotted.split("."):
        walked.append(part)
        if OmegaConf.is_dict(node) and part in node:
            node = node[part]
            continue
        if OmegaConf.is_list(node) and part.isdigit():
            node = node[int(part)] if int(part) < len(node) else None
            if node is None:
                raise RecipeError(f"unknown key {'.'.join(walked)!r} (list index out of range)", origin)
            continue
        if OmegaConf.is_dict(node) and node._metadata.object_type is dict:  # free-form mapping
            return
        known = sorted(node.keys()) if OmegaConf.is_dict(node) else []
        raise RecipeError(f"unknown key {'.'.join(walked)!r}; known keys here: {known}", origin)


def build_recipe(data: dict[str, Any] | None, overrides: list[str] | None = None, origin: str = "<recipe>") -> Recipe:
    """Merge ``data`` (a recipe mapping) and ``--set`` overrides over the defaults, typed and validated."""
    schema = OmegaConf.structured(Recipe)
    try:
        merged = OmegaConf.merge(schema, data or {})
    except OmegaConfBaseException as exc:
        raise RecipeError(_describe(exc), origin) from None
    for item in overrides or []:
        key, value = _parse_override(item)
        _check_key(merged, key, f"{origin} (--set)")
        try:
            OmegaConf.update(merged, key, value, merge=True)
        except OmegaConfBaseException as exc:
            raise RecipeError(_describe(exc), f"{origin} (--set {key})") from None
    try:
        recipe = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        raise RecipeError(_describe(exc), origin) from None
    assert isinstance(recipe, Recipe)
    return validate(recipe, origin)


def _describe(exc: OmegaConfBaseException) -> str:
    key = getattr(exc, "full_key", None)
    message = str(exc).splitlines()[0]
    return f"key {key!r}: {message}" if key else message


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Load a YAML recipe file; its ``name`` defaults to the file's stem."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError("recipe file not found", str(path), hint="give an existing YAML file, e.g. recipes/tiny-care.yaml")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise RecipeError(f"not valid YAML: {' '.join(str(exc).split())}", str(path)) from None
    if not isinstance(data, dict):
        raise RecipeError(f"a recipe must be a mapping at the top level, got {type(data).__name__}", str(path))
    data.setdefault("name", path.stem)
    return build_recipe(data, overrides, origin=str(path))


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    return dataclasses.asdict(recipe)


def recipe_from_dict(data: dict[str, Any], origin: str = "<dict>") -> Recipe:
    return build_recipe(data, origin=origin)


def recipe_to_yaml(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False)


def recipe_hash(recipe: Recipe) -> str:
    """Stable short hash of the full resolved recipe."""
    blob = json.dumps(recipe_to_dict(recipe), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten a nested mapping into dotted keys (for MLflow params and KFP pipeline parameters)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value and all(isinstance(k, str) for k in value):
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out




def policy_temperature(recipe: Recipe) -> float:
    """The temperature the policy's log-probs are computed at, in rollout and update alike (verl):
    ``rollout.temperature``, or 1.0 for greedy decoding (``rollout.temperature == 0``)."""
    return recipe.rollout.temperature if recipe.rollout.temperature > 0 else 1.0
