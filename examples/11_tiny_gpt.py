"""Course topic: large language models (a GPT from scratch).

A tiny character-level GPT: token and position embeddings, then blocks of causal
self-attention (each position sees itself and the positions before it, never after) and a
feed-forward layer, trained to predict each next character. The text ships with Python: the
docstrings in the standard library's source files (nothing is downloaded). An "epoch" here
is --steps batches of random windows of --block characters; the training and validation
losses (cross-entropy per character, in nats; a uniform guess scores ln(vocabulary size)) are
reported each epoch. Afterwards it writes, one character at a time, --sample characters that
follow --prompt to outputs/sample.txt, and saves the model: it answers int64 character ids
of shape (--block,) (the characters in outputs/vocab.json) with the scores of the next
character, and predict's `labels` name that character.

    labtrain run examples/11_tiny_gpt.py -- --epochs 5 --prompt "Return the"
    python examples/11_tiny_gpt.py --layers 4 --dim 128 --steps 500          # outside labtrain
"""

import argparse
import json
import re
import sysconfig
from pathlib import Path

import torch
from torch import nn

import labtrain_job

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=5)
parser.add_argument("--steps", type=int, default=100, help="batches per epoch")
parser.add_argument("--batch-size", type=int, default=32)
parser.add_argument("--lr", type=float, default=3e-3)
parser.add_argument("--block", type=int, default=64, help="characters of context")
parser.add_argument("--dim", type=int, default=64, help="embedding size")
parser.add_argument("--heads", type=int, default=4)
parser.add_argument("--layers", type=int, default=2)
parser.add_argument("--max-chars", type=int, default=300_000, help="characters of text used")
parser.add_argument("--prompt", default="Return the ")
parser.add_argument("--sample", type=int, default=400, help="characters to generate")
parser.add_argument("--temperature", type=float, default=0.8, help="below 1: safer choices, above: wilder")
args = parser.parse_args()

torch.manual_seed(0)
device = "cuda" if torch.cuda.is_available() else "cpu"


def stdlib_docstrings() -> str:
    """The triple-quoted strings (mostly docstrings) of the standard library's top-level modules,
    each line without its indentation."""
    folder = Path(sysconfig.get_paths()["stdlib"])
    texts = []
    for path in sorted(folder.glob("*.py")):
        texts += re.findall(r'"""(.*?)"""', path.read_text(encoding="utf-8", errors="replace"), flags=re.S)
    text = "\n\n".join(texts)
    return "\n".join(line.strip() for line in text.splitlines())


text = stdlib_docstrings()[: args.max_chars]
text = "".join(c if c.isascii() and (c.isprintable() or c == "\n") else "?" for c in text)
chars = sorted(set(text + args.prompt))
index = {c: i for i, c in enumerate(chars)}
data = torch.tensor([index[c] for c in text])
split = int(len(data) * 0.9)
train_data, val_data = data[:split], data[split:]
print(f"{len(text)} characters of text, {len(chars)} different ones")


def windows(source: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n random windows of --block characters, and the same windows one character later (the targets)."""
    starts = torch.randint(len(source) - args.block - 1, (n,))
    x = torch.stack([source[s : s + args.block] for s in starts])
    y = torch.stack([source[s + 1 : s + args.block + 1] for s in starts])
    return x.to(device), y.to(device)


class CausalSelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(args.dim, 3 * args.dim)  # queries, keys and values at once
        self.proj = nn.Linear(args.dim, args.dim)
        self.register_buffer("causal", torch.tril(torch.ones(args.block, args.block, dtype=torch.bool)))

    def forward(self, x):
        batch, steps, dim = x.shape
        q, k, v = self.qkv(x).split(dim, dim=2)
        # (batch, heads, steps, dim per head): each head attends on its own
        q, k, v = (t.view(batch, steps, args.heads, dim // args.heads).transpose(1, 2) for t in (q, k, v))
        scores = q @ k.transpose(-2, -1) / (dim // args.heads) ** 0.5  # (batch, heads, steps, steps)
        scores = scores.masked_fill(~self.causal[:steps, :steps], float("-inf"))  # no looking ahead
        out = torch.softmax(scores, dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(batch, steps, dim))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(args.dim), nn.LayerNorm(args.dim)
        self.attention = CausalSelfAttention()
        self.feed_forward = nn.Sequential(
            nn.Linear(args.dim, 4 * args.dim), nn.GELU(), nn.Linear(4 * args.dim, args.dim)
        )

    def forward(self, x):
        x = x + self.attention(self.norm1(x))  # residual connections around each part
        return x + self.feed_forward(self.norm2(x))


class TinyGPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.tokens = nn.Embedding(len(chars), args.dim)
        self.positions = nn.Embedding(args.block, args.dim)
        self.blocks = nn.Sequential(*[Block() for _ in range(args.layers)])
        self.norm = nn.LayerNorm(args.dim)
        self.head = nn.Linear(args.dim, len(chars))

    def forward(self, ids):  # (batch, steps) ids -> (batch, steps, vocab) scores of each next character
        positions = torch.arange(ids.shape[1], device=ids.device)
        return self.head(self.norm(self.blocks(self.tokens(ids) + self.positions(positions))))


class NextCharacter(nn.Module):
    """What is saved: the scores of the character after the last one."""

    def __init__(self, gpt: TinyGPT):
        super().__init__()
        self.gpt = gpt

    def forward(self, ids):
        return self.gpt(ids)[:, -1]


model = TinyGPT().to(device)
optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
loss_fn = nn.CrossEntropyLoss()
print(f"{sum(p.numel() for p in model.parameters())} parameters")
x_val, y_val = windows(val_data, 256)

for epoch in range(1, args.epochs + 1):
    model.train()
    total = 0.0
    for _ in range(args.steps):
        x, y = windows(train_data, args.batch_size)
        loss = loss_fn(model(x).reshape(-1, len(chars)), y.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        total += loss.item()
    model.eval()
    with torch.no_grad():
        val_loss = loss_fn(model(x_val).reshape(-1, len(chars)), y_val.reshape(-1)).item()
    labtrain_job.report(epoch=epoch, loss=total / args.steps, val_loss=val_loss, epochs=args.epochs)


@torch.no_grad()
def generate(prompt: str, length: int) -> str:
    """One character at a time: score the next one from the last --block, draw it, append it."""
    ids = torch.tensor([[index[c] for c in prompt]], device=device)
    generator = torch.Generator(device=device).manual_seed(0)
    for _ in range(length):
        scores = model(ids[:, -args.block :])[:, -1] / args.temperature
        next_id = torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=generator)
        ids = torch.cat([ids, next_id], dim=1)
    return "".join(chars[i] for i in ids[0].tolist())


sample = generate(args.prompt, args.sample)
print(f"--- generated ---\n{sample}\n---")
outputs = labtrain_job.outputs_dir()
(outputs / "sample.txt").write_text(sample + "\n")
(outputs / "vocab.json").write_text(json.dumps(chars) + "\n")
labtrain_job.save_model(NextCharacter(model), x_val[:64], classes=chars)
