"""TRL ``GRPOTrainer`` on the tiny offline VLM: the named baseline of ``bench/step_bench.py``.

Same model folder, prompts (system prompt + image + problem), G, completion length, batch,
AdamW settings and clip range as our RL step; KL on both sides (k3 estimator, beta
``StepSettings.kl_beta``, a frozen reference model that TRL loads itself).
Needs ``trl==1.16.0`` (the ``bench`` extra): ``.venv/bin/pip install -e '.[bench]'``.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from typing import Any


@dataclass
class StepSettings:
    """One RL step = ``prompts`` prompts x ``g`` samples of up to ``max_new_tokens`` tokens, one
    optimizer step over all ``prompts * g`` sequences."""

    prompts: int = 4
    g: int = 8
    max_new_tokens: int = 64
    lr: float = 5e-5
    eps_low: float = 0.2
    eps_high: float = 0.3
    steps: int = 5  # timed steps (after one untimed warm-up step)
    seed: int = 0
    kl_beta: float = 0.04  # TRL's historical default; k3 on both sides


def trl_rows(rows: list[dict[str, Any]], system_prompt: str) -> list[dict[str, Any]]:
    """Example rows -> TRL conversational multimodal records (``prompt`` messages + ``image``)."""
    from PIL import Image

    out = []
    for row in rows:
        image = Image.open(io.BytesIO(row["images"][0]["bytes"])).convert("RGB")
        out.append(
            {
                "prompt": [
                    {"role": "system", "content": [{"type": "text", "text": system_prompt}]},
                    {
                        "role": "user",
                        "content": [{"type": "image"}, {"type": "text", "text": row["problem"]}],
                    },
                ],
                "image": image,
                "answer": row["answer"],
                "answer_type": row["answer_type"],
                "choices": list(row.get("choices") or []),
            }
        )
    return out


def run_trl_grpo(
    model_path: str, rows: list[dict[str, Any]], system_prompt: str, s: StepSettings, work_dir: str
) -> dict[str, Any]:
    """Train ``s.steps + 1`` GRPO steps with TRL; returns per-step wall seconds (warm-up excluded)."""
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from care_core.models import load_policy
    from care_core.rewards import score_response

    model, processor = load_policy(model_path)
    model.train()

    def reward(
        completions: list[Any], answer: list[str], answer_type: list[str], choices: list[list[str]], **_: Any
    ) -> list[float]:
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [
            score_response(t, a, at, choices=ch or None)["reward"]
            for t, a, at, ch in zip(texts, answer, answer_type, choices, strict=True)
        ]

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self._start = 0.0

        def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001
            self._start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            self.times.append(time.perf_counter() - self._start)

    n_steps = s.steps + 1
    needed = s.prompts * n_steps
    data = trl_rows([rows[i % len(rows)] for i in range(needed)], system_prompt)
    config = GRPOConfig(
        output_dir=work_dir,
        per_device_train_batch_size=s.prompts * s.g,  # TRL counts completions
        num_generations=s.g,
        steps_per_generation=1,
        num_iterations=1,
        max_completion_length=s.max_new_tokens,
        temperature=1.0,
        learning_rate=s.lr,
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.01,
        max_grad_norm=1.0,
        beta=s.kl_beta,
        epsilon=s.eps_low,
        epsilon_high=s.eps_high,
        loss_type="dapo",  # token-mean over the batch, as our token-mean aggregation
        scale_rewards="group",
        gradient_checkpointing=False,
        use_cpu=not torch.cuda.is_available(),
        bf16=False,
        max_steps=n_steps,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=s.seed,
        shuffle_dataset=False,
        disable_tqdm=True,
    )
    timer = StepTimer()
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[reward],
        args=config,
        train_dataset=Dataset.from_list(data),
        processing_class=processor,
        callbacks=[timer],
    )
    trainer.train()
    lengths = [
        h.get("completions/mean_length") for h in trainer.state.log_history if "completions/mean_length" in h
    ]
    return {
        "step_seconds": timer.times[1:],
        "warmup_seconds": timer.times[0],
        "mean_completion_tokens": lengths,
    }
