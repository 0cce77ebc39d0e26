"""Rollout stage: sample G responses per prompt, score them, embed their think spans, run RGR.

``run_rollout(recipe, model_path, data_dir, out_path, round_index)`` reads
``data_dir/train.parquet``, draws ``train.prompts_per_round`` prompts (deterministic in
``train.seed`` and the round), decodes ``rollout.n`` samples each with the configured engine and
writes rollout rows (docs/interfaces.md §2), plus one RGR row per eligible group when the algorithm's
spec uses RGR (CARE with ``algorithm.care.rgr.enable``). Returns the round's rollout diagnostics.
The steps: ``sample_groups`` (sampling, DAPO), ``embed_groups``, ``run_rgr``, ``rollout_metrics``.
"""

from __future__ import annotations

import io
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from care_core.algorithms import GROUP_KIND_NAMES, AlgorithmSpec, algorithm_spec, fill_batch, group_kind_names
from care_core.config import Recipe, policy_temperature
from care_core.models.forward import SequenceItem, think_embeddings
from care_core.rollout import GenerationRequest, Sample, SamplingSettings, make_engine
from care_core.rollout.embeddings import embed_and_score
from care_core.rollout.rgr import GroupView, assemble_repair, build_repair_prefix, repair_cue, repair_target
from care_core.schema import SchemaError, read_examples, write_rollouts

logger = logging.getLogger(__name__)


def round_seed(seed: int, round_index: int, salt: int = 0) -> int:
    """Deterministic per-round seed (independent of how many rounds ran in this process)."""
    return int((seed * 1_000_003 + round_index * 7_919 + salt) % (2**31 - 1))


def sample_prompt_indices(
    n_rows: int, n: int, seed: int, round_index: int, exclude: set[int] | None = None
) -> list[int]:
    """``n`` distinct row indices drawn without replacement by (seed, round). With more prompts wanted
    than rows the permutation wraps around (``run_rollout`` refuses that case first); a refill that
    ``exclude`` s the rows already used returns at most the rows left, never a repeat."""
    if n_rows == 0:
        raise SchemaError("train.parquet has no rows")
    rng = np.random.default_rng([seed, round_index])
    order = [int(i) for i in rng.permutation(n_rows) if exclude is None or int(i) not in exclude]
    if not order:
        return []
    if exclude is not None:
        return order[:n]
    return [order[i % len(order)] for i in range(n)]


def _precision(row: dict[str, Any], where: str) -> int | None:
    meta = row.get("meta") or "{}"
    try:
        value = json.loads(meta).get("precision") if meta else None
    except (json.JSONDecodeError, AttributeError) as exc:
        raise SchemaError(f"{where}: field 'meta' is not a JSON object: {exc}") from None
    return int(value) if value is not None else None


def encode_requests(
    processor: Any, rows: list[dict[str, Any]], data_cfg: Any, with_images: bool
) -> list[GenerationRequest]:
    """One unpadded ``GenerationRequest`` per example row (chat prompt through the processor)."""
    from care_core.data.prompting import encode_prompts

    requests = []
    for row in rows:
        batch = encode_prompts(processor, [row], data_cfg)
        mask = batch["attention_mask"][0].bool()
        ids = batch["input_ids"][0][mask].tolist()
        mm = {k: batch[k] for k in ("pixel_values", "image_grid_thw") if k in batch and batch[k] is not None}
        images = []
        if with_images:
            from PIL import Image

            images = [Image.open(io.BytesIO(img["bytes"])).convert("RGB") for img in row.get("images") or []]
        requests.append(GenerationRequest(ids, mm, images))
    return requests


@dataclass
class _Decoded:
    text: str
    think: tuple[int, int]
    answer: tuple[int, int]


class RowBuilder:
    """Decoding, span finding and verifier scoring shared by rollout and RGR rows."""

    def __init__(self, processor: Any, recipe: Recipe):
        from care_core.rewards import find_spans_tokens, score_response

        self.tokenizer = processor.tokenizer
        self.recipe = recipe
        self._spans = find_spans_tokens
        self._score = score_response
        strip = {self.tokenizer.pad_token_id, self.tokenizer.eos_token_id}
        self.strip_ids = {int(i) for i in strip if i is not None}

    def decode(self, ids: list[int]) -> _Decoded:
        kept = [t for t in ids if t not in self.strip_ids]
        text = self.tokenizer.decode(kept, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        think, answer = self._spans(
            ids, self.tokenizer, include_tags=self.recipe.algorithm.care.region.include_tags
        )
        return _Decoded(text, tuple(think), tuple(answer))

    def score(self, text: str, row: dict[str, Any], where: str) -> dict[str, float]:
        r = self.recipe.reward
        return self._score(
            text,
            row["answer"],
            row["answer_type"],
            choices=list(row.get("choices") or []) or None,
            precision=_precision(row, where),
            data_source=row.get("data_source"),
            format_weight=r.format_weight,
            fallback=r.fallback,
            timeout_s=r.math_verify_timeout_s,
        )


HIDDEN = "_hidden"
"""Row key of the engine's per-token hidden states (``Sample.hidden``) until ``embed_groups``."""


def _span_len(span: tuple[int, int] | list[int]) -> int:
    return max(0, int(span[1]) - int(span[0])) if int(span[0]) >= 0 else 0


def _build_group_rows(
    builder: RowBuilder,
    group_id: str,
    row: dict[str, Any],
    request: GenerationRequest,
    samples: list[Sample],
    where: str,
) -> list[dict[str, Any]]:
    out = []
    for index, sample in enumerate(samples):
        dec = builder.decode(sample.response_ids)
        # the group's images ride on its first row only (the update stage re-encodes them)
        images = list(row.get("images") or []) if index == 0 else []
        score = builder.score(dec.text, row, f"{where} sample {index}")
        out.append(
            {
                "group_id": group_id,
                "sample_index": index,
                "source": "rollout",
                "replaces": -1,
                "prompt_ids": list(request.prompt_ids),
                "response_ids": list(sample.response_ids),
                "response_text": dec.text,
                "old_logprobs": list(sample.logprobs),
                "loss_mask": [1] * len(sample.response_ids),
                "think_span": list(dec.think),
                "answer_span": list(dec.answer),
                "embedding": None,
                "reward": float(score["reward"]),
                "accuracy": float(score["accuracy"]),
                "format": float(score["format"]),
                "truncated": bool(sample.truncated),
                "images": images,
                HIDDEN: sample.hidden,  # popped by embed_groups, never written
            }
        )
    return out


def _embed_rows(
    model: Any,
    rows: list[dict[str, Any]],
    mm: list[dict[str, torch.Tensor]],
    recipe: Recipe,
    pad_id: int,
    set_logprobs: bool = False,
) -> None:
    items = [SequenceItem(r["prompt_ids"], r["response_ids"], m) for r, m in zip(rows, mm, strict=True)]
    spans = [r["think_span"] for r in rows]
    emb, logprobs = embed_and_score(
        model,
        items,
        spans,
        batch_size=recipe.train.micro_batch_size,
        temperature=policy_temperature(recipe),
        pad_id=pad_id,
    )
    for r, e, lp in zip(rows, emb, logprobs, strict=True):
        r["embedding"] = e
        if set_logprobs:
            r["old_logprobs"] = lp


def _group_view(rows: list[dict[str, Any]]) -> GroupView:
    return GroupView(
        reward=torch.tensor([r["reward"] for r in rows], dtype=torch.float64),
        accuracy=torch.tensor([r["accuracy"] for r in rows], dtype=torch.float64),
        embeddings=torch.tensor([r["embedding"] for r in rows], dtype=torch.float64),
        think_len=torch.tensor([_span_len(r["think_span"]) for r in rows], dtype=torch.long),
        answer_len=torch.tensor([_span_len(r["answer_span"]) for r in rows], dtype=torch.long),
    )


def run_rgr(
    model: Any,
    engine: Any,
    builder: RowBuilder,
    recipe: Recipe,
    groups: list[tuple[dict[str, Any], GenerationRequest, list[dict[str, Any]]]],
    seed: int,
    pad_id: int,
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """One repair per eligible group (a positive and a failure), aimed at the nearest hard
    negative. Returns the new ``rgr`` rows and ``rgr/*`` diagnostics."""
    care = recipe.algorithm.care
    rgr = care.rgr
    cue = repair_cue(rgr.template, builder.tokenizer)
    plans = []
    for example, request, rows in groups:
        target = repair_target(_group_view(rows), care.K, care.M, care.positive_rule)
        if target < 0:
            continue
        prefix_text = build_repair_prefix(rows[target]["response_text"], cue)
        prefix_ids = builder.tokenizer(prefix_text, add_special_tokens=False)["input_ids"]
        plans.append((example, request, rows, target, prefix_text, list(prefix_ids)))
    stats = {"rgr/eligible_groups": float(len(plans)), "rgr/attempts": float(len(plans))}
    if not plans:
        stats.update({"rgr/successes": 0.0, "rgr/success_rate": math.nan})
        return [], stats
    requests = [
        GenerationRequest(req.prompt_ids, req.mm_inputs, req.images, prefix_ids)
        for _, req, _, _, _, prefix_ids in plans
    ]
    settings = SamplingSettings(
        n=1,
        temperature=rgr.temperature,
        top_p=rgr.top_p,
        top_k=0,
        max_new_tokens=rgr.max_tokens,
        logprob_temperature=policy_temperature(recipe),
        seed=seed,
    )
    continuations = engine.generate(requests, settings)
    new_rows, mm = [], []
    for (example, request, rows, target, prefix_text, prefix_ids), (cont,) in zip(
        plans, continuations, strict=True
    ):
        cont_text = builder.decode(cont.response_ids).text
        seq = assemble_repair(prefix_ids, prefix_text, cont.response_ids, cont_text, rgr.train_on)
        dec = builder.decode(seq.response_ids)
        score = builder.score(seq.scored_text, example, f"rgr for {rows[0]['group_id']}")
        new_rows.append(
            {
                **{k: rows[target][k] for k in ("group_id", "prompt_ids")},
                "sample_index": len(rows),
                "source": "rgr",
                "replaces": int(rows[target]["sample_index"]),
                "response_ids": seq.response_ids,
                "response_text": dec.text,
                "old_logprobs": None,
                "loss_mask": seq.loss_mask,
                "think_span": list(dec.think),
                "answer_span": list(dec.answer),
                "embedding": None,
                "reward": float(score["reward"]),
                "accuracy": float(score["accuracy"]),
                "format": float(score["format"]),
                "truncated": bool(cont.truncated),
                "images": [],
            }
        )
        mm.append(request.mm_inputs)
    # old log-probs and embeddings on the trained sequence (docs/method.md §6)
    _embed_rows(model, new_rows, mm, recipe, pad_id, set_logprobs=True)
    successes = sum(1 for r in new_rows if r["accuracy"] >= 1.0)
    stats.update({"rgr/successes": float(successes), "rgr/success_rate": successes / len(new_rows)})
    return new_rows, stats


Group = tuple[dict[str, Any], GenerationRequest, list[dict[str, Any]]]
"""One prompt's example row, its generation request and its rollout rows."""


@dataclass
class RoundContext:
    """What the sampling, embedding and RGR steps of one round share."""

    recipe: Recipe
    spec: AlgorithmSpec
    model: Any
    processor: Any
    engine: Any
    builder: RowBuilder
    examples: list[dict[str, Any]]
    train_path: Path
    round_index: int
    pad_id: int
    request_cache: dict[int, GenerationRequest] | None = None  # encoded prompts by row (care train)

    def requests_for(self, picks: list[int], rows: list[dict[str, Any]]) -> list[GenerationRequest]:
        """Encoded prompts of the picked rows; with a ``request_cache`` each row is encoded once per run."""
        with_images = self.recipe.rollout.engine == "vllm"
        if self.request_cache is None:
            return encode_requests(self.processor, rows, self.recipe.data, with_images=with_images)
        missing = [(i, row) for i, row in zip(picks, rows, strict=True) if i not in self.request_cache]
        if missing:
            encoded = encode_requests(
                self.processor, [row for _, row in missing], self.recipe.data, with_images
            )
            self.request_cache.update({i: req for (i, _), req in zip(missing, encoded, strict=True)})
        return [self.request_cache[i] for i in picks]


def _kinds(groups: list[Group], positive_rule: str) -> list[str]:
    """Group kinds (``selection.group_kind_names``) under the algorithm's positive rule."""
    return group_kind_names([[r["reward"] for r in rows] for _, _, rows in groups],
                            [[r["accuracy"] for r in rows] for _, _, rows in groups], positive_rule)  # fmt: skip


def sample_groups(ctx: RoundContext) -> tuple[list[Group], dict[str, float]]:
    """Draw ``train.prompts_per_round`` prompts, decode ``rollout.n`` samples each and score them.

    With ``algorithm.dynamic_sampling.enable`` (DAPO) this goes through
    ``algorithms.dynamic_sampling.fill_batch``: groups that are all-correct or all-wrong (accuracy
    rule) are dropped and refilled from unused prompts, up to ``max_tries`` draws; fewer informative
    groups than wanted raise ``DynamicSamplingError`` (naming the keys to change).
    """
    recipe, ro = ctx.recipe, ctx.recipe.rollout
    ds = recipe.algorithm.dynamic_sampling
    used: set[int] = set()
    seen: dict[str, int] = {}
    tries = 0

    def draw(want: int) -> list[Group]:
        nonlocal tries
        picks = sample_prompt_indices(len(ctx.examples), want, recipe.train.seed, ctx.round_index * 131 + tries,
                                      exclude=used if tries else None)  # fmt: skip
        salt, tries = tries, tries + 1
        if not picks:
            return []
        used.update(picks)
        rows = [ctx.examples[i] for i in picks]
        requests = ctx.requests_for(picks, rows)
        settings = SamplingSettings(n=ro.n, temperature=ro.temperature, top_p=ro.top_p, top_k=ro.top_k,
                                    max_new_tokens=ro.max_new_tokens, logprob_temperature=policy_temperature(recipe),
                                    seed=round_seed(recipe.train.seed, ctx.round_index, salt=salt))  # fmt: skip
        samples = ctx.engine.generate(requests, settings)
        out = []
        for i, example, request, group_samples in zip(picks, rows, requests, samples, strict=True):
            gid = f"{example['id']}@r{ctx.round_index}"
            seen[gid] = seen.get(gid, 0) + 1
            gid = gid if seen[gid] == 1 else f"{gid}#{seen[gid] - 1}"
            where = f"{ctx.train_path} row {i}"
            out.append(
                (
                    example,
                    request,
                    _build_group_rows(ctx.builder, gid, example, request, group_samples, where),
                )
            )
        return out

    if not ds.enable:
        return draw(recipe.train.prompts_per_round), {}

    def informative(groups: list[Group]) -> list[bool]:
        return [kind == "mixed" for kind in _kinds(groups, "accuracy")]

    groups, counts = fill_batch(draw, informative, recipe.train.prompts_per_round, ds.max_tries)
    return groups, {
        "dynamic_sampling/tries": float(counts["tries"]),
        "dynamic_sampling/dropped_groups": float(counts["dropped"]),
        "dynamic_sampling/sampled_groups": float(counts["sampled"]),
    }


def embed_groups(ctx: RoundContext, groups: list[Group]) -> None:
    """Think-span embeddings of every rollout row when the algorithm needs them (CARE's hard-negative
    selection): from the hidden states the engine kept while decoding (``hf`` prefix loop), else by
    one teacher-forced forward. Otherwise the rows get empty ``embedding`` lists and nothing runs."""
    rows = [r for _, _, g in groups for r in g]
    hidden = [r.pop(HIDDEN, None) for r in rows]
    if not (rows and ctx.spec.needs_embeddings):
        for r in rows:
            r["embedding"] = []
        return
    if all(h is not None for h in hidden):
        lengths = [len(r["response_ids"]) for r in rows]
        emb = think_embeddings(hidden, lengths, [r["think_span"] for r in rows])
        for r, e in zip(rows, emb.tolist(), strict=True):
            r["embedding"] = e
        return
    _embed_rows(ctx.model, rows, [req.mm_inputs for _, req, g in groups for _ in g], ctx.recipe, ctx.pad_id)


def rollout_metrics(
    groups: list[Group], rgr_rows: list[dict[str, Any]], positive_rule: str
) -> dict[str, float]:
    """The round's rollout diagnostics (docs/method.md §11): reward, accuracy, format, group kinds,
    response and think lengths, clip ratio."""
    rows = [r for _, _, g in groups for r in g]
    kinds = _kinds(groups, positive_rule)
    lengths = np.array([len(r["response_ids"]) for r in rows], dtype=float)
    think = np.array([_span_len(r["think_span"]) for r in rows], dtype=float)
    n_groups = max(1, len(groups))
    return {
        "reward/mean": _mean([r["reward"] for r in rows]),
        "accuracy/mean": _mean([r["accuracy"] for r in rows]),
        "format/mean": _mean([r["format"] for r in rows]),
        "groups/count": float(len(groups)),
        **{f"groups/frac_{kind}": kinds.count(kind) / n_groups for kind in GROUP_KIND_NAMES},
        "response_length/mean": float(lengths.mean()) if lengths.size else math.nan,
        "response_length/max": float(lengths.max()) if lengths.size else math.nan,
        "response_length/clip_ratio": _mean([float(r["truncated"]) for r in rows]),
        "response_length/think_mean": float(think.mean()) if think.size else math.nan,
        "rollout/rows": float(len(rows) + len(rgr_rows)),
    }


def check_rollout_inputs(recipe: Recipe, model_path: str, train_path: Path, n_rows: int) -> None:
    """Refuse a missing model folder, and more prompts per round than the data holds (never silent repeats)."""
    from care_core.errors import InputError
    from care_core.models.loading import check_model_path

    check_model_path(model_path, "--model")
    if recipe.train.prompts_per_round > n_rows:
        raise InputError(
            f"train.prompts_per_round={recipe.train.prompts_per_round} is more than the {n_rows} rows of the data",
            str(train_path),
            hint="lower train.prompts_per_round or ingest more rows (data.synthetic.n_train, a source's limit)",
        )


def collect_rollouts(ctx: RoundContext) -> tuple[list[Group], list[dict[str, Any]], dict[str, float]]:
    """One round on an open engine: sample and score, embed, RGR; returns (groups, RGR rows, the
    round's rollout diagnostics). The engine stays open (``care train`` keeps it across rounds)."""
    recipe, spec, engine = ctx.recipe, ctx.spec, ctx.engine
    start = time.perf_counter()
    seconds0, tokens0 = engine.generate_seconds, engine.generated_tokens
    groups, metrics = sample_groups(ctx)
    gen_seconds, gen_tokens = engine.generate_seconds - seconds0, engine.generated_tokens - tokens0
    t_embed = time.perf_counter()
    embed_groups(ctx, groups)
    embed_s = time.perf_counter() - t_embed
    rgr_rows: list[dict[str, Any]] = []
    if spec.uses_rgr and groups:
        rgr_seed = round_seed(recipe.train.seed, ctx.round_index, salt=99)
        rgr_rows, rgr_stats = run_rgr(ctx.model, engine, ctx.builder, recipe, groups, rgr_seed, ctx.pad_id)
        metrics.update(rgr_stats)
    metrics.update(rollout_metrics(groups, rgr_rows, spec.positive_rule))
    metrics.update(
        {
            "perf/rollout_tokens": float(gen_tokens),
            "perf/rollout_tokens_per_s": gen_tokens / gen_seconds if gen_seconds > 0 else math.nan,
            "perf/generate_s": gen_seconds,
            "perf/embed_s": embed_s,
            "perf/rollout_s": time.perf_counter() - start,
        }
    )
    return groups, rgr_rows, metrics


def rollout_rows(groups: list[Group], rgr_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of a round in file order: every group's samples, then the RGR rows."""
    return [r for _, _, g in groups for r in g] + rgr_rows


def run_rollout(
    recipe: Recipe, model_path: str | None, data_dir: str | Path, out_path: str | Path, round_index: int
) -> dict[str, Any]:
    """Decode, score and embed one round of rollouts (+ RGR rows); write them to ``out_path``."""
    from care_core.models import load_policy, resolve_model_path

    start = time.perf_counter()
    model_path = str(model_path) if model_path else resolve_model_path(recipe.model)
    train_path = Path(data_dir) / "train.parquet"
    examples = read_examples(train_path).to_pylist()
    check_rollout_inputs(recipe, model_path, train_path, len(examples))  # before the model load
    model, processor = load_policy(
        model_path,
        dtype=recipe.model.dtype,
        attn_implementation=recipe.model.attn_implementation,
        cache_dir=recipe.model.cache_dir,
    )
    spec = algorithm_spec(recipe.algorithm)
    engine = make_engine(
        recipe.rollout.engine,
        model,
        processor,
        model_path,
        recipe.rollout,
        recipe.model.dtype,
        recipe.train.seed,
        with_hidden=spec.needs_embeddings,
    )
    ctx = RoundContext(recipe, spec, model, processor, engine, RowBuilder(processor, recipe), examples, train_path, round_index,
                   int(processor.tokenizer.pad_token_id or 0))  # fmt: skip
    try:
        groups, rgr_rows, metrics = collect_rollouts(ctx)
    finally:  # a vLLM engine holds its KV cache until closed; the update needs that memory
        close = getattr(engine, "close", None)
        if close is not None:
            close()
    write_rollouts(rollout_rows(groups, rgr_rows), out_path)
    metrics["perf/rollout_s"] = time.perf_counter() - start
    logger.info("rollout round %d: %d groups, %d rows, reward %.3f, %.0f tok/s", round_index, len(groups),
                int(metrics["rollout/rows"]), metrics["reward/mean"], metrics["perf/rollout_tokens_per_s"])  # fmt: skip
    return metrics


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan
