"""``care_sdpa`` (care_core/models/attention.py) gives transformers' ``sdpa`` results, padding included."""

from __future__ import annotations

import torch

from care_core.models.forward import with_mm_token_types
from care_core.models.shared_prefix import left_pad


def test_care_sdpa_equals_sdpa_on_left_padded_batches(micro_dir, micro_policy, examples, recipe):
    from transformers import AutoModelForImageTextToText

    from care_core.stages.rollout import encode_requests

    ours, processor = micro_policy
    assert ours.config._attn_implementation == "care_sdpa"
    theirs = AutoModelForImageTextToText.from_pretrained(micro_dir, attn_implementation="sdpa").eval()
    reqs = encode_requests(processor, examples[:2], recipe.data, with_images=False)
    prompts = [reqs[0].prompt_ids, reqs[1].prompt_ids[:2] + [300] * 20 + reqs[1].prompt_ids[2:]]
    ids, mask = left_pad(prompts, 0)
    inputs = {"input_ids": ids, "attention_mask": mask}
    for key in ("pixel_values", "image_grid_thw"):
        inputs[key] = torch.cat([r.mm_inputs[key] for r in reqs])
    inputs = with_mm_token_types(ours, inputs)
    with torch.no_grad():
        a = ours(**inputs).logits
        b = theirs(**inputs).logits
    real = mask.bool()
    assert (a[real] - b[real]).abs().max() < 1e-5
    text = theirs.config.text_config
    assert text.num_attention_heads > text.num_key_value_heads  # grouped-query attention is exercised
