"""Attack-test helpers: a tiny BERT quickly trained on the fixture sentences, so attacks have real
outcomes (it classifies most sentences correctly, and one sentiment word decides the label)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.tiny import make_tiny_model, sentences


def make_trained_tiny_model(tmp_path, seed: int = 0, steps: int = 60, name: str | None = None) -> Path:
    """A tiny BERT fine-tuned for `steps` Adam steps on 300 fixture sentences (a few seconds)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    folder = make_tiny_model(Path(tmp_path) / (name or f"trained-{seed}"), seed=seed)
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    rows = sentences(300, seed=100 + seed)
    enc = tok([t for t, _ in rows], padding=True, return_tensors="pt")
    labels = torch.tensor([y for _, y in rows])
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        idx = torch.randint(0, len(rows), (32,))
        loss = model(input_ids=enc["input_ids"][idx], attention_mask=enc["attention_mask"][idx],
                     labels=labels[idx]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def write_attack_data(path: Path, n: int = 40, seed: int = 7, extra: list[tuple[str, int]] | None = None) -> Path:
    """jsonl with id/text/label rows of fresh fixture sentences (plus `extra` rows first)."""
    rows = list(extra or []) + sentences(n, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"id": f"x{i}", "text": t, "label": y}) + "\n"
                            for i, (t, y) in enumerate(rows)))
    return path
