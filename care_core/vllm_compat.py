"""Run vLLM's Qwen-VL models in a CPU venv that has no torchvision (docs/platform-notes.md).

PyPI's torchvision builds are CUDA ones and do not import next to the CPU torch, so the CPU vLLM
venv (``make venv-vllm``) removes them. transformers 5.19 then still has a PIL image processor for
Qwen2-VL/Qwen2.5-VL (``image_processing_pil_qwen2_vl``), but vLLM imports the torchvision one by
module path (``image_processing_qwen2_vl``, for ``smart_resize`` and the class name) and fails;
and it loads ``Qwen2_5_VLProcessor.from_pretrained``, whose video processor needs torchvision.

:func:`install` adds an import hook, only when torchvision cannot be found, that

- serves ``image_processing_qwen2_vl`` from the PIL implementation (same ``smart_resize``,
  ``Qwen2VLImageProcessor`` bound to ``Qwen2VLImageProcessorPil``);
- makes ``AutoVideoProcessor.from_pretrained`` return a :class:`NoVideoProcessor` (with a
  warning) where it would fail for lack of torchvision, and lets ``ProcessorMixin`` accept it, so
  the processor is image-only, as ``care_core.models.processor`` builds it. A video passed to
  it raises; the engine sets vLLM's video limit to 0, so none is ever sent. The engine sets the video limit to 0, so no video ever
  reaches it; images still go through the real image processor. vLLM inspects models in fresh subprocesses, so the venv
activates the hook at interpreter start with a ``.pth`` line (written by ``make venv-vllm``)::

    import care_core.vllm_compat as c; c.install()

This module imports nothing heavy: it runs in every interpreter of that venv.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType

TORCHVISION_MODULE = "transformers.models.qwen2_vl.image_processing_qwen2_vl"
PIL_MODULE = "transformers.models.qwen2_vl.image_processing_pil_qwen2_vl"
VIDEO_AUTO_MODULE = "transformers.models.auto.video_processing_auto"
PROCESSING_MODULE = "transformers.processing_utils"


class _PilImageProcessorLoader(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None  # default module object

    def exec_module(self, module: ModuleType) -> None:
        pil = importlib.import_module(PIL_MODULE)
        module.__dict__.update({k: v for k, v in vars(pil).items() if not k.startswith("__")})
        module.Qwen2VLImageProcessor = pil.Qwen2VLImageProcessorPil
        module.__all__ = ["Qwen2VLImageProcessor"]


class NoVideoProcessor(dict):
    """Stands in for the torchvision video processor: declares no video kwargs, refuses videos.
    A ``dict`` (its settings) so that the processor's JSON ``repr`` still works."""

    def __init__(self, reason: str = "torchvision is not installed"):
        from transformers.processing_utils import VideosKwargs

        super().__init__(video_processor_type=None, reason=reason)
        self.valid_kwargs = VideosKwargs
        self.reason = reason

    def __call__(self, *args, **kwargs):
        raise RuntimeError(f"video input is not supported in this environment: {self.reason}")


def _image_only_video_loader(original):
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        try:
            return original.__func__(cls, pretrained_model_name_or_path, *args, **kwargs)
        except (OSError, ValueError, ImportError) as exc:
            import logging

            logging.getLogger(__name__).warning(
                "no video processor for %s without torchvision (%s); image-only processor",
                pretrained_model_name_or_path,
                str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
            )
            return NoVideoProcessor(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)

    return classmethod(from_pretrained)


def _patch_video_auto(module: ModuleType) -> None:
    auto = module.AutoVideoProcessor
    auto.from_pretrained = _image_only_video_loader(auto.from_pretrained)


def _patch_processing(module: ModuleType) -> None:
    mixin = module.ProcessorMixin
    original = mixin.check_argument_for_proper_class

    def check_argument_for_proper_class(self, argument_name, argument):
        if argument_name == "video_processor" and isinstance(argument, NoVideoProcessor):
            return NoVideoProcessor  # image-only processor (no torchvision, no video processor)
        return original(self, argument_name, argument)

    mixin.check_argument_for_proper_class = check_argument_for_proper_class


_PATCHES = {VIDEO_AUTO_MODULE: _patch_video_auto, PROCESSING_MODULE: _patch_processing}


class _PatchAfterExec(importlib.abc.Loader):
    """Run the real loader, then apply the module's patch from ``_PATCHES``."""

    def __init__(self, real: importlib.abc.Loader):
        self.real = real

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.real.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.real.exec_module(module)
        _PATCHES[module.__name__](module)


class PilImageProcessorFinder(importlib.abc.MetaPathFinder):
    """Serve :data:`TORCHVISION_MODULE` from :data:`PIL_MODULE`; patch the modules in ``_PATCHES``."""

    def find_spec(self, fullname: str, path=None, target=None) -> importlib.machinery.ModuleSpec | None:
        if fullname == TORCHVISION_MODULE:
            return importlib.machinery.ModuleSpec(
                fullname, _PilImageProcessorLoader(), origin=f"{PIL_MODULE} (care_core.vllm_compat)"
            )
        if fullname in _PATCHES:
            real = importlib.machinery.PathFinder.find_spec(fullname, path)
            if real is None or real.loader is None:
                return None
            real.loader = _PatchAfterExec(real.loader)
            return real
        return None


def torchvision_importable() -> bool:
    return importlib.util.find_spec("torchvision") is not None


def install() -> bool:
    """Add the hook when torchvision is absent; returns whether it is active. Idempotent."""
    if torchvision_importable():
        return False
    if not any(isinstance(f, PilImageProcessorFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, PilImageProcessorFinder())
    return True
