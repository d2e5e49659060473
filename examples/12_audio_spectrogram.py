"""Course topic: audio (sounds classified from their spectrograms).

Half-second sounds are generated here (nothing is downloaded), four kinds: a pure tone, a
chord of three tones, a chirp (a tone sliding up or down) and a noise burst, each at a random
pitch and loudness over background hiss. Each sound becomes a spectrogram with
`torch.stft`: how loud each frequency is in each short slice of time, on a log scale, an
image of (frequencies, time slices) that a small CNN classifies. Loss and accuracy are
reported each epoch; outputs/ gets one .wav of each kind (listen to them) and
spectrograms.png (one of each, low frequencies at the bottom). The CNN is saved: its model
answers a spectrogram of shape (1, --n-fft / 2 + 1, time slices), computed as
`spectrogram()` below does, with the kind of sound.

    labtrain run examples/12_audio_spectrogram.py -- --epochs 6
    python examples/12_audio_spectrogram.py --samples 4000          # outside labtrain
"""

import argparse
import wave

import numpy as np
import torch
from PIL import Image
from torch import nn

import labtrain_job

KINDS = ["tone", "chord", "chirp", "noise"]

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=6)
parser.add_argument("--batch-size", type=int, default=32)
parser.add_argument("--lr", type=float, default=2e-3)
parser.add_argument("--samples", type=int, default=1200, help="training sounds generated")
parser.add_argument("--rate", type=int, default=8000, help="samples per second")
parser.add_argument("--seconds", type=float, default=0.5)
parser.add_argument("--n-fft", type=int, default=256, help="samples per time slice of the spectrogram")
args = parser.parse_args()

torch.manual_seed(0)
device = "cuda" if torch.cuda.is_available() else "cpu"


def make_sounds(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n sounds, (n, samples) float32 in -1..1, and their kind's index."""
    t = np.arange(int(args.rate * args.seconds)) / args.rate
    labels = rng.integers(0, len(KINDS), n)
    sounds = np.empty((n, len(t)), dtype=np.float32)
    for i, kind in enumerate(labels):
        pitch = rng.uniform(200, 1500)  # Hz
        if KINDS[kind] == "tone":
            sound = np.sin(2 * np.pi * pitch * t)
        elif KINDS[kind] == "chord":  # a major triad: frequency ratios 4:5:6
            sound = sum(np.sin(2 * np.pi * pitch * r * t + rng.uniform(0, 2 * np.pi)) for r in (1, 1.25, 1.5)) / 3
        elif KINDS[kind] == "chirp":  # the frequency slides from pitch to end over the sound
            end = pitch * rng.choice([0.4, 2.5])
            phase = 2 * np.pi * (pitch * t + (end - pitch) * t**2 / (2 * t[-1]))
            sound = np.sin(phase)
        else:
            sound = rng.normal(0, 0.5, len(t)).clip(-1, 1)
        envelope = np.minimum(1, np.minimum(t, t[-1] - t) / 0.02)  # 20 ms fade in and out: no clicks
        loudness = rng.uniform(0.3, 0.9)
        sounds[i] = loudness * envelope * sound + rng.normal(0, 0.02, len(t))
    return sounds, labels


def spectrogram(sounds: torch.Tensor) -> torch.Tensor:
    """(n, samples) -> (n, 1, n_fft / 2 + 1 frequencies, time slices): log-magnitude STFT."""
    window = torch.hann_window(args.n_fft, device=sounds.device)
    stft = torch.stft(sounds, args.n_fft, hop_length=args.n_fft // 2, window=window, return_complex=True)
    return torch.log1p(stft.abs())[:, None]  # log: quiet and loud parts both visible


rng = np.random.default_rng(0)
train_sounds, y_train = make_sounds(args.samples, rng)
test_sounds, y_test = make_sounds(400, rng)
x_train, y_train = spectrogram(torch.tensor(train_sounds)), torch.tensor(y_train)
x_test, y_test = spectrogram(torch.tensor(test_sounds)), torch.tensor(y_test)
print(f"{len(x_train)} sounds of {args.seconds} s; spectrograms of shape {list(x_train.shape[1:])}")

model = nn.Sequential(
    nn.Conv2d(1, 8, 3, padding=1),
    nn.BatchNorm2d(8),
    nn.ReLU(),
    nn.MaxPool2d(2),
    nn.Conv2d(8, 16, 3, padding=1),
    nn.BatchNorm2d(16),
    nn.ReLU(),
    nn.MaxPool2d(2),
    nn.Conv2d(16, 32, 3, padding=1),
    nn.ReLU(),
    nn.AdaptiveMaxPool2d(1),  # the strongest response of each filter anywhere in time and frequency
    nn.Flatten(),
    nn.Linear(32, len(KINDS)),
).to(device)
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

outputs = labtrain_job.outputs_dir()
first = [int(np.flatnonzero(y_test.numpy() == k)[0]) for k in range(len(KINDS))]  # a test sound of each kind
for kind, i in zip(KINDS, first):
    with wave.open(str(outputs / f"{kind}.wav"), "wb") as out:  # 16-bit mono
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(args.rate)
        out.writeframes((test_sounds[i] * 32767).astype("<i2").tobytes())
pictures = x_test[first, 0].numpy()  # (kinds, frequencies, time)
strip = np.concatenate([p / p.max() for p in pictures], axis=1)[::-1]  # side by side, low frequencies at the bottom
Image.fromarray((strip * 255).astype(np.uint8)).resize((strip.shape[1] * 3, strip.shape[0] * 2)).save(
    outputs / "spectrograms.png"
)
labtrain_job.save_model(model, x_test[:64], classes=KINDS)
