"""Image-only Qwen-VL processors and the Qwen-style chat template.

Without torchvision there is no Qwen-VL *video* processor, and ``AutoProcessor`` then silently
returns only the tokenizer (images ignored). These subclasses drop the video part so the processor
loads by class from any Qwen2-VL / Qwen2.5-VL / Qwen3-VL folder and really handles images.
"""

from __future__ import annotations

from typing import Any

from transformers import Qwen2_5_VLProcessor, Qwen2VLProcessor, Qwen3VLProcessor

# Qwen-style chat template (ChatML with vision markers). Images in a content list become
# <|vision_start|><|image_pad|><|vision_end|>; the processor expands <|image_pad|> to one token per
# merged patch. A system turn is added only when the caller supplies one.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' or 'image' in part %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}"
    "{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


class ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):
    """``Qwen2VLProcessor`` without the video processor (image processor + tokenizer only)."""

    def __init__(
        self,
        image_processor: Any = None,
        tokenizer: Any = None,
        chat_template: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template)


class ImageOnlyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):  # noqa: N801 (mirrors the transformers name)
    """``Qwen2_5_VLProcessor`` without the video processor (image processor + tokenizer only)."""

    def __init__(
        self,
        image_processor: Any = None,
        tokenizer: Any = None,
        chat_template: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template)


class ImageOnlyQwen3VLProcessor(Qwen3VLProcessor):
    """``Qwen3VLProcessor`` without the video processor (image processor + tokenizer only)."""

    def __init__(
        self,
        image_processor: Any = None,
        tokenizer: Any = None,
        chat_template: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template)


# model_type (config.json) -> image-only processor class
PROCESSOR_CLASSES: dict[str, type] = {
    "qwen2_vl": ImageOnlyQwen2VLProcessor,
    "qwen2_5_vl": ImageOnlyQwen2_5_VLProcessor,
    "qwen3_vl": ImageOnlyQwen3VLProcessor,
    "qwen3_vl_moe": ImageOnlyQwen3VLProcessor,
}
