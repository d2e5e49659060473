"""Network job specs (`framework` + `network`): what a user sends, and the run it becomes
once checked (service/network/validate.py), as stored and as the network trainers receive it."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from service.core.schema import Strict, describe_params
from service.data.image_folders import COLORS, DEFAULT_SIDE, MAX_SIDE
from service.jobs.spec import JobSpec, Run
from service.network import losses
from service.network.layers import catalog as layers_catalog
from service.network.presets import PRESETS

APIS = {"tensorflow": ("sequential", "functional", "subclassing"), "pytorch": ("sequential", "module")}
OPTIMIZERS = ("adam", "sgd", "rmsprop", "adamw")


class NetworkDef(Strict):
    preset: Literal["mlp", "feedforward", "lenet"] | None = None
    api: Literal["sequential", "functional", "subclassing", "module"] | None = None
    layers: Any = None


class EarlyStopping(Strict):
    monitor: Literal["loss", "accuracy", "val_loss", "val_accuracy"] = "val_loss"
    patience: int = Field(3, ge=0, le=1000, description="Epochs without improvement before stopping")
    min_delta: float = Field(0.0, ge=0)
    restore_best_weights: bool = False


class Training(Strict):
    epochs: int = Field(5, ge=1, le=1000)
    batch_size: int = Field(32, ge=1, le=65_536)
    optimizer: Literal[OPTIMIZERS] = Field(  # type: ignore[valid-type]
        "adam", description="Either framework's spelling: adam or Adam, rmsprop or RMSprop, ..."
    )
    learning_rate: float = Field(1e-3, gt=0, le=10)
    momentum: float = Field(0.0, ge=0, lt=1, description="sgd and rmsprop")
    weight_decay: float | None = Field(None, ge=0, le=1, description="Default 0.004 for adamw, else 0")
    loss: Literal[losses.NAMES] | None = Field(  # type: ignore[valid-type]
        None,
        description="Keras's or PyTorch's name (cross_entropy, mse_loss, ...). Default: "
        "sparse_categorical_crossentropy for classes, mse for numbers",
    )
    metrics: list[Literal["accuracy", "mae", "mse"]] | None = None
    validation_split: float = Field(
        0.0, ge=0, lt=1, description="Last fraction of the training rows, as Keras takes it"
    )
    seed: int = Field(0, ge=0, le=2**31 - 1)
    early_stopping: EarlyStopping | None = None
    keep_checkpoints: bool = Field(False, description="Keep the per-epoch checkpoints after the job ends")

    @field_validator("optimizer", mode="before")
    @classmethod
    def _any_case(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class NetworkEvaluation(Strict):
    test_size: float = Field(0.2, gt=0, lt=1, description="Held out when the data set has no test part")
    seed: int = Field(0, ge=0, le=2**32 - 1)


Side = Annotated[int, Field(ge=1, le=MAX_SIDE)]


class ImageInput(Strict):
    """What an image-folder data set's pictures are resized to before the network sees them."""

    size: list[Side] | None = Field(
        None,
        min_length=2,
        max_length=2,
        description=f"[height, width] in pixels; default: the data set's most common size, its longest "
        f"side at most {DEFAULT_SIDE}",
    )
    color: Literal[COLORS] | None = Field(  # type: ignore[valid-type]
        None, description="rgb or grayscale; default: grayscale when every image is, else rgb"
    )


class ImagePlan(Strict):
    size: list[int]
    color: Literal[COLORS]  # type: ignore[valid-type]


class NetworkResources(Strict):
    gpu_memory_mb: int | None = Field(
        None, ge=1, description="GPU memory the job holds on a shared GPU (default: the lab's setting for networks)"
    )


class NetworkSpec(JobSpec):
    framework: Literal["tensorflow", "pytorch"]
    network: NetworkDef
    training: Training = Field(default_factory=Training)
    evaluation: NetworkEvaluation = Field(default_factory=NetworkEvaluation)
    image: ImageInput | None = Field(None, description="Image-folder data sets: the size and colour of the input")
    resources: NetworkResources = Field(default_factory=NetworkResources)


class NetworkPlan(Strict):
    preset: str | None
    api: str
    layers: list[dict[str, Any]]


class TrainingPlan(Training):
    """The training options with every default filled in."""

    loss: Literal[losses.NAMES]  # type: ignore[valid-type]
    metrics: list[Literal["accuracy", "mae", "mse"]]
    weight_decay: float = Field(ge=0, le=1)

    @property
    def canonical_loss(self) -> str:
        return losses.canonical(self.loss)


class NetworkRun(Run):
    """A network job as stored and as its trainer receives it."""

    dataset: str | dict[str, Any]
    framework: Literal["tensorflow", "pytorch"]
    task: Literal["classification", "regression"]
    network: NetworkPlan
    input_shape: list[int]
    outputs_probabilities: bool
    parameters: dict[str, int]
    training: TrainingPlan
    evaluation: NetworkEvaluation
    device: Literal["cpu", "gpu"]  # where `auto` was sent: the trainer uses a GPU on the gpu queue
    device_requested: Literal["auto", "cpu", "gpu"]
    image: ImagePlan | None = None  # an image folder's pictures, resized to this

    @property
    def keeps_checkpoints(self) -> bool:
        return self.training.keep_checkpoints


def catalog() -> dict[str, Any]:
    return {
        "frameworks": {name: list(apis) for name, apis in APIS.items()},
        "presets": [
            {"name": name, "title": preset["title"], "frameworks": list(APIS)} for name, preset in PRESETS.items()
        ],
        "layers": layers_catalog(),
        "training": describe_params(Training),
        "losses": losses.catalog(),
    }
