"""A plug-in student written against the protocol alone (no xkd base class): a small stacked GRU."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from transformers import AutoTokenizer

from xkd import Trace


class GRUStudent(nn.Module):
    def __init__(self, tokenizer, num_labels: int, layers: int = 2, width: int = 16) -> None:
        super().__init__()
        self.tokenizer, self.num_labels, self.num_layers, self.layer_width = tokenizer, num_labels, layers, width
        self.embedding = nn.Embedding(len(tokenizer), width, padding_idx=tokenizer.pad_token_id)
        self.grus = nn.ModuleList(nn.GRU(width, width, batch_first=True) for _ in range(layers))
        self.classifier = nn.Linear(width, num_labels)

    @classmethod
    def build(cls, teacher, task, train_texts, layers, width: int = 16):
        return cls(teacher.tokenizer, task.output_size, layers, int(width))

    def forward(self, inputs, output_attentions=False) -> Trace:
        mask = inputs["attention_mask"].unsqueeze(-1).float()
        x = self.embedding(inputs["input_ids"])
        vectors = []
        for gru in self.grus:
            x = gru(x)[0] * mask
            vectors.append(x.sum(1) / mask.sum(1))  # mean over real tokens
        layer_vectors = torch.stack(vectors, dim=1)
        return Trace(self.classifier(vectors[-1]), layer_vectors, attention_mask=inputs["attention_mask"])

    def save(self, directory, **meta) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), directory / "gru.pt")
        self.tokenizer.save_pretrained(directory)
        config = {"num_labels": self.num_labels, "layers": self.num_layers, "width": self.layer_width}
        record = {"kind": "gru", "plugin": "plugin_gru:GRUStudent", "config": config, **meta}
        (directory / "student.json").write_text(json.dumps(record))
        return directory

    @classmethod
    def load(cls, directory) -> GRUStudent:
        directory = Path(directory)
        config = json.loads((directory / "student.json").read_text())["config"]
        model = cls(AutoTokenizer.from_pretrained(directory), **config)
        model.load_state_dict(torch.load(directory / "gru.pt"))
        return model
