"""The course's PyTorch network (784-512-10) on MNIST, as a student would run it as a code job:
it resumes from its last checkpoint, prints each epoch and reports the same values."""

import argparse
import os
import time

import numpy as np
import torch
from torch import nn

import labtrain_job

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=3)
parser.add_argument("--lr", type=float, default=1e-3)
parser.add_argument("--limit", type=int, default=6000, help="training images used")
parser.add_argument("--sleep", type=float, default=0.0, help="seconds to wait after each epoch")
args = parser.parse_args()

torch.manual_seed(0)
data = np.load(labtrain_job.dataset_path())
x = torch.tensor(data["x_train"][: args.limit], dtype=torch.float32).reshape(-1, 784) / 255.0
y = torch.tensor(data["y_train"][: args.limit]).long()
x_test = torch.tensor(data["x_test"], dtype=torch.float32).reshape(-1, 784) / 255.0
y_test = torch.tensor(data["y_test"]).long()

model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 10))
optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
checkpoint = labtrain_job.checkpoint_dir() / "last.pt"
start = 1
if checkpoint.exists():
    state = torch.load(checkpoint, weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    start = state["epoch"] + 1
    print(f"resumed after epoch {state['epoch']}", flush=True)

for epoch in range(start, args.epochs + 1):
    model.train()
    order = torch.randperm(len(x))
    total, correct = 0.0, 0
    for begin in range(0, len(x), 32):
        index = order[begin : begin + 32]
        out = model(x[index])
        loss = nn.functional.cross_entropy(out, y[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item() * len(index)
        correct += (out.argmax(1) == y[index]).sum().item()
    model.eval()
    with torch.no_grad():
        val_accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
    loss, accuracy = total / len(x), correct / len(x)
    print(f"epoch {epoch} loss {loss!r} accuracy {accuracy!r} val_accuracy {val_accuracy!r}", flush=True)
    labtrain_job.report(epoch=epoch, loss=loss, accuracy=accuracy, val_accuracy=val_accuracy, epochs=args.epochs)
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch}, f"{checkpoint}.tmp")
    os.replace(f"{checkpoint}.tmp", checkpoint)  # a kill mid-write leaves the last whole checkpoint
    time.sleep(args.sleep)

torch.save(model.state_dict(), labtrain_job.outputs_dir() / "model.pt")
