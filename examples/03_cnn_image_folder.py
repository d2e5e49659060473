"""Course topic: computer vision (a CNN on your own pictures).

A convolutional network learns to tell classes of pictures apart from an image-folder data
set: a .zip of one folder of images per class (`circle/001.png`, `square/001.png`, ...),
uploaded once; in the job `labtrain_job.dataset_path()` is that folder of class folders,
read-only. The classes are the folder names, sorted. Every picture is resized to --size
(RGB, values 0..1); a fifth is held out for validation, and random left-right flips make
more of the rest. Loss and accuracy are reported each epoch and the network is saved with
the preparation it expects (`preprocess`), so its model page and predict take a picture
file of any size and answer the class name.

Any image-folder data set works; examples/make_shapes.py draws one (circles, squares and
triangles) to try it with:

    python examples/make_shapes.py shapes.zip
    curl -s -X POST $API/datasets -H "Authorization: Bearer $TOKEN" -F file=@shapes.zip   # -> its "id"
    labtrain run examples/03_cnn_image_folder.py --dataset <id> -- --epochs 8
    labtrain predict <model id> --file my_circle.png
    python examples/make_shapes.py shapes.zip --folder shapes
    python examples/03_cnn_image_folder.py --data shapes          # outside labtrain
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

import labtrain_job

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=8)
parser.add_argument("--batch-size", type=int, default=16)
parser.add_argument("--lr", type=float, default=3e-3)
parser.add_argument("--size", type=int, default=32, help="pictures are resized to size x size pixels")
parser.add_argument(
    "--data", default=labtrain_job.dataset_path(), help="a folder of class folders (default: the job's)"
)
args = parser.parse_args()
if args.data is None or not Path(args.data).is_dir():
    parser.error("no image folder here: run it as a job with --dataset <uploaded zip's id>, or give --data FOLDER")

torch.manual_seed(0)
device = "cuda" if torch.cuda.is_available() else "cpu"


def load_image_folder(root: Path, size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every picture as (3, size, size) floats in 0..1 (channels first, as PyTorch wants), its
    class index, and the class names (the folder names, sorted)."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    images, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((root / name).iterdir()):
            with Image.open(path) as img:  # resized as predict resizes uploaded pictures
                img = img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
                images.append(np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0)
            labels.append(label)
    return np.stack(images), np.array(labels), classes


x, y, classes = load_image_folder(Path(args.data), args.size)
order = np.random.default_rng(0).permutation(len(x))  # shuffled, then a fifth held out
x, y = torch.tensor(x[order]), torch.tensor(y[order])
held_out = max(1, len(x) // 5)
x_train, y_train, x_val, y_val = x[held_out:], y[held_out:], x[:held_out], y[:held_out]
print(f"{len(x)} pictures of {len(classes)} classes ({', '.join(classes)}): {len(x_train)} to train on")

model = nn.Sequential(
    nn.Conv2d(3, 16, 3, padding=1),  # 16 filters of 3x3 over the RGB channels
    nn.BatchNorm2d(16),  # each filter's outputs rescaled to mean 0, variance 1 over the batch: faster training
    nn.ReLU(),
    nn.MaxPool2d(2),  # half the size
    nn.Conv2d(16, 32, 3, padding=1),
    nn.BatchNorm2d(32),
    nn.ReLU(),
    nn.MaxPool2d(2),
    nn.Conv2d(32, 64, 3, padding=1),
    nn.BatchNorm2d(64),
    nn.ReLU(),
    nn.AdaptiveAvgPool2d(1),  # the average of each filter over the picture: 64 numbers
    nn.Flatten(),
    nn.Linear(64, len(classes)),
).to(device)
optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
loss_fn = nn.CrossEntropyLoss()

for epoch in range(1, args.epochs + 1):
    model.train()
    total, correct = 0.0, 0
    for batch in torch.randperm(len(x_train)).split(args.batch_size):
        images, labels = x_train[batch].to(device), y_train[batch].to(device)
        flip = torch.rand(len(images), device=device) < 0.5  # augmentation: mirror half the batch
        images = torch.where(flip[:, None, None, None], images.flip(3), images)
        logits = model(images)
        loss = loss_fn(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item() * len(batch)
        correct += (logits.argmax(1) == labels).sum().item()
    model.eval()
    with torch.no_grad():
        val_logits = model(x_val.to(device))
        val_loss = loss_fn(val_logits, y_val.to(device)).item()
        val_accuracy = (val_logits.argmax(1) == y_val.to(device)).float().mean().item()
    labtrain_job.report(
        epoch=epoch,
        loss=total / len(x_train),
        accuracy=correct / len(x_train),
        val_loss=val_loss,
        val_accuracy=val_accuracy,
        epochs=args.epochs,
    )

confusion = np.zeros((len(classes), len(classes)), dtype=int)  # rows: true class, columns: predicted
np.add.at(confusion, (y_val.numpy(), val_logits.argmax(1).cpu().numpy()), 1)
print("confusion matrix on the held-out pictures (rows: true, columns: predicted):")
for name, row in zip(classes, confusion):
    print(f"  {name:>12} {row}")
# The model takes (3, size, size) RGB in 0..1: preprocess tells predict to prepare pictures so.
labtrain_job.save_model(
    model,
    x_val[:64],
    classes=classes,
    preprocess={"size": [args.size, args.size], "channels": 3, "scale": 1 / 255},
)
