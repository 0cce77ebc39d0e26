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
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

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

    preset: Literal["tiny", "small", "micro"] = "tiny"
    """Size of the offline tiny Qwen-VL: ``micro`` (format only), ``tiny`` (3.4M params, learns counting),
    ``small``."""
    seed: int = 0
    """Seed of its random initialisation and of the BPE training corpus."""
    vocab_size: int = 1024
    """BPE vocabulary trained on the synthetic corpus (the Qwen special tokens are added on top)."""
    image_size: int = 64
    """Side length in pixels at which synthetic images are rendered."""


@dataclass
class ModelConfig:
    """Policy model. ``path``: a local HF folder, a hub id, or ``tiny://<preset>``."""

    path: str = "tiny://tiny"
    """The policy: a local Hugging Face folder, a hub id, or ``tiny://<preset>`` (built offline,
    ``model.tiny``)."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Weights dtype for training and rollouts."""
    attn_implementation: str = "sdpa"
    """transformers ``attn_implementation`` (``sdpa``, ``eager``, ``flash_attention_2``)."""
    freeze_vision: bool = False
    """Keep the vision tower frozen during SFT and RL (only the language model trains)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (less memory, about 30% slower)."""
    cache_dir: str = ".care/models"
    """Where built tiny models (and downloaded hub models) are cached."""
    tiny: TinyModelConfig = field(default_factory=TinyModelConfig)
    """Settings of the random-initialised offline model used when ``path`` is ``tiny://...``."""


# --------------------------------------------------------------------------- data
@dataclass
class SourceConfig:
    """One dataset source. ``name`` picks the adapter (``synthetic``, ``virl39k``, ``geometry3k``, ...)."""

    name: str = "synthetic"
    """The source adapter (``care_core/data/sources/``): ``synthetic``, ``virl39k``, ``geometry3k``,
    ``chartqa``, ``vision_r1_cold``, a benchmark, ..."""
    hub_id: str | None = None
    """Hugging Face dataset id (default: the adapter's own)."""
    path: str | None = None
    """Local files in the hub's own layout (the offline path; read only, never written)."""
    config_name: str | None = None
    """Dataset configuration (subset) name, when the dataset has several."""
    split: str = "train"
    """Split of the source to read."""
    limit: int | None = None
    """At most this many valid rows from the source (counted before deduplication); null: all."""
    image_root: str | None = None
    """Folder holding the images when they live outside the dataset files (Vision-R1-cold)."""
    role: str = "rl"
    """``rl``: rows for the RL rounds (train/test); ``sft``: rows for cold-start SFT only; ``both``."""


@dataclass
class SyntheticConfig:
    """The generated, verifiable visual task suite (embedded default)."""

    families: list[str] = field(default_factory=lambda: ["count", "compare", "bar_read", "bar_add", "choice"])
    """Task families of the generated verifiable visual tasks (``count``, ``count_all``, ``compare``,
    ``bar_read``, ``bar_add``, ``choice``; ``care_core/data/synthetic.py``)."""
    difficulty: list[int] = field(default_factory=lambda: [1, 2])
    """Difficulty levels to draw from (1 easiest)."""
    n_train: int = 2000
    """Generated training rows."""
    n_test: int = 200
    """Generated held-out rows (the ``synthetic`` benchmark)."""
    seed: int = 0
    """Seed of the training rows."""
    test_seed: int = 1_000_003
    """Seed of the held-out rows (different from ``seed``, so no test row is a training row)."""


@dataclass
class DataConfig:
    sources: list[SourceConfig] = field(default_factory=lambda: [SourceConfig()])
    """The datasets to ingest, each through its adapter (a list of sources)."""
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    """The generated, verifiable visual task suite (the embedded default source)."""
    bad_rows: Literal["error", "skip"] = "error"
    """A row breaking the example contract: ``error`` stops naming file, row, id and field; ``skip`` drops
    it and lists it in the manifest."""
    dedup: bool = True
    """Drop duplicate rows (same normalised problem and image pixels) within and across sources; train rows
    equal to a test row too."""
    val_fraction: float = 0.0
    """Move this fraction of train rows (chosen by a hash of the id) to test; 0: keep the sources' splits."""
    system_prompt: str = (
        "You are a helpful assistant. First think step by step inside <think></think>, "
        "then give the final answer inside <answer></answer>."
    )
    """System turn of every prompt: asks for ``<think>...</think><answer>...</answer>``."""
    prompt_template: str = "{problem}"
    """User turn text; ``{problem}`` is replaced by the row's problem."""
    max_prompt_length: int = 1024
    """Prompts longer than this many tokens (images included) are refused at rollout."""
    image_max_pixels: int = 1_003_520
    """Images are downscaled to at most this many pixels before the processor sees them."""


# --------------------------------------------------------------------------- rollout
@dataclass
class VLLMConfig:
    gpu_memory_utilization: float = 0.6
    """Fraction of GPU memory vLLM may take (weights + KV cache)."""
    tensor_parallel_size: int = 1
    """GPUs one vLLM engine spans."""
    enforce_eager: bool = False
    """Disable CUDA graphs (slower decoding, faster start-up, less memory)."""
    max_model_len: int = 4096
    """Longest prompt + response vLLM plans for."""


@dataclass
class RolloutConfig:
    engine: Literal["hf", "vllm"] = "hf"
    """Generation engine: ``hf`` (the policy module itself, CPU or GPU) or ``vllm`` (the ``gpu`` extra)."""
    hf_decode: Literal["prefix", "generate"] = "prefix"
    """``hf`` engine decoder: ``prefix`` encodes each prompt once and decodes its ``n`` samples from
    copies of its key/value cache, keeping hidden states for CARE's embeddings (Qwen-VL models; others
    fall back to ``generate``); ``generate``: transformers ``generate`` on ``n`` copies of each prompt."""
    n: int = 8
    """G: responses sampled per prompt (the group)."""
    temperature: float = 1.0
    """Sampling temperature; log-probs are computed at the same temperature (0: greedy, log-probs at 1)."""
    top_p: float = 1.0
    """Nucleus sampling threshold (1: off)."""
    top_k: int = 0
    """Top-k sampling (0: off)."""
    max_new_tokens: int = 1024
    """Response length limit; a response that hits it is ``truncated``."""
    batch_size: int = 64
    """Prompts decoded together."""
    vllm: VLLMConfig = field(default_factory=VLLMConfig)
    """vLLM engine settings (``engine: vllm``)."""


# --------------------------------------------------------------------------- algorithm
@dataclass
class RescueConfig:
    """All-negative rescue (docs/method.md §5)."""

    enable: bool = True
    """All-negative rescue: groups without a positive learn from a pseudo-anchor (docs/method.md §5)."""
    delta: float = 0.1
    """Pseudo-reward size: +delta for the pseudo-anchor, -delta / K' for each pseudo-negative."""
    normalize: bool = True
    """z-score the pseudo-rewards like real rewards (the reference; delta cancels); false: they are the
    advantages."""
    logprob_norm: Literal["sum", "mean"] = "sum"
    """Pseudo-anchor score: ``sum`` (sequence log-prob) or ``mean`` (per token)."""
    # authors: first pick farthest from the pseudo-anchor t, then distances to the picked negatives
    # only (the reference code); pseudo_anchor: t counts as picked throughout (earlier project choice)
    seeding: Literal["authors", "pseudo_anchor"] = "authors"
    """Pseudo-negative picks: ``authors`` (first the failure farthest from the pseudo-anchor, then
    farthest-first among the picks) or ``pseudo_anchor`` (the pseudo-anchor counts as picked)."""


@dataclass
class RGRConfig:
    """Reflection-Guided Resampling (docs/method.md §6)."""

    enable: bool = True
    """Reflection-Guided Resampling: repair the nearest hard negative once per mixed group (docs/method.md
    §6)."""
    template: Literal["structured", "sentence", "none"] = "structured"
    """Repair cue: ``structured`` (a ``<repair>`` block), ``sentence``, or ``none`` (the
    promptless-resampling control)."""
    train_on: Literal["continuation", "repaired_response"] = "continuation"
    """What an RGR row trains: ``continuation`` (prompt + new continuation) or ``repaired_response`` (with
    the copied and cue tokens masked)."""
    temperature: float = 0.6
    """Sampling temperature of the repair decode."""
    top_p: float = 0.95
    """Nucleus threshold of the repair decode."""
    max_tokens: int = 512
    """New tokens of the repair decode."""


@dataclass
class RegionConfig:
    """Region-weighted token advantages (docs/method.md §7)."""

    enable: bool = True
    """Region-weighted token advantages (docs/method.md §7); false: the sequence advantage on every token."""
    tau_pos: float = 0.005
    """Think-span weight of positives (the answer span weighs 1, negatives' think 0)."""
    include_tags: bool = False
    """Spans include the ``<think>``/``<answer>`` tag tokens; false: the content between the tags (the
    authors)."""
    no_answer: Literal["whole", "outside_think"] = "whole"
    """A response without an answer span: ``whole`` (every token is answer, the authors) or
    ``outside_think``."""
    pseudo_anchor_think: bool = False
    """Give the rescue pseudo-anchor's think span tau_pos; false: weight 0 (it is no true positive)."""


@dataclass
class CareConfig:
    K: int = 4
    """Hard negatives per subgroup."""
    M: int = 6
    """Nearest-failure pool the negatives are picked from (>= K)."""
    s: float = 0.5
    """Negative scale: a negative's advantage is -s * |z|."""
    s_refl: float | None = None
    """Scale of a failed RGR sample; null: s / 2."""
    eps: float = 1e-6
    """Added to the subgroup's reward std in the z-score."""
    equalize: bool = True
    """Multiply the subgroup's advantages by sqrt(K / K') when fewer than K negatives exist."""
    positive_rule: Literal["accuracy", "reward"] = "accuracy"
    """Positive: ``accuracy`` == 1 (the paper) or ``reward`` > 0 (the reference code)."""
    rescue: RescueConfig = field(default_factory=RescueConfig)
    """All-negative rescue (docs/method.md §5)."""
    rgr: RGRConfig = field(default_factory=RGRConfig)
    """Reflection-Guided Resampling (docs/method.md §6)."""
    region: RegionConfig = field(default_factory=RegionConfig)
    """Region-weighted token advantages (docs/method.md §7)."""

    @property
    def reflection_scale(self) -> float:
        """s_refl, or s / 2 when unset (the one place it is resolved)."""
        return self.s / 2 if self.s_refl is None else self.s_refl


@dataclass
class GRPOConfig:
    std: Literal["unbiased", "population"] = "unbiased"
    """Group std: ``unbiased`` (n - 1, as EasyR1 / verl) or ``population`` (n)."""
    eps: float = 1e-6
    """Added to the group std."""


@dataclass
class DynamicSamplingConfig:
    """DAPO dynamic sampling: drop all-correct / all-wrong groups and refill."""

    enable: bool = False
    """DAPO dynamic sampling: keep only groups with mixed accuracies and sample more prompts to refill."""
    max_tries: int = 3
    """Sampling draws before the round fails with the counts."""


@dataclass
class AlgorithmConfig:
    name: str = "care"
    """The advantage estimator: a registered algorithm (``grpo``, ``dr_grpo``, ``care``;
    ``care_core/algorithms/registry.py``)."""
    care: CareConfig = field(default_factory=CareConfig)
    """CARE's parameters (docs/method.md §2-7)."""
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    """GRPO / Dr. GRPO parameters (docs/method.md §9)."""
    dynamic_sampling: DynamicSamplingConfig = field(default_factory=DynamicSamplingConfig)
    """DAPO dynamic sampling, for any algorithm."""
    params: dict[str, Any] = field(default_factory=dict)
    """Free-form parameters of an algorithm registered outside this project."""


# --------------------------------------------------------------------------- reward / loss / optim
@dataclass
class RewardConfig:
    format_weight: float = 0.1
    """lam in r = (1 - lam) * accuracy + lam * format."""
    fallback: Literal["none", "last_number", "last_line"] = "last_number"
    """Answer extraction when there is no ``<answer>`` span or ``\\boxed{}``: ``none``, ``last_number`` or
    ``last_line``."""
    math_verify_timeout_s: float = 3.0
    """Time limit of one symbolic equivalence check (math-verify)."""


@dataclass
class KLConfig:
    enable: bool = True
    """KL penalty to the frozen reference model, added to the loss."""
    type: Literal["k1", "k2", "k3"] = "k3"
    """KL estimator: ``k1`` (log ratio), ``k2`` (squared / 2) or ``k3`` (low variance)."""
    beta: float = 0.01
    """KL coefficient (0 turns the penalty off)."""


@dataclass
class LossConfig:
    eps_low: float = 0.2
    """PPO clip below: the ratio is clipped at 1 - eps_low."""
    eps_high: float = 0.3
    """PPO clip above: 1 + eps_high (clip-higher; DAPO uses 0.28)."""
    dual_clip: float | None = 3.0
    """Dual clip c for negative advantages: the loss is capped at -A * c; null: off."""
    agg: Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"] = "token-mean"
    """Loss aggregation over tokens and sequences (docs/method.md §8)."""
    kl: KLConfig = field(default_factory=KLConfig)
    """KL to the reference model."""


@dataclass
class OptimConfig:
    lr: float = 1e-6
    """AdamW learning rate of the RL update."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    """AdamW betas."""
    grad_clip: float = 1.0
    """Gradient-norm clip."""
    warmup_steps: int = 0
    """Linear warm-up steps of the RL learning rate."""
    scheduler: Literal["constant", "cosine", "linear"] = "constant"
    """Learning-rate schedule after the warm-up, over all rounds."""


# --------------------------------------------------------------------------- training
@dataclass
class SFTConfig:
    """Cold-start supervised fine-tuning on the rows' ``solution``."""

    enable: bool = True
    """Cold-start supervised fine-tuning on the rows' ``solution`` before the RL rounds."""
    epochs: float = 1.0
    """SFT epochs (ignored when ``max_steps`` > 0)."""
    max_steps: int = -1
    """SFT optimizer steps; -1: run ``epochs``."""
    lr: float = 1e-5
    """SFT learning rate."""
    batch_size: int = 8
    """SFT sequences per device step."""
    gradient_accumulation_steps: int = 1
    """SFT micro-steps per optimizer step."""
    max_length: int = 1024
    """SFT sequences are cut to this many tokens."""
    warmup_steps: int = 0
    """Linear LR warm-up steps of SFT (then linear decay), as transformers' TrainingArguments."""


@dataclass
class DistributedConfig:
    backend: Literal["plain", "deepspeed"] = "plain"
    """Update backend: ``plain`` (one process) or ``deepspeed`` (ZeRO)."""
    zero_stage: int = 2
    """DeepSpeed ZeRO stage (1, 2 or 3)."""
    launcher: Literal["torchrun", "deepspeed"] = "torchrun"
    """How the DeepSpeed ranks start: ``torchrun`` or the ``deepspeed`` launcher."""
    nodes: int = 1
    """Nodes of the update; > 1 runs it as a Kubeflow TrainJob (``care_core/trainjob.py``)."""
    procs_per_node: int = 1
    """Ranks per node (default: one per GPU)."""
    bf16: bool = False
    """DeepSpeed bf16 mixed precision."""


@dataclass
class TrainConfig:
    rounds: int = 3
    """RL rounds of rollout -> advantage -> update (unrolled in the KFP pipeline at compile time)."""
    prompts_per_round: int = 512
    """Prompts sampled per round (each gets G responses)."""
    mini_batch_size: int = 128
    """Prompts per optimizer step."""
    micro_batch_size: int = 4
    """Sequences per forward/backward pass (gradient accumulation fills the mini-batch)."""
    ppo_epochs: int = 1
    """Passes over a round's rollouts."""
    recompute_old_logprobs: bool = False
    """Recompute the old log-probs with the training forward before the update (needed with vLLM rollouts)."""
    seed: int = 0
    """Seed of prompt sampling, generation and shuffling (per round, independent of restarts)."""
    output_dir: str = ".care/runs"
    """Where ``care train`` keeps its run folders (checkpoints, summary)."""
    resume: str = "auto"
    """``care train``: ``auto`` (continue the run folder's last finished round), ``never``, or a checkpoint
    path."""
    eval_every: int = 0
    """Rounds between held-out evaluations in ``care train`` and in the pipeline (0: only at the end). In the
    pipeline an ``evaluate`` step also scores the SFT start (round 0), so the run's learning curve has
    ``eval/...`` points at rounds 0, k, 2k, ... and the end."""
    save_every: int = 1
    """``care train``: rounds between committed checkpoints (policy, optimizer, RNG). The last round
    and evaluated rounds are always committed; a resumed run repeats the rounds after the last commit."""
    shared_prefix: bool = True
    """Teacher-forced passes (old / reference log-probs, the update) run each prompt once and its
    responses on copies of its cache (Qwen-VL models without gradient checkpointing, single process);
    off, or elsewhere: every (prompt + response) sequence runs whole."""
    sft: SFTConfig = field(default_factory=SFTConfig)
    """Cold-start SFT."""
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    """Multi-GPU / multi-node update (DeepSpeed ZeRO, Kubeflow TrainJob)."""


# --------------------------------------------------------------------------- eval / tracking / storage
@dataclass
class BenchmarkConfig:
    name: str = "synthetic"
    """``synthetic`` (the held-out generated tasks) or a benchmark: ``mathvista``, ``mathverse``,
    ``mathvision``, ``mmmu``, ``mmmu_pro_standard``, ``mmmu_pro_vision``."""
    hub_id: str | None = None
    """Hugging Face dataset id (default: the benchmark's own)."""
    path: str | None = None
    """Local files in the hub's layout (the offline path)."""
    config_name: str | None = None
    """Dataset configuration name."""
    split: str | None = None
    """Split to evaluate (default: the benchmark's own)."""
    limit: int | None = None
    """At most this many items; null: all."""


@dataclass
class EvalConfig:
    benchmarks: list[BenchmarkConfig] = field(default_factory=lambda: [BenchmarkConfig()])
    """Benchmarks the evaluate stage scores (a list)."""
    temperature: float = 0.0
    """Decoding temperature (0: greedy, single pass)."""
    top_p: float = 1.0
    """Nucleus threshold of evaluation decoding."""
    max_new_tokens: int = 1024
    """Response length limit in evaluation."""
    batch_size: int = 32
    """Prompts decoded together in evaluation."""
    # official: each benchmark's own deterministic rule (leaderboard-comparable); strict: the
    # project's stricter rules (docs/benchmarks.md, "Scoring modes")
    scoring: Literal["official", "strict"] = "official"
    """``official``: each benchmark's own deterministic rule (leaderboard-comparable); ``strict``: the
    project's stricter rules (docs/benchmarks.md)."""


@dataclass
class TrackingConfig:
    uri: str = "sqlite:///.care/mlflow.db"
    """MLflow tracking URI: ``sqlite:///path.db``, a folder, or ``http(s)://`` server (credentials from the
    environment, never here)."""
    experiment: str = "care"
    """MLflow experiment name."""
    run_name: str | None = None
    """MLflow run name (default: the recipe name); also names the ``care train`` run folder."""


@dataclass
class StorageConfig:
    artifact_root: str = ".care/artifacts"
    """Where stage outputs go: a local folder or ``s3://bucket/prefix``."""
    retries: int = 5
    """Retries of an S3 transfer (exponential backoff)."""
    multipart_threshold_mb: int = 64
    """Files above this size are uploaded in parts."""


@dataclass
class KubernetesConfig:
    """Platform settings applied by kfp-kubernetes when compiling the pipeline."""

    image: str = "ghcr.io/care-pipelines/care:0.1.0"
    """Container image of the CPU steps."""
    gpu_image: str = "ghcr.io/care-pipelines/care-gpu:0.1.0"
    """Container image of steps that get GPUs (with vLLM and DeepSpeed)."""
    accelerator_type: str = "nvidia.com/gpu"
    """Resource name of the GPUs (``nvidia.com/gpu``)."""
    gpus: dict[str, int] = field(default_factory=dict)
    """GPUs per step: stage name (``sft``, ``rollout``, ``update``, ``evaluate``) -> count."""
    node_selector: dict[str, str] = field(default_factory=dict)
    """Node labels every step requires."""
    tolerations: list[dict[str, str]] = field(default_factory=list)
    """Tolerations added to every step (``key``, ``operator``, ``value``, ``effect``)."""
    s3_secret: str = "care-s3"
    """Secret holding the S3 credentials (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
    ``AWS_ENDPOINT_URL_S3``)."""
    mlflow_secret: str = "care-mlflow"
    """Optional Secret holding ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``."""
    workspace_pvc: str | None = None
    """Existing PVC mounted at /workspace for hot checkpoints; null: a per-run PVC is created and deleted."""
    workspace_size: str = "200Gi"
    """Size of the per-run workspace PVC."""
    retries: int = 2
    """Retries of a failed step (backoff 60 s, doubling)."""


@dataclass
class RetrainConfig:
    """Scheduled retraining with the MLflow Model Registry (README: Scheduled retraining).

    The pipeline gets its lineage/warm-start step and its register + eval-gate step when
    ``registered_model`` is set at compile time. ``start_from``: ``base`` (the recipe's model),
    ``champion`` (the version the registered model's ``champion`` alias points to; base when there is
    none yet) or a model URI (``s3://``, ``runs:/``, ``models:/``, ``mlflow-artifacts:/`` or a local folder).
    """

    registered_model: str | None = None
    """MLflow registered model; set at compile time, it adds the retrain plan and the register + eval-gate
    steps."""
    start_from: str = "base"
    """Warm start: ``base`` (the recipe's model), ``champion`` (the ``champion`` alias) or a model URI."""
    min_improvement: float = 0.0
    """Promote a new version when its score >= the champion's score + this."""
    skip_if_unchanged: bool = True
    """Skip the run when the data fingerprint and training recipe equal the champion's."""


@dataclass
class Recipe:
    """The whole run configuration. ``name`` defaults to the recipe file's stem."""

    name: str = "care"
    """Recipe name (default: the recipe file's stem); names the pipeline, the MLflow run and the run
    folder."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The policy model."""
    data: DataConfig = field(default_factory=DataConfig)
    """Datasets and prompts."""
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    """Sampling of the G responses per prompt."""
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    """The advantage estimator and its switches (docs/method.md)."""
    reward: RewardConfig = field(default_factory=RewardConfig)
    """The verifiable reward."""
    loss: LossConfig = field(default_factory=LossConfig)
    """The policy loss (docs/method.md §8)."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """The RL optimizer."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Rounds, batch sizes, SFT, checkpoints and the distributed update."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """The evaluation stage."""
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    """MLflow tracking."""
    storage: StorageConfig = field(default_factory=StorageConfig)
    """Artifact storage (local or S3)."""
    kubernetes: KubernetesConfig = field(default_factory=KubernetesConfig)
    """Platform settings applied when compiling the KFP pipeline."""
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    """Scheduled retraining with the MLflow Model Registry."""


def _literal_choices(cls: type, prefix: str = "") -> dict[str, tuple[Any, ...]]:
    """``dotted key -> choices`` of every ``Literal[...]`` field of the tree (list items excluded)."""
    hints = typing.get_type_hints(cls)
    out: dict[str, tuple[Any, ...]] = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            out.update(_literal_choices(hint, f"{prefix}{f.name}."))  # type: ignore[arg-type]
        elif typing.get_origin(hint) is Literal:
            out[f"{prefix}{f.name}"] = typing.get_args(hint)
    return out


_CHOICES = _literal_choices(Recipe)  # the Literal types next to the fields are the one list of choices


def _get(recipe: Recipe, dotted: str) -> Any:
    value: Any = recipe
    for part in dotted.split("."):
        value = value[int(part)] if part.isdigit() else getattr(value, part)
    return value


# names the stages know (kept equal to care_core.data.sources.SOURCES / care_core.stages.evaluate, tested)
SOURCE_NAMES = (
    "synthetic",
    "chartqa",
    "geometry3k",
    "mathverse",
    "mathvision",
    "mathvista",
    "mmmu",
    "mmmu_pro_standard",
    "mmmu_pro_vision",
    "virl39k",
    "vision_r1_cold",
)
BENCHMARK_NAMES = (
    "synthetic",
    "mathvista",
    "mathverse",
    "mathvision",
    "mmmu",
    "mmmu_pro_standard",
    "mmmu_pro_vision",
)
SOURCE_ROLES = ("rl", "sft", "both")


def _plain_name(value: str | None) -> bool:
    """A single path component: no separators, not ``.``/``..``, no leading dot or control characters."""
    if value is None:
        return True
    return (
        bool(value.strip())
        and "/" not in value
        and "\\" not in value
        and not value.startswith(".")
        and value.isprintable()
    )


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
        (
            "rollout.temperature",
            ro.temperature >= 0,
            "must be >= 0 (0: greedy, every sample of a group alike)",
        ),
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
        (
            "algorithm.dynamic_sampling.max_tries",
            recipe.algorithm.dynamic_sampling.max_tries >= 1,
            "must be >= 1",
        ),
        ("reward.format_weight", 0 <= recipe.reward.format_weight <= 1, "must be in [0, 1]"),
        ("reward.math_verify_timeout_s", recipe.reward.math_verify_timeout_s > 0, "must be > 0"),
        ("loss.eps_low", 0 <= recipe.loss.eps_low < 1, "must be in [0, 1)"),
        ("loss.eps_high", recipe.loss.eps_high >= 0, "must be >= 0"),
        ("loss.dual_clip", recipe.loss.dual_clip is None or recipe.loss.dual_clip > 1, "must be > 1 or null"),
        ("loss.kl.beta", recipe.loss.kl.beta >= 0, "must be >= 0"),
        ("optim.lr", opt.lr > 0, "must be > 0"),
        ("optim.weight_decay", opt.weight_decay >= 0, "must be >= 0"),
        (
            "optim.betas",
            len(opt.betas) == 2 and all(0 <= b < 1 for b in opt.betas),
            "must be two numbers in [0, 1)",
        ),
        ("optim.grad_clip", opt.grad_clip >= 0, "must be >= 0 (0: no clipping)"),
        ("optim.warmup_steps", opt.warmup_steps >= 0, "must be >= 0"),
        ("train.rounds", t.rounds >= 0, "must be >= 0"),
        ("train.prompts_per_round", t.prompts_per_round >= 1, "must be >= 1"),
        ("train.mini_batch_size", t.mini_batch_size >= 1, "must be >= 1"),
        ("train.micro_batch_size", t.micro_batch_size >= 1, "must be >= 1"),
        ("train.ppo_epochs", t.ppo_epochs >= 1, "must be >= 1"),
        ("train.eval_every", t.eval_every >= 0, "must be >= 0 (0: only at the end)"),
        ("train.save_every", t.save_every >= 1, "must be >= 1"),
        (
            "train.sft.epochs",
            t.sft.epochs > 0 or t.sft.max_steps > 0,
            "must be > 0 (or set train.sft.max_steps > 0)",
        ),
        (
            "train.sft.max_steps",
            t.sft.max_steps == -1 or t.sft.max_steps >= 1,
            "must be >= 1, or -1 (use epochs)",
        ),
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
        (
            "tracking.run_name",
            _plain_name(recipe.tracking.run_name),
            "must be a plain folder name (no slashes, no leading '.'): it names a folder under train.output_dir",
        ),
        (
            "name",
            _plain_name(recipe.name),
            "must be a plain folder name (no slashes, no leading '.'): it names the run folder",
        ),
        ("storage.retries", recipe.storage.retries >= 0, "must be >= 0"),
        ("storage.multipart_threshold_mb", recipe.storage.multipart_threshold_mb >= 1, "must be >= 1"),
        ("kubernetes.retries", recipe.kubernetes.retries >= 0, "must be >= 0"),
        (
            "retrain.registered_model",
            recipe.retrain.registered_model is None
            or (
                bool(recipe.retrain.registered_model.strip())
                and recipe.retrain.registered_model.isprintable()
            ),
            "must be a non-empty name or null",
        ),
        (
            "retrain.start_from",
            _model_source(recipe.retrain.start_from),
            "must be base, champion or a model URI (s3://, runs:/, models:/, mlflow-artifacts:/, an absolute folder)",
        ),
        ("retrain.min_improvement", math.isfinite(recipe.retrain.min_improvement), "must be a finite number"),
    ]


def _model_source(value: str) -> bool:
    """``retrain.start_from``: ``base``, ``champion``, a URI with a scheme or an absolute local folder."""
    return (
        value in ("base", "champion")
        or "://" in value
        or value.startswith(("runs:/", "models:/", "mlflow-artifacts:/", "/"))
    )


def _list_checks(recipe: Recipe) -> list[tuple[str, bool, str]]:
    """Rules for the items of ``data.sources`` and ``eval.benchmarks``."""
    out: list[tuple[str, bool, str]] = []
    for i, src in enumerate(recipe.data.sources):
        out += [
            (
                f"data.sources.{i}.name",
                src.name in SOURCE_NAMES,
                f"is not one of {list(SOURCE_NAMES)} (unknown source {src.name!r})",
            ),
            (f"data.sources.{i}.role", src.role in SOURCE_ROLES, f"is not one of {list(SOURCE_ROLES)}"),
            (f"data.sources.{i}.limit", src.limit is None or src.limit >= 1, "must be >= 1 or null"),
        ]
    names = [b.name for b in recipe.eval.benchmarks]
    for i, bench in enumerate(recipe.eval.benchmarks):
        out += [
            (
                f"eval.benchmarks.{i}.name",
                bench.name in BENCHMARK_NAMES,
                f"is not one of {list(BENCHMARK_NAMES)} (unknown benchmark {bench.name!r})",
            ),
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
        raise RecipeError(
            f"algorithm.name={recipe.algorithm.name!r} is not one of {list_algorithms()}", origin
        )
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


def build_recipe(
    data: dict[str, Any] | None, overrides: list[str] | None = None, origin: str = "<recipe>"
) -> Recipe:
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
        raise RecipeError(
            "recipe file not found", str(path), hint="give an existing YAML file, e.g. recipes/tiny-care.yaml"
        )
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise RecipeError(f"not valid YAML: {' '.join(str(exc).split())}", str(path)) from None
    if not isinstance(data, dict):
        raise RecipeError(
            f"a recipe must be a mapping at the top level, got {type(data).__name__}", str(path)
        )
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
