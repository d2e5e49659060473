"""The losses a network job may name, under Keras's names and PyTorch's alike.

Students meet both frameworks in the course and write what their notebook used:
`sparse_categorical_crossentropy` in Keras, `cross_entropy` or `nn.CrossEntropyLoss` in
PyTorch. Each loss has one canonical name (Keras's) that the trainers build on either
framework; every other name a student may write is an alias of it.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.data.tasks import CLASSIFICATION, REGRESSION


@dataclass(frozen=True)
class Loss:
    name: str  # canonical: what the trainers build
    task: str
    title: str
    aliases: tuple[str, ...]  # PyTorch's functional and class names, Keras's long names


LOSSES = (
    Loss(
        "sparse_categorical_crossentropy",
        CLASSIFICATION,
        "Cross-entropy of integer class labels, from logits or from softmax outputs; with softmax outputs "
        "the log is taken first, as PyTorch's NLLLoss expects log-probabilities",
        ("cross_entropy", "CrossEntropyLoss", "nll_loss", "NLLLoss", "SparseCategoricalCrossentropy"),
    ),
    Loss("mse", REGRESSION, "Mean squared error", ("mean_squared_error", "MeanSquaredError", "mse_loss", "MSELoss")),
    Loss("mae", REGRESSION, "Mean absolute error", ("mean_absolute_error", "MeanAbsoluteError", "l1_loss", "L1Loss")),
    Loss(
        "huber",
        REGRESSION,
        "Huber loss with delta 1: squared near 0, absolute far out (PyTorch's smooth L1 with beta 1)",
        ("huber_loss", "HuberLoss", "smooth_l1_loss", "SmoothL1Loss"),
    ),
)
BY_NAME = {name: loss for loss in LOSSES for name in (loss.name, *loss.aliases)}
NAMES = tuple(BY_NAME)
DEFAULT = {CLASSIFICATION: "sparse_categorical_crossentropy", REGRESSION: "mse"}


def canonical(name: str) -> str:
    """The canonical name of a loss given under any of its names."""
    return BY_NAME[name].name


def for_task(task: str) -> list[str]:
    return [loss.name for loss in LOSSES if loss.task == task]


def catalog() -> list[dict[str, object]]:
    return [
        {"name": loss.name, "task": loss.task, "title": loss.title, "also_accepted": list(loss.aliases)}
        for loss in LOSSES
    ]
