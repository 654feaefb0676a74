"""Load the model to fine-tune (safetensors unless pickle is allowed, head initialised under the
seed, the padding rule applied) and check before training that its q/k sources can be found."""

from __future__ import annotations

from pathlib import Path

import torch
import transformers
from safetensors import SafetensorError
from transformers import AutoTokenizer

from aligneval.align.hooks import arch_spec, find_qk_modules, freeze_targets, head_counts
from aligneval.errors import ArtifactError, ResourceError
from aligneval.padding import fit_tokenizer
from aligneval.predict import check_safetensors
from aligneval.quiet import transformers_bars_off
from aligneval.tasks import auto_model_class
from aligneval.versions import check_tokenizer_not_newer


def load_pretrained(model: str, label_names: list[str], trust_remote_code: bool, allow_pickle: bool, seed: int,
          task: str | None = None):
    """(tokenizer, model) with safetensors weights; the classifier head is initialised under `seed`.
    The tokenizer and config follow aligneval.padding's rule (pad token, side, model inputs)."""


    path = Path(model).expanduser()
    use_safetensors: bool | None = True
    if path.exists():
        if not path.is_dir():
            raise ArtifactError(f"--model {model} is a file; give a model folder or a hub id")

        check_tokenizer_not_newer(path)
        has_safe = any(path.glob("*.safetensors"))
        if has_safe:

            check_safetensors(path, sorted(path.glob("*.safetensors")))  # a truncated file fails here, named
        has_pickle = any(path.glob("*.bin")) or any(path.glob("*.pt"))
        if not has_safe:
            if not has_pickle:
                raise ArtifactError(f"{path} holds no model weights (*.safetensors)")
            if not allow_pickle:  # the same code as `run` for the same folder: an unusable artifact
                raise ArtifactError(
                    f"{path} holds only pickle weights (*.bin), which can run code when loaded; "
                    "convert them to safetensors or pass --allow-pickle if you trust the folder"
                )
            use_safetensors = None
    elif model.startswith((".", "/", "~")) or model.count("/") > 1:  # a path, not an org/name hub id
        raise ArtifactError(f"model folder not found: {model}")
    elif allow_pickle:
        use_safetensors = None
    id2label = {i: name for i, name in enumerate(label_names)}
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        tokenizer = AutoTokenizer.from_pretrained(model, trust_remote_code=trust_remote_code)
        torch.manual_seed(seed)
        with transformers_bars_off():
            loaded = auto_model_class(task).from_pretrained(
                model, num_labels=len(label_names), id2label=id2label,
                label2id={name: i for i, name in id2label.items()}, ignore_mismatched_sizes=True,
                use_safetensors=use_safetensors, trust_remote_code=trust_remote_code,
            )
    except (OSError, ValueError, SafetensorError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        error = ArtifactError if path.exists() else ResourceError
        raise error(f"cannot load model '{model}': {first}") from None
    finally:
        transformers.logging.set_verbosity(verbosity)
    fit_tokenizer(tokenizer, loaded)  # the padding rule (pad = eos if none, right side): saved with each twin
    return tokenizer, loaded


def check_architecture(model, qk_pattern: str | None, freeze_layers: int) -> None:
    """Fail before training when the q/k sources cannot be found, the head counts do not group, or
    the freeze is impossible."""
    spec = arch_spec(model.config, qk_pattern)
    find_qk_modules(model, spec)
    head_counts(model.config, spec)
    freeze_targets(model, freeze_layers, qk_pattern)

