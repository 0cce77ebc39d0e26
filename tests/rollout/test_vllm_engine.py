"""vLLM engine: the pure request/response pieces (vLLM itself is not installed in CPU CI)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from care_core.rollout.base import GenerationRequest, SamplingSettings
from care_core.rollout.vllm_engine import (
    build_vllm_prompts,
    collapse_placeholders,
    parse_outputs,
    sampling_kwargs,
)


def test_collapse_placeholders():
    assert collapse_placeholders([1, 9, 9, 9, 2, 9, 9, 3], 9) == [1, 9, 2, 9, 3]
    assert collapse_placeholders([], 9) == []


def test_build_prompts_with_images_and_prefix():
    image = object()
    reqs = [
        GenerationRequest(
            [1, 5, 5, 5, 6, 7], {"pixel_values": torch.zeros(12, 3)}, [image], prefix_ids=[40, 41]
        ),
        GenerationRequest([1, 2, 3]),
    ]
    prompts = build_vllm_prompts(reqs, placeholder_id=5)
    assert prompts[0] == {"prompt_token_ids": [1, 5, 6, 7, 40, 41], "multi_modal_data": {"image": [image]}}
    assert prompts[1] == {"prompt_token_ids": [1, 2, 3]}


def test_sampling_kwargs():
    kw = sampling_kwargs(
        SamplingSettings(n=8, temperature=1.0, top_p=0.95, top_k=0, max_new_tokens=64, seed=3), [5, 6]
    )
    assert kw == {
        "n": 8,
        "temperature": 1.0,
        "top_p": 0.95,
        "top_k": -1,
        "max_tokens": 64,
        "logprobs": 0,
        "detokenize": False,
        "seed": 3,
        "logit_bias": {5: -100.0, 6: -100.0},
    }
    greedy = sampling_kwargs(SamplingSettings(temperature=0.0, top_p=0.5, top_k=4))
    assert greedy["top_p"] == 1.0 and greedy["top_k"] == 4 and "seed" not in greedy


def _completion(ids, finish):
    return SimpleNamespace(
        token_ids=ids,
        finish_reason=finish,
        logprobs=[{t: SimpleNamespace(logprob=-0.5 * (k + 1))} for k, t in enumerate(ids)],
    )


def test_parse_outputs():
    outs = [
        SimpleNamespace(
            request_id="0", outputs=[_completion([4, 2], "stop"), _completion([1, 1, 1], "length")]
        )
    ]
    (group,) = parse_outputs(outs, n=2)
    assert group[0].response_ids == [4, 2] and group[0].logprobs == [-0.5, -1.0] and not group[0].truncated
    assert group[1].truncated and group[1].logprobs == [-0.5, -1.0, -1.5]
    bad = [
        SimpleNamespace(
            request_id="7",
            outputs=[SimpleNamespace(token_ids=[1, 2], finish_reason="stop", logprobs=[{1: -0.1}])],
        )
    ]
    with pytest.raises(ValueError, match="request 7"):
        parse_outputs(bad, n=1)


def test_engine_import_is_lazy():
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm installed")
    from care_core.config import VLLMConfig
    from care_core.rollout.vllm_engine import VLLMEngine

    with pytest.raises(ImportError, match="vllm"):
        VLLMEngine("x", SimpleNamespace(tokenizer=None), VLLMConfig())


def test_sampling_kwargs_stop_ids():
    kw = sampling_kwargs(SamplingSettings(n=1, temperature=0.0), stop_ids=[9, 3])
    assert kw["stop_token_ids"] == [3, 9]
    assert "stop_token_ids" not in sampling_kwargs(SamplingSettings())


def test_cpu_env_defaults_fill_only_unset(monkeypatch):
    from care_core.rollout import vllm_engine

    monkeypatch.setattr(vllm_engine.torch.cuda, "is_available", lambda: False)
    env = {"VLLM_CPU_KVCACHE_SPACE": "4"}
    added = vllm_engine.apply_cpu_env_defaults(env)
    assert env == {
        "VLLM_CPU_KVCACHE_SPACE": "4",
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        "VLLM_CPU_OMP_THREADS_BIND": "nobind",
    }
    assert set(added) == {"VLLM_ENABLE_V1_MULTIPROCESSING", "VLLM_CPU_OMP_THREADS_BIND"}
    monkeypatch.setattr(vllm_engine.torch.cuda, "is_available", lambda: True)
    assert vllm_engine.apply_cpu_env_defaults({}) == {}


def test_vllm_compat_hook_without_torchvision(micro_dir):
    """What vLLM does on import (fresh interpreter, hook on): the torchvision image-processor module is
    the PIL one, and ``Qwen2_5_VLProcessor.from_pretrained`` builds an image-only processor that
    still turns an image into patches and placeholder tokens, and refuses videos."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        import care_core.vllm_compat as c
        assert c.install()
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor, smart_resize
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
        assert Qwen2VLImageProcessor is Qwen2VLImageProcessorPil and smart_resize(64, 64, factor=16) == (64, 64)
        from PIL import Image
        from transformers import Qwen2_5_VLProcessor
        p = Qwen2_5_VLProcessor.from_pretrained({micro_dir!r})
        assert isinstance(p.video_processor, c.NoVideoProcessor)
        out = p(text=["<|vision_start|><|image_pad|><|vision_end|>hi"], images=[Image.new("RGB", (64, 64))], return_tensors="pt")
        assert out["pixel_values"].shape[0] == 64 and int((out["input_ids"] == p.image_token_id).sum()) == 16
        try:
            p.video_processor([])
        except RuntimeError as exc:
            assert "video" in str(exc)
        else:
            raise AssertionError("videos accepted")
        print("ok")
    """)
    if c_torchvision():
        pytest.skip("torchvision installed: the hook stays off")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]


def c_torchvision() -> bool:
    from care_core.vllm_compat import torchvision_importable

    return torchvision_importable()
