"""Course topic: BERT (masked-language-model pre-training).

A tiny BERT trained from scratch: a Transformer encoder reads windows of --length words in
which some words are hidden, and learns to fill them in from the words on both sides. The
text ships with Python: the docstrings in the standard library's source files (nothing is
downloaded). As in BERT, 15% of the positions are chosen in every batch: 80% of those become
[MASK], 10% a random word and 10% stay, and the loss counts the chosen positions only. Loss,
validation loss and the accuracy on masked words are reported each epoch (guessing the most
common word every time scores about 0.06), and outputs/fill_mask.txt shows some guesses.

The saved model fills in the blanks: it answers int64 word ids of shape (--length,) (the
vocabulary, one word per line by id, is outputs/vocab.txt; 0 is [UNK], 1 is [MASK]) with the
word id it reads at every position, its guess at each [MASK]. (BERT's encoder itself, minus
the guessing head, is what a fine-tuned classifier would start from.)

    labtrain run examples/10_tiny_bert_mlm.py -- --epochs 4
    python examples/10_tiny_bert_mlm.py --layers 4 --dim 128          # outside labtrain
"""

import argparse
import re
import sysconfig
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import nn

import labtrain_job

SPECIALS = ["[UNK]", "[MASK]"]
UNK, MASK = 0, 1

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=4)
parser.add_argument("--batch-size", type=int, default=64)
parser.add_argument("--lr", type=float, default=2e-3)
parser.add_argument("--length", type=int, default=24, help="words per sequence")
parser.add_argument("--vocab", type=int, default=2000, help="most common words kept; the others become [UNK]")
parser.add_argument("--max-words", type=int, default=80_000, help="words of text used")
parser.add_argument("--dim", type=int, default=64, help="embedding size")
parser.add_argument("--heads", type=int, default=4)
parser.add_argument("--layers", type=int, default=2)
parser.add_argument("--mask-rate", type=float, default=0.15, help="positions chosen for prediction")
args = parser.parse_args()

torch.manual_seed(0)
device = "cuda" if torch.cuda.is_available() else "cpu"


def stdlib_docstrings() -> str:
    """The triple-quoted strings (mostly docstrings) of the standard library's top-level modules."""
    folder = Path(sysconfig.get_paths()["stdlib"])
    texts = []
    for path in sorted(folder.glob("*.py")):
        texts += re.findall(r'"""(.*?)"""', path.read_text(encoding="utf-8", errors="replace"), flags=re.S)
    return "\n".join(texts)


words = re.findall(r"[a-z]+", stdlib_docstrings().lower())[: args.max_words]
vocab = SPECIALS + [w for w, _ in Counter(words).most_common(args.vocab - len(SPECIALS))]
index = {w: i for i, w in enumerate(vocab)}
ids = np.array([index.get(w, UNK) for w in words])
sequences = torch.tensor(ids[: len(ids) // args.length * args.length].reshape(-1, args.length))
sequences = sequences[torch.randperm(len(sequences))]
held_out = len(sequences) // 10
x_train, x_val = sequences[held_out:], sequences[:held_out]
print(f"{len(words)} words, {len(vocab)} in the vocabulary, {len(x_train)} sequences of {args.length} to train on")


def mask_tokens(tokens: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking: the input with chosen positions changed, and the targets (-100 elsewhere: ignored)."""
    draw = torch.rand(tokens.shape, generator=generator, device=tokens.device)
    chosen = (draw < args.mask_rate) & (tokens != UNK)  # a word outside the vocabulary is never a target
    targets = torch.where(chosen, tokens, torch.full_like(tokens, -100))
    inputs = tokens.clone()
    inputs[chosen & (draw < args.mask_rate * 0.8)] = MASK  # 80% of the chosen: [MASK]
    randomised = chosen & (draw >= args.mask_rate * 0.8) & (draw < args.mask_rate * 0.9)  # 10%: a random word
    random_words = torch.randint(len(SPECIALS), len(vocab), tokens.shape, generator=generator, device=tokens.device)
    inputs[randomised] = random_words[randomised]
    return inputs, targets  # the last 10% of the chosen stay as they are


class TinyBert(nn.Module):
    def __init__(self):
        super().__init__()
        self.tokens = nn.Embedding(len(vocab), args.dim)
        self.positions = nn.Parameter(torch.randn(1, args.length, args.dim) * 0.02)
        layer = nn.TransformerEncoderLayer(
            args.dim, args.heads, dim_feedforward=4 * args.dim, dropout=0.1, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, args.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(args.dim)
        self.head = nn.Linear(args.dim, len(vocab))  # the masked-language-model head: a score per word

    def forward(self, tokens):  # (batch, length) ids -> (batch, length, vocab) scores
        h = self.encoder(self.tokens(tokens) + self.positions[:, : tokens.shape[1]])  # no causal mask: both sides
        return self.head(self.norm(h))


class FillMask(nn.Module):
    """What is saved: the word the model reads at each position (its guess at each [MASK])."""

    def __init__(self, bert: TinyBert):
        super().__init__()
        self.bert = bert

    def forward(self, tokens):
        return self.bert(tokens).argmax(-1)


model = TinyBert().to(device)
optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
loss_fn = nn.CrossEntropyLoss(ignore_index=-100)
print(f"{sum(p.numel() for p in model.parameters())} parameters")
# Validation: the same masks every epoch, so epochs compare.
val_inputs, val_targets = mask_tokens(x_val, torch.Generator().manual_seed(1))
most_common = Counter(t for t in x_train.flatten().tolist() if t != UNK).most_common(1)[0][0]
baseline = (val_targets[val_targets != -100] == most_common).float().mean().item()
print(f"always guessing {vocab[most_common]!r}: masked accuracy {baseline:.3f}")

for epoch in range(1, args.epochs + 1):
    model.train()
    total, batches = 0.0, 0
    for batch in torch.randperm(len(x_train)).split(args.batch_size):
        inputs, targets = mask_tokens(x_train[batch].to(device))  # new masks each time (dynamic masking)
        logits = model(inputs)
        loss = loss_fn(logits.reshape(-1, len(vocab)), targets.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        total, batches = total + loss.item(), batches + 1
    model.eval()
    with torch.no_grad():
        val_logits = model(val_inputs.to(device))
        targets = val_targets.to(device)
        val_loss = loss_fn(val_logits.reshape(-1, len(vocab)), targets.reshape(-1)).item()
        scored = targets != -100
        masked_accuracy = (val_logits.argmax(-1)[scored] == targets[scored]).float().mean().item()
    labtrain_job.report(
        epoch=epoch, loss=total / batches, val_loss=val_loss, masked_accuracy=masked_accuracy, epochs=args.epochs
    )

guesses = val_logits.argmax(-1).cpu()
lines = []
for inputs, targets, guessed in zip(val_inputs[:8].tolist(), val_targets[:8].tolist(), guesses[:8].tolist()):
    shown = [f"[{vocab[g]}|{vocab[t]}]" if t != -100 else vocab[i] for i, t, g in zip(inputs, targets, guessed)]
    lines.append(" ".join(shown))
text = "each chosen word is shown as [guess|truth]\n" + "\n".join(lines)
print(text)
outputs = labtrain_job.outputs_dir()
(outputs / "fill_mask.txt").write_text(text + "\n")
(outputs / "vocab.txt").write_text("\n".join(vocab) + "\n")
labtrain_job.save_model(FillMask(model), val_inputs[:64], task="output")
