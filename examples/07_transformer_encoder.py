"""Course topic: Transformer.

A small Transformer encoder (token and position embeddings, multi-head self-attention,
`nn.TransformerEncoder`) learns a counting task on generated digit sequences: how many
times does the first digit occur again in the rest of the sequence? (0, 1, 2, 3 or 4+.)
Through self-attention the first position looks at every other one for its own digit;
averaging each token's features without attention could not tell. Loss and accuracy are
reported each epoch, and the model is saved: it answers int64 token ids of shape (--length,),
digits 0..9, with the count's class.

    labtrain run examples/07_transformer_encoder.py -- --epochs 6 --layers 2
    python examples/07_transformer_encoder.py --heads 2          # outside labtrain
"""

import argparse

import numpy as np
import torch
from torch import nn

import labtrain_job

VOCAB = 10  # the digits 0..9 are the tokens
CLASSES = ["0", "1", "2", "3", "4+"]

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=6)
parser.add_argument("--batch-size", type=int, default=64)
parser.add_argument("--lr", type=float, default=3e-3)
parser.add_argument("--samples", type=int, default=4000, help="training sequences generated")
parser.add_argument("--length", type=int, default=12, help="tokens per sequence")
parser.add_argument("--dim", type=int, default=32, help="embedding size")
parser.add_argument("--heads", type=int, default=4)
parser.add_argument("--layers", type=int, default=2)
args = parser.parse_args()

torch.manual_seed(0)
device = "cuda" if torch.cuda.is_available() else "cpu"


def make_sequences(n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = rng.integers(0, VOCAB, (n, args.length))
    again = (tokens[:, 1:] == tokens[:, :1]).sum(axis=1)  # how often the first digit occurs again
    return torch.tensor(tokens), torch.tensor(np.minimum(again, len(CLASSES) - 1))


rng = np.random.default_rng(0)
x_train, y_train = make_sequences(args.samples, rng)
x_test, y_test = make_sequences(1000, rng)


class TransformerClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.tokens = nn.Embedding(VOCAB, args.dim)
        self.positions = nn.Parameter(torch.randn(1, args.length, args.dim) * 0.02)  # learned, one per position
        layer = nn.TransformerEncoderLayer(
            args.dim, args.heads, dim_feedforward=2 * args.dim, dropout=0.0, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, args.layers, enable_nested_tensor=False)
        self.head = nn.Linear(args.dim, len(CLASSES))

    def forward(self, tokens):  # tokens: (batch, length) int64
        h = self.tokens(tokens) + self.positions[:, : tokens.shape[1]]
        h = self.encoder(h)  # self-attention: every position looks at every other
        return self.head(h[:, 0])  # the first position's output answers


model = TransformerClassifier().to(device)
optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
loss_fn = nn.CrossEntropyLoss()
print(f"{sum(p.numel() for p in model.parameters())} parameters")

for epoch in range(1, args.epochs + 1):
    model.train()
    total, correct = 0.0, 0
    for batch in torch.randperm(len(x_train)).split(args.batch_size):
        x, y = x_train[batch].to(device), y_train[batch].to(device)
        logits = model(x)
        loss = loss_fn(logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item() * len(batch)
        correct += (logits.argmax(1) == y).sum().item()
    model.eval()
    with torch.no_grad():
        test_logits = model(x_test.to(device))
        val_loss = loss_fn(test_logits, y_test.to(device)).item()
        val_accuracy = (test_logits.argmax(1) == y_test.to(device)).float().mean().item()
    labtrain_job.report(
        epoch=epoch,
        loss=total / len(x_train),
        accuracy=correct / len(x_train),
        val_loss=val_loss,
        val_accuracy=val_accuracy,
        epochs=args.epochs,
    )

print("first digit, sequence -> predicted count:")
for tokens, predicted in zip(x_test[:5].tolist(), test_logits[:5].argmax(1).tolist()):
    print(f"  {tokens[0]}, {''.join(map(str, tokens))} -> {CLASSES[predicted]}")
labtrain_job.save_model(model, x_test[:64], classes=CLASSES)
