"""Course topic: seq2seq and word2vec (word2vec).

Word vectors learned with skip-gram and negative sampling, from text that ships with Python:
the docstrings in the standard library's source files (about 150,000 words; nothing is
downloaded). Each word is trained to predict the words around it (a dot product of two
embeddings, pushed up for real neighbours and down for --negatives random words), so words
used alike end up close. The loss is reported each epoch; the nearest neighbours of a few
words go to outputs/neighbours.txt, and the vectors to outputs/vectors.tsv and
outputs/metadata.tsv (load both in https://projector.tensorflow.org to look around).

    labtrain run examples/08_word2vec_skipgram.py -- --epochs 3
    python examples/08_word2vec_skipgram.py --dim 100 --window 5          # outside labtrain
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

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--batch-size", type=int, default=1024)
parser.add_argument("--lr", type=float, default=1e-2)
parser.add_argument("--dim", type=int, default=64, help="size of a word vector")
parser.add_argument("--window", type=int, default=3, help="neighbours on each side")
parser.add_argument("--negatives", type=int, default=5, help="random words per real pair")
parser.add_argument("--min-count", type=int, default=5, help="rarer words are dropped")
parser.add_argument("--max-words", type=int, default=150_000, help="words of text used")
parser.add_argument("--query", nargs="*", default=["file", "string", "thread", "error", "list", "read", "socket"])
args = parser.parse_args()

torch.manual_seed(0)
rng = np.random.default_rng(0)
device = "cuda" if torch.cuda.is_available() else "cpu"


def stdlib_docstrings() -> str:
    """The triple-quoted strings (mostly docstrings) of the standard library's top-level modules."""
    folder = Path(sysconfig.get_paths()["stdlib"])
    texts = []
    for path in sorted(folder.glob("*.py")):
        texts += re.findall(r'"""(.*?)"""', path.read_text(encoding="utf-8", errors="replace"), flags=re.S)
    return "\n".join(texts)


words = re.findall(r"[a-z]+", stdlib_docstrings().lower())[: args.max_words]
counts = Counter(words)
vocab = [w for w, c in counts.most_common() if c >= args.min_count]
index = {w: i for i, w in enumerate(vocab)}
frequency = np.array([counts[w] for w in vocab], dtype=np.float64) / len(words)
# Frequent words ("the", "a") say little about their neighbours: keep each with probability
# sqrt(1e-4 / frequency) (word2vec's subsampling), and drop the rare ones altogether.
keep_probability = np.minimum(1.0, np.sqrt(1e-4 / frequency))
ids = np.array([index[w] for w in words if w in index])
print(f"{len(words)} words, {len(vocab)} in the vocabulary")

# Negative samples are drawn in proportion to count^0.75, as in word2vec.
noise = torch.tensor(frequency**0.75, dtype=torch.float32, device=device)


def skipgram_pairs() -> tuple[torch.Tensor, torch.Tensor]:
    """(centre, context) pairs of one epoch: every kept word with each neighbour within --window."""
    kept = ids[rng.random(len(ids)) < keep_probability[ids]]
    centres, contexts = [], []
    for offset in range(1, args.window + 1):
        centres += [kept[:-offset], kept[offset:]]
        contexts += [kept[offset:], kept[:-offset]]
    return torch.tensor(np.concatenate(centres)), torch.tensor(np.concatenate(contexts))


class SkipGram(nn.Module):
    def __init__(self, words: int, dim: int):
        super().__init__()
        self.centre = nn.Embedding(words, dim)  # the vectors we keep
        self.context = nn.Embedding(words, dim)  # the words' vectors as neighbours
        nn.init.uniform_(self.centre.weight, -0.5 / dim, 0.5 / dim)
        nn.init.zeros_(self.context.weight)

    def forward(self, centre, context, negative):
        v = self.centre(centre)  # (batch, dim)
        positive = (v * self.context(context)).sum(-1)  # a score per real pair
        negatives = torch.bmm(self.context(negative), v.unsqueeze(2)).squeeze(2)  # (batch, negatives)
        return -(nn.functional.logsigmoid(positive) + nn.functional.logsigmoid(-negatives).sum(1)).mean()


model = SkipGram(len(vocab), args.dim).to(device)
optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)

for epoch in range(1, args.epochs + 1):
    centres, contexts = skipgram_pairs()
    total, batches = 0.0, 0
    for batch in torch.randperm(len(centres)).split(args.batch_size):
        negative = torch.multinomial(noise, len(batch) * args.negatives, replacement=True)
        loss = model(centres[batch].to(device), contexts[batch].to(device), negative.view(len(batch), args.negatives))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total, batches = total + loss.item(), batches + 1
    labtrain_job.report(epoch=epoch, loss=total / batches, pairs=len(centres), epochs=args.epochs)

vectors = nn.functional.normalize(model.centre.weight.detach(), dim=1).cpu()
lines = []
for word in args.query:
    if word not in index:
        lines.append(f"{word}: not in the vocabulary")
        continue
    similarity = vectors @ vectors[index[word]]  # cosine similarity with every word
    nearest = [i for i in similarity.argsort(descending=True).tolist() if i != index[word]][:8]
    lines.append(f"{word}: " + ", ".join(f"{vocab[i]} ({similarity[i]:.2f})" for i in nearest))
print("\n".join(lines))
outputs = labtrain_job.outputs_dir()
(outputs / "neighbours.txt").write_text("\n".join(lines) + "\n")
np.savetxt(outputs / "vectors.tsv", vectors.numpy(), delimiter="\t", fmt="%.5f")
(outputs / "metadata.tsv").write_text("\n".join(vocab) + "\n")
