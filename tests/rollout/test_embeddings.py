"""Think-span embeddings: unit norm, equal to an independent last-layer mean, taken from the think span."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from care_core.models.forward import SequenceItem
from care_core.rewards import find_spans_tokens
from care_core.rollout.embeddings import embed_and_score
from care_core.stages.rollout import encode_requests


def _ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _independent(model, request, response_ids, span):
    ids = torch.tensor([request.prompt_ids + response_ids])
    with torch.no_grad():
        out = model(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            mm_token_type_ids=(ids == model.config.image_token_id).int(),
            output_hidden_states=True,
            **request.mm_inputs,
        )
    p = len(request.prompt_ids)
    hidden = out.hidden_states[-1][0, p + span[0] : p + span[1]]
    return F.normalize(hidden.mean(0), dim=-1)


def test_embeddings_unit_norm_from_think_span(micro_policy, examples, recipe):
    model, processor = micro_policy
    tok = processor.tokenizer
    request = encode_requests(processor, examples[:1], recipe.data, with_images=False)[0]
    a = _ids(tok, "<think>two red squares</think><answer>2</answer>")
    b = _ids(tok, "<think>two red squares</think><answer>7 maybe</answer>")  # same think, other answer
    c = _ids(tok, "<think>three blue circles</think><answer>2</answer>")  # other think, same answer
    d = _ids(tok, "the answer is 2")  # no think span: whole response
    responses = [a, b, c, d]
    spans = [list(find_spans_tokens(r, tok)[0]) for r in responses]
    assert spans[0][0] == 0 and spans[0][1] > 0 and spans[3] == [-1, -1]
    items = [SequenceItem(request.prompt_ids, r, request.mm_inputs) for r in responses]
    emb, logprobs = embed_and_score(model, items, spans, batch_size=3)
    emb = torch.tensor(emb)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(4), atol=1e-5)
    for i, r in enumerate(responses):
        span = spans[i] if spans[i][0] >= 0 else [0, len(r)]
        assert torch.allclose(emb[i], _independent(model, request, r, span), atol=1e-5)
        assert len(logprobs[i]) == len(r)
    # causal model: the think-span embedding ignores what follows the think span ...
    assert torch.allclose(emb[0], emb[1], atol=1e-6)
    # ... and changes with the think content
    assert (emb[0] - emb[2]).abs().max() > 1e-3
