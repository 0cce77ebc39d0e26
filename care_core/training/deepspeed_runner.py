"""DeepSpeed ZeRO execution of the RL update: config, backend adapter and the process launcher.

``launch(spec, dist_cfg, module)`` writes ``spec`` to a JSON file and starts
``procs_per_node`` x ``nodes`` workers with ``torchrun`` (or the ``deepspeed`` launcher) running
``python -m <module> --worker SPEC``; the worker builds a :class:`DeepSpeedBackend` and runs the
same PPO loop as the plain path. On CPU the workers talk over gloo (``DS_ACCELERATOR=cpu``).

Gradient accumulation is caller-owned (``managed_gradient_accumulation: false``): every backward
accumulates, ``step()`` is the boundary (reduce, clip, AdamW, LR schedule).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)


def ds_config(recipe: Any) -> dict[str, Any]:
    """DeepSpeed config for the update (ZeRO stage, bf16, grad clipping, caller-owned accumulation)."""
    d = recipe.train.distributed
    zero: dict[str, Any] = {"stage": int(d.zero_stage), "overlap_comm": False, "contiguous_gradients": False}
    if d.zero_stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return {
        "train_micro_batch_size_per_gpu": int(recipe.train.micro_batch_size),
        "gradient_accumulation_steps": 1,
        "managed_gradient_accumulation": False,
        "gradient_clipping": float(recipe.optim.grad_clip),
        "zero_optimization": zero,
        "bf16": {"enabled": bool(d.bf16)},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def init_distributed() -> tuple[int, int]:
    """Initialise torch.distributed for DeepSpeed (gloo on CPU); returns (rank, world size)."""
    import deepspeed

    backend = "nccl" if torch.cuda.is_available() else "gloo"
    deepspeed.init_distributed(dist_backend=backend)
    import torch.distributed as dist

    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    return dist.get_rank(), dist.get_world_size()


class DeepSpeedBackend:
    """``care_core.training.ppo.Backend`` over a DeepSpeed engine with a client AdamW + schedule."""

    def __init__(self, model: torch.nn.Module, recipe: Any, total_steps: int):
        import deepspeed
        import torch.distributed as dist

        from care_core.training.optim import build_optimizer, build_scheduler

        if torch.cuda.is_available():
            model.to(torch.device("cuda", torch.cuda.current_device()))
        optimizer = build_optimizer(model.parameters(), recipe.optim)
        scheduler = build_scheduler(optimizer, recipe.optim, total_steps)
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config(recipe)
        )
        self.zero_stage = int(recipe.train.distributed.zero_stage)
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()

    @property
    def module(self) -> torch.nn.Module:
        return self.engine.module

    def forward_module(self) -> Any:
        return self.engine

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss, scale_wrt_gas=False)

    def step(self) -> float:
        """Reduce, clip, step; a non-finite global gradient norm raises ``NonFiniteUpdateError`` (the
        engine has stepped by then, so the update stage saves nothing; see ``care_core.training.ppo``)."""
        from care_core.training.ppo import NonFiniteUpdateError

        self.engine.step()
        norm = self.engine.get_global_grad_norm()
        if norm is not None and not math.isfinite(float(norm)):
            raise NonFiniteUpdateError(f"gradient norm is {float(norm)} (DeepSpeed)")
        return float(norm) if norm is not None else float("nan")

    def lr(self) -> float:
        return float(self.engine.get_lr()[0])

    def all_reduce_sum(self, values: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        out = values.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    def full_state_dict(self) -> dict[str, torch.Tensor] | None:
        """Full weights for ``save_pretrained`` (all ranks must call it; ZeRO-3 gathers)."""
        if self.zero_stage == 3:
            return self.engine._zero3_consolidated_16bit_state_dict()
        return None

    def save_state(self, state_dir: Path, step: int) -> None:
        """DeepSpeed checkpoint (partitioned optimizer state, schedule) + the global step; all ranks."""
        state_dir.mkdir(parents=True, exist_ok=True)
        self.engine.save_checkpoint(
            str(state_dir / "deepspeed"), tag="state", client_state={"step": int(step)}
        )

    def load_state(self, state_dir: Path | None) -> int:
        """Restore a previous round's optimizer/scheduler (same world size and ZeRO stage); returns its step."""
        if state_dir is None:
            return 0
        path, client = self.engine.load_checkpoint(
            str(state_dir / "deepspeed"),
            tag="state",
            load_optimizer_states=True,
            load_lr_scheduler_states=True,
        )
        if path is None:
            raise ValueError(f"{state_dir / 'deepspeed'}: no DeepSpeed checkpoint 'state' could be loaded")
        return int((client or {}).get("step", 0))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def launch_command(spec_path: str, dist_cfg: Any, module: str) -> list[str]:
    """The launcher command line for ``procs_per_node`` workers on this node."""
    procs = int(dist_cfg.procs_per_node)
    port = str(_free_port())
    if dist_cfg.launcher == "deepspeed":
        exe = shutil.which("deepspeed") or str(Path(sys.executable).with_name("deepspeed"))
        return [
            exe,
            "--num_nodes",
            str(dist_cfg.nodes),
            "--num_gpus",
            str(procs),
            "--master_port",
            port,
            "--module",
            module,
            "--worker",
            spec_path,
        ]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        str(dist_cfg.nodes),
        "--nproc_per_node",
        str(procs),
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        port,
        "-m",
        module,
        "--worker",
        spec_path,
    ]


def launch(spec: dict[str, Any], dist_cfg: Any, module: str) -> dict[str, Any]:
    """Run the DeepSpeed workers to completion and return rank 0's metrics."""
    out_dir = Path(spec["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="care-ds-") as tmp:
        spec_path = str(Path(tmp) / "spec.json")
        Path(spec_path).write_text(json.dumps(spec, default=str))
        cmd = launch_command(spec_path, dist_cfg, module)
        env = dict(os.environ)
        if not torch.cuda.is_available():
            env.setdefault("DS_ACCELERATOR", "cpu")
            env.setdefault("OMP_NUM_THREADS", "1")
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        logger.info("launching DeepSpeed update: %s", " ".join(cmd))
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = _error_lines(proc.stdout + "\n" + proc.stderr)
            raise RuntimeError(f"DeepSpeed update failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")
    metrics_file = out_dir / "trainer_state" / "worker_metrics.json"
    if not metrics_file.is_file():
        raise RuntimeError(f"DeepSpeed update finished without {metrics_file}")
    return json.loads(metrics_file.read_text())


def _error_lines(output: str, limit: int = 6000) -> str:
    """The informative part of failed workers' output: tracebacks' last lines first, then the tail."""
    lines = output.splitlines()
    errors = [line for line in lines if "Error" in line or "error:" in line]
    head = "\n".join(errors[:20])
    return (head + "\n...\n" + output[-limit:]).strip()
