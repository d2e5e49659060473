"""Course topic: seq2seq and word2vec (seq2seq).

A character-level encoder-decoder translates dates as people write them into ISO dates:
"march 3, 2021", "wed 3 mar 2021", "3.3.2021" -> "2021-03-03". The dates and their spellings
are generated here (nothing is downloaded). The encoder (a GRU) reads the input characters;
the decoder (another GRU) starts from its last state and writes the answer one character at
a time, looking back at the encoder's states through dot-product attention (without it, the
one state vector between the two is a bottleneck that takes far longer to learn through).
Training feeds the decoder the right previous character (teacher forcing); evaluation and the
saved model feed it its own previous guess (greedy decoding). Loss, character accuracy and
whole-sequence accuracy are reported each epoch, outputs/translations.txt shows some
translations, and the translator is saved: its model answers int64 character ids of shape
(--max-input,) (the text left-padded with 0s; the alphabets are in outputs/alphabet.json)
with the 10 character ids of the ISO date.

    labtrain run examples/09_seq2seq_characters.py -- --epochs 6
    python examples/09_seq2seq_characters.py --hidden 128          # outside labtrain
"""

import argparse
import datetime
import json

import numpy as np
import torch
from torch import nn

import labtrain_job

INPUT_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789 ,./"
OUTPUT_CHARS = "0123456789-"
START = len(OUTPUT_CHARS)  # the decoder's first input: "begin the answer"
OUTPUT_LENGTH = 10  # yyyy-mm-dd

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=6)
parser.add_argument("--batch-size", type=int, default=64)
parser.add_argument("--lr", type=float, default=3e-3)
parser.add_argument("--samples", type=int, default=4000, help="training dates generated")
parser.add_argument("--hidden", type=int, default=64, help="size of the GRUs' state")
parser.add_argument("--max-input", type=int, default=20, help="input characters (longer inputs are cut)")
args = parser.parse_args()

torch.manual_seed(0)
device = "cuda" if torch.cuda.is_available() else "cpu"


def spell(date: datetime.date, rng: np.random.Generator) -> str:
    """A date as someone might write it."""
    month, weekday = date.strftime("%B").lower(), date.strftime("%A").lower()
    choices = [
        f"{date.day} {month} {date.year}",
        f"{date.day} {month[:3]} {date.year}",
        f"{month} {date.day}, {date.year}",
        f"{weekday[:3]} {date.day} {month[:3]} {date.year}",
        f"{weekday[:3]}, {month[:3]} {date.day} {date.year}",
        f"{date.day}.{date.month}.{date.year}",
        f"{date.day:02d}/{date.month:02d}/{date.year}",
    ]
    return choices[rng.integers(len(choices))]


def encode_input(text: str) -> list[int]:
    """Character ids (1..), left-padded with 0 to --max-input: the encoder ends on the text's last character."""
    ids = [INPUT_CHARS.index(c) + 1 for c in text[-args.max_input :]]
    return [0] * (args.max_input - len(ids)) + ids


def make_dates(n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    first, days = datetime.date(1950, 1, 1).toordinal(), 100 * 365
    dates = [datetime.date.fromordinal(first + int(d)) for d in rng.integers(0, days, n)]
    texts = [spell(d, rng) for d in dates]
    targets = [[OUTPUT_CHARS.index(c) for c in d.isoformat()] for d in dates]
    return torch.tensor([encode_input(t) for t in texts]), torch.tensor(targets), texts


rng = np.random.default_rng(0)
x_train, y_train, _ = make_dates(args.samples, rng)
x_test, y_test, test_texts = make_dates(500, rng)


class DateTranslator(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.source_embedding = nn.Embedding(len(INPUT_CHARS) + 1, 32, padding_idx=0)
        self.encoder = nn.GRU(32, hidden, batch_first=True)
        self.target_embedding = nn.Embedding(len(OUTPUT_CHARS) + 1, 32)
        self.decoder = nn.GRU(32, hidden, batch_first=True)
        self.out = nn.Linear(2 * hidden, len(OUTPUT_CHARS))

    def encode(self, source):
        """The encoder's state after each character (batch, max_input, hidden) and after the last."""
        return self.encoder(self.source_embedding(source))

    def step(self, previous, state, encoded, padding):
        """The decoder reads its previous characters; attention picks the input characters to look at."""
        output, state = self.decoder(self.target_embedding(previous), state)  # (batch, steps, hidden)
        scores = output @ encoded.transpose(1, 2)  # (batch, steps, max_input): dot-product attention
        weights = torch.softmax(scores.masked_fill(padding[:, None, :], -1e9), dim=-1)
        context = weights @ encoded  # a weighted average of the encoder's states
        return self.out(torch.cat([output, context], dim=-1)), state

    def teacher_forced(self, source, target):
        """Training: the decoder reads START and the right answer so far, all steps at once."""
        encoded, state = self.encode(source)
        previous = torch.cat([torch.full_like(target[:, :1], START), target[:, :-1]], dim=1)
        logits, _ = self.step(previous, state, encoded, source == 0)
        return logits  # (batch, 10, output chars)

    def forward(self, source):
        """Greedy decoding: each step reads the decoder's own previous character."""
        encoded, state = self.encode(source)
        previous = torch.full_like(source[:, :1], START)
        answer = []
        for _ in range(OUTPUT_LENGTH):
            logits, state = self.step(previous, state, encoded, source == 0)
            previous = logits.argmax(-1)  # (batch, 1)
            answer.append(previous)
        return torch.cat(answer, dim=1)  # (batch, 10) character ids


def decode(ids) -> str:
    return "".join(OUTPUT_CHARS[i] for i in ids)


model = DateTranslator(args.hidden).to(device)
optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
loss_fn = nn.CrossEntropyLoss()

for epoch in range(1, args.epochs + 1):
    model.train()
    total = 0.0
    for batch in torch.randperm(len(x_train)).split(args.batch_size):
        x, y = x_train[batch].to(device), y_train[batch].to(device)
        logits = model.teacher_forced(x, y)
        loss = loss_fn(logits.reshape(-1, len(OUTPUT_CHARS)), y.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        total += loss.item() * len(batch)
    model.eval()
    with torch.no_grad():
        val_loss = loss_fn(
            model.teacher_forced(x_test.to(device), y_test.to(device)).reshape(-1, len(OUTPUT_CHARS)),
            y_test.to(device).reshape(-1),
        ).item()
        right = model(x_test.to(device)).cpu() == y_test  # greedy decoding, as the saved model does
    labtrain_job.report(
        epoch=epoch,
        loss=total / len(x_train),
        val_loss=val_loss,
        char_accuracy=right.float().mean().item(),
        sequence_accuracy=right.all(dim=1).float().mean().item(),  # every character right
        epochs=args.epochs,
    )

with torch.no_grad():
    answers = model(x_test[:20].to(device)).cpu().tolist()
lines = [
    f"{text:>30} -> {decode(ids)}  {'ok' if ids == truth else 'wrong, ' + decode(truth)}"
    for text, ids, truth in zip(test_texts, answers, y_test[:20].tolist())
]
print("\n".join(lines))
outputs = labtrain_job.outputs_dir()
(outputs / "translations.txt").write_text("\n".join(lines) + "\n")
alphabet = {"input": INPUT_CHARS, "input_ids_start_at": 1, "padding": 0, "output": OUTPUT_CHARS}
(outputs / "alphabet.json").write_text(json.dumps(alphabet, indent=1) + "\n")
labtrain_job.save_model(model, x_test[:64], task="output")
