"""Model loading: ``load_model`` with a reused config and the reference loader (stages/update.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from care_core.config import build_recipe
from care_core.models.loading import load_model, load_policy, same_config
from care_core.stages.update import load_reference


def _copy_with_config(src: str, dst: Path, **changes) -> str:
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg.update(changes)
    (dst / "config.json").write_text(json.dumps(cfg))
    return str(dst)


def test_same_config_compares_parsed_json(micro_dir, tmp_path):
    same = tmp_path / "same"
    shutil.copytree(micro_dir, same)
    cfg = json.loads((same / "config.json").read_text())
    (same / "config.json").write_text(json.dumps(cfg, indent=7, sort_keys=True))  # other bytes, same dict
    assert same_config(micro_dir, str(same))
    other = _copy_with_config(micro_dir, tmp_path / "other", care_test_marker=1)
    assert not same_config(micro_dir, other)
    assert not same_config(micro_dir, str(tmp_path / "missing"))
    (same / "config.json").write_text("{not json")
    assert not same_config(micro_dir, str(same))


def test_reference_with_reused_config_equals_a_fresh_load(micro_dir, tmp_path):
    """The reference loader reuses the policy's parsed config: same weights, attention and outputs
    as ``load_policy`` of the reference folder, no gradients, eval mode."""
    policy, _ = load_policy(micro_dir)
    ref_dir = tmp_path / "ref"
    shutil.copytree(micro_dir, ref_dir)  # same config.json, other weights
    fresh, _ = load_policy(micro_dir)
    with torch.no_grad():
        for p in fresh.parameters():
            p.add_(0.01)
    fresh.save_pretrained(tmp_path / "weights")
    shutil.copy(tmp_path / "weights" / "model.safetensors", ref_dir / "model.safetensors")
    assert same_config(micro_dir, str(ref_dir))
    ref = load_reference(build_recipe({}), str(ref_dir), policy)
    expected = load_model(str(ref_dir))
    assert ref.config is not policy.config  # a copy: the reference never shares mutable state
    assert ref.config._attn_implementation == expected.config._attn_implementation
    sd_ref, sd_exp = ref.state_dict(), expected.state_dict()
    assert sd_ref.keys() == sd_exp.keys()
    assert all(torch.equal(sd_ref[k], sd_exp[k]) for k in sd_exp)
    assert not all(torch.equal(sd_ref[k], v) for k, v in policy.state_dict().items())  # its own weights
    assert not any(p.requires_grad for p in ref.parameters()) and not ref.training
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        assert torch.equal(ref(input_ids=ids).logits, expected(input_ids=ids).logits)


def test_reference_with_another_config_is_parsed_from_its_folder(micro_dir, tmp_path):
    policy, _ = load_policy(micro_dir)
    other = _copy_with_config(micro_dir, tmp_path / "other", rope_theta_marker=123)
    ref = load_reference(build_recipe({}), other, policy)
    assert getattr(ref.config, "rope_theta_marker", None) == 123


def test_weights_to_be_trained_are_read_into_memory(micro_dir, monkeypatch):
    """``writable=True`` (update, resident loop, SFT) asks transformers not to memory-map the
    safetensors file; read-only loads (rollout, reference, evaluation) keep its default."""
    from transformers import AutoModelForImageTextToText

    seen = []
    real = AutoModelForImageTextToText.from_pretrained

    def spy(*args, **kwargs):
        seen.append(kwargs.get("disable_mmap", "absent"))
        return real(*args, **kwargs)

    monkeypatch.setattr(AutoModelForImageTextToText, "from_pretrained", spy)
    model, _ = load_policy(micro_dir, writable=True)
    load_model(micro_dir)
    assert seen == [True, None]
    with torch.no_grad():
        next(model.parameters()).add_(1.0)  # its own memory: training writes do not touch the file
    assert not torch.equal(next(model.parameters()), next(load_model(micro_dir).parameters()))
