"""One padding rule for training, prediction and the `alignment` suite, so a batch gives each example
the logits a one-example forward gives it.

- Side: right, for every architecture in the q/k registry, whatever the tokenizer's `padding_side`
  (many decoder tokenizers ship "left", a generation setting). Their position ids count from the
  first position, so right padding leaves every real token where a one-example forward puts it, and
  the decoders' `*ForSequenceClassification` pools the last token that is not the pad id (found the
  same way on either side). Models outside the registry keep their tokenizer's side.
- Pad token: the tokenizer's; a tokenizer without one pads with its eos token (pad = eos), else with
  the config's pad_token_id. The model config's `pad_token_id` is set to the same id, since that is
  what the decoders' classifiers use to find the last real token. Both are saved with a trained
  twin, and the rule applied is written into its card (`padding`).
- Inputs: the tokenizer emits only what the model's forward takes (a BERT tokenizer's segment ids
  never reach a decoder).
"""

from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass
from typing import Any

from aligneval.align.hooks import is_registered
from aligneval.errors import UsageError


RULE = ("right padding for registered architectures (else the tokenizer's side); pad token: the tokenizer's, "
        "else its eos token (pad = eos), else the config's pad_token_id; config.pad_token_id set to it")


@dataclass(frozen=True)
class Padding:
    side: str  # "right" or "left"
    pad_token_id: int
    source: str  # "tokenizer pad token", "eos token (pad = eos)" or "config pad_token_id"
    rule: str = RULE

    @property
    def left(self) -> bool:
        return self.side == "left"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit_tokenizer(tokenizer: Any, model: Any) -> Padding:
    """Apply the module's rules to `tokenizer` and `model.config` (in place); return the padding."""
    accepted = inspect.signature(model.forward).parameters
    names = [n for n in tokenizer.model_input_names if n in accepted]
    if "input_ids" in names:
        tokenizer.model_input_names = names
    return settle_padding(tokenizer, model)


def settle_padding(tokenizer: Any, model: Any) -> Padding:
    """Apply the padding rule to `tokenizer` and `model.config` (in place) and return it."""
    config = model.config
    if tokenizer.pad_token_id is not None:
        pad, source = int(tokenizer.pad_token_id), "tokenizer pad token"
    elif tokenizer.eos_token is not None and tokenizer.eos_token_id is not None:
        tokenizer.pad_token = tokenizer.eos_token
        pad, source = int(tokenizer.eos_token_id), "eos token (pad = eos)"
    elif isinstance(getattr(config, "pad_token_id", None), int):
        pad, source = int(config.pad_token_id), "config pad_token_id"
    else:
        raise UsageError("the tokenizer has no pad token and no eos token, and the config no pad_token_id: "
                         "batches cannot be padded; set tokenizer.pad_token and save it with the model")
    config.pad_token_id = pad
    side = "right" if is_registered(config) else getattr(tokenizer, "padding_side", "right") or "right"
    tokenizer.padding_side = side
    return Padding(side=side, pad_token_id=pad, source=source)


def padding_card(tokenizer: Any) -> dict[str, Any]:
    """The padding a twin was trained with, as its card records it."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return {"side": getattr(tokenizer, "padding_side", "right") or "right", "pad_token_id": pad_id,
            "pad_token": tokenizer.pad_token,
            "pad_is_eos": tokenizer.eos_token is not None and tokenizer.pad_token == tokenizer.eos_token}
