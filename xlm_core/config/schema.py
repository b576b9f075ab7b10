"""The run configuration's record: ``RunConfig`` and its sections (the task's are in ``task.py``)."""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import Field, SerializeAsAny

from xlm_core.config.task import AnyTaskConfig, StarTaskConfig
from xlm_core.plugins.settings import FamilyConfig, PredictorSettings, StrictModel

M = TypeVar("M", bound=FamilyConfig)
P = TypeVar("P", bound=PredictorSettings)


class TrainingConfig(StrictModel):
    """Optimisation, schedule, precision, checkpointing and hardware (passed to Lightning)."""

    max_steps: int = Field(2000, ge=1, description="Optimizer steps.")
    max_minutes: float | None = Field(
        None, gt=0.0, description="Stop training after this many minutes, even before max_steps; null: no limit."
    )
    batch_size: int = Field(64, ge=1, description="Examples per step (per device).")
    lr: float = Field(1e-3, gt=0.0, description="Peak learning rate (AdamW).")
    warmup_steps: int = Field(100, ge=0, description="Linear warm-up steps.")
    schedule: Literal["cosine", "constant"] = Field("cosine", description="Learning-rate schedule after warm-up.")
    min_lr_ratio: float = Field(0.1, ge=0.0, le=1.0, description="Cosine floor as a fraction of lr.")
    weight_decay: float = Field(0.01, ge=0.0, description="AdamW decay on matrices (not norms, biases, embeddings).")
    betas: tuple[Annotated[float, Field(ge=0.0, lt=1.0)], Annotated[float, Field(ge=0.0, lt=1.0)]] = Field(
        (0.9, 0.98), description="AdamW betas, each in [0, 1)."
    )
    grad_clip: float | None = Field(1.0, gt=0.0, description="Gradient norm clip; null disables.")
    precision: Literal["auto", "32", "bf16-mixed", "16-mixed"] = Field(
        "auto",
        description="auto: bf16 autocast where the device computes bf16 natively (on a CPU: AMX or "
        "AVX512-BF16, and d_model x max(d_ff, vocabulary) >= 256 x 1024), else fp32.",
    )
    ema: float | None = Field(None, gt=0.0, lt=1.0, description="EMA decay of weights (e.g. 0.999); null disables.")
    seed: int = Field(0, description="Seed for initialisation, data order and corruption.")
    val_every: int = Field(500, ge=1, description="Validate every N steps.")
    ckpt_every: int | None = Field(None, ge=1, description="Write DIR/step-<N>/ every N steps; null: final only.")
    num_workers: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        "auto",
        description="DataLoader worker processes; auto: 0 on a CPU (collating costs ~1% of a CPU step), "
        "2 on a GPU (where it would cost a large share of a short step). docs/usage.md, Speed.",
    )
    compile: bool = Field(
        False,
        description="torch.compile the model for training (inductor): faster steps after a one-off "
        "compile of tens of seconds; needs a working C++ compiler (CPU) or Triton (GPU).",
    )
    accelerator: str = Field("auto", description="Lightning accelerator: auto, cpu, gpu, ...")
    devices: int | str = Field("auto", description="Lightning devices: auto, a count, or a list like '0,1'.")
    strategy: str = Field("auto", description="Lightning strategy: auto, ddp, fsdp, ...")
    num_nodes: int = Field(1, ge=1, description="Lightning nodes.")


class EvalConfig(StrictModel):
    """What validation and ``xlm eval`` measure."""

    val_predict_limit: int = Field(100, ge=0, description="Examples decoded at each validation for task metrics.")
    limit: int | None = Field(None, ge=1, description="xlm eval: examples to use (default: the whole split).")
    batch_size: int = Field(64, ge=1, description="Batch size for evaluation and generation.")
    seed: int = Field(0, description="Seed of evaluation-time corruption and sampling.")


class RunConfig(StrictModel, Generic[M, P]):
    """Everything a run needs; saved verbatim in every checkpoint's config.json."""

    plugin: str = Field(description="The model family (an installed plugin).")
    preset: str | None = Field(None, description="The preset applied over the defaults, if any.")
    task: AnyTaskConfig = Field(default_factory=StarTaskConfig)
    model: SerializeAsAny[M]
    predictor: SerializeAsAny[P]
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


#: The sections a preset may set.
PRESET_SECTIONS = ("task", "model", "predictor", "training", "eval")


def run_config_class(family: Any) -> type[RunConfig]:
    """``RunConfig`` parametrised with a family's config and predictor settings classes."""
    return RunConfig[family.manifest.config, family.manifest.predictor_settings]  # type: ignore[name-defined]
