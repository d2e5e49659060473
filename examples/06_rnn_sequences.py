"""Course topic: RNN.

An LSTM reads a noisy signal one step at a time and says which waveform it is: sine, square,
triangle or sawtooth, each with a random frequency, phase and amplitude. The signals are
generated here, so nothing is downloaded. Loss and accuracy are reported each epoch and the
classifier is saved: its model answers a sequence of shape (--length, 1) with the waveform.

    labtrain run examples/06_rnn_sequences.py -- --epochs 10
    python examples/06_rnn_sequences.py --cell gru          # outside labtrain, a GRU instead
"""

import argparse

import numpy as np
import torch
from torch import nn

import labtrain_job

WAVES = ["sine", "square", "triangle", "sawtooth"]

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=10)
parser.add_argument("--batch-size", type=int, default=64)
parser.add_argument("--lr", type=float, default=5e-3)
parser.add_argument("--samples", type=int, default=3000, help="training sequences generated")
parser.add_argument("--length", type=int, default=40, help="time steps per sequence")
parser.add_argument("--hidden", type=int, default=32)
parser.add_argument("--cell", choices=["lstm", "gru", "rnn"], default="lstm")
args = parser.parse_args()

torch.manual_seed(0)
device = "cuda" if torch.cuda.is_available() else "cpu"


def make_waves(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n noisy signals of --length steps, (n, length, 1) float32, and their wave's index."""
    labels = rng.integers(0, len(WAVES), n)
    t = np.arange(args.length) / args.length
    cycles = rng.uniform(1.5, 4.0, (n, 1))  # whole waves per sequence
    phase = (t * cycles + rng.uniform(0, 1, (n, 1))) % 1.0  # 0..1 within each wave
    shapes = np.stack(
        [
            np.sin(2 * np.pi * phase),
            np.where(phase < 0.5, 1.0, -1.0),
            4 * np.abs(phase - 0.5) - 1,
            2 * phase - 1,
        ]
    )  # (4, n, length)
    signal = shapes[labels, np.arange(n)] * rng.uniform(0.8, 1.2, (n, 1)) + rng.normal(0, 0.05, (n, args.length))
    return signal[..., None].astype(np.float32), labels


rng = np.random.default_rng(0)
x_train, y_train = (torch.tensor(a) for a in make_waves(args.samples, rng))
x_test, y_test = (torch.tensor(a) for a in make_waves(1000, rng))


class SequenceClassifier(nn.Module):
    def __init__(self, cell: str, hidden: int, classes: int):
        super().__init__()
        self.rnn = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell](1, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x):  # x: (batch, time, features)
        outputs, _ = self.rnn(x)  # the hidden state after every step: (batch, time, hidden)
        return self.head(outputs[:, -1])  # classify from the state after the last step


model = SequenceClassifier(args.cell, args.hidden, len(WAVES)).to(device)
optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
loss_fn = nn.CrossEntropyLoss()

for epoch in range(1, args.epochs + 1):
    model.train()
    total, correct = 0.0, 0
    for batch in torch.randperm(len(x_train)).split(args.batch_size):
        x, y = x_train[batch].to(device), y_train[batch].to(device)
        logits = model(x)
        loss = loss_fn(logits, y)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # recurrent nets' gradients can explode
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

labtrain_job.save_model(model, x_test[:64], classes=WAVES)
