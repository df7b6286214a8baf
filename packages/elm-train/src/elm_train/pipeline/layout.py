"""Where every artifact of a run directory lives, named once.

Stages, the runner, the report and the tests find files through a :class:`RunLayout`, never by
joining path strings of their own, so the directory's shape can be read (and changed) here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DONE_FILE = "done.json"


@dataclass(frozen=True)
class RunLayout:
    root: Path

    # --- the run as a whole ----------------------------------------------------------------
    @property
    def config(self) -> Path:
        """The config the run was started with; a resume must match it."""
        return self.root / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def monitor_dir(self) -> Path:
        """Live curves: ``tensorboard/<stage>/`` event files, ``csv/<stage>/`` one CSV per series."""
        return self.root / "monitor"

    def stage_dir(self, stage: str) -> Path:
        return self.root / stage

    def done_marker(self, stage: str) -> Path:
        """Written last by a finished stage, with what the stage reports."""
        return self.stage_dir(stage) / DONE_FILE

    def training_dir(self, stage: str, *parts: str) -> Path:
        """Where a training loop keeps its checkpoints."""
        return self.stage_dir(stage).joinpath(*parts)

    # --- data --------------------------------------------------------------------------------
    @property
    def tokenizer(self) -> Path:
        """The run's tokenizer (trained, built from files, or the teacher's), saved by the data stage."""
        return self.root / "tokenizer"

    @property
    def blocks(self) -> Path:
        """The packed training and held-out blocks (an Arrow DatasetDict)."""
        return self.stage_dir("data") / "blocks"

    # --- teacher -----------------------------------------------------------------------------
    @property
    def teacher_model(self) -> Path:
        """A stand-in teacher trained by the teacher stage."""
        return self.stage_dir("teacher") / "model"

    @property
    def teacher_training(self) -> Path:
        return self.stage_dir("teacher") / "training.json"

    # --- supernet ----------------------------------------------------------------------------
    @property
    def supernet_final(self) -> Path:
        """The trained supernet: weights, grown space and width history."""
        return self.stage_dir("supernet") / "final"

    # --- multitask ---------------------------------------------------------------------------
    @property
    def multitask_final(self) -> Path:
        """The multitask-fine-tuned supernet: weights (with the per-task classifiers) and its tasks."""
        return self.stage_dir("multitask") / "final"

    @property
    def multitask_heldout(self) -> Path:
        return self.stage_dir("multitask") / "heldout"

    def multitask_heldout_task(self, task: str) -> Path:
        """A task's held-out training rows (encoded, an Arrow dataset), which the search scores."""
        return self.multitask_heldout / task

    @property
    def multitask_split(self) -> Path:
        """Per task, which training rows were held out (indices into the capped training split)."""
        return self.stage_dir("multitask") / "split.json"

    # --- search ------------------------------------------------------------------------------
    @property
    def search_state(self) -> Path:
        return self.stage_dir("search") / "state.json"

    @property
    def search_result(self) -> Path:
        return self.stage_dir("search") / "result.json"

    @property
    def search_architecture(self) -> Path:
        return self.stage_dir("search") / "architecture.json"

    @property
    def search_plots(self) -> dict[str, Path]:
        return {name: self.stage_dir("search") / f"{name}.png" for name in ("progress", "pareto")}

    @property
    def latency_table(self) -> Path:
        return self.stage_dir("search") / "latency_table.json"

    @property
    def latency_predictor(self) -> Path:
        return self.stage_dir("search") / "latency_predictor.json"

    # --- heads -------------------------------------------------------------------------------
    @property
    def heads_architecture(self) -> Path:
        return self.stage_dir("heads") / "architecture.json"

    @property
    def heads_cka(self) -> Path:
        return self.stage_dir("heads") / "cka.json"

    # --- retrain -----------------------------------------------------------------------------
    @property
    def students(self) -> Path:
        """The students the retrain stage trains: architecture and initialisation of each."""
        return self.stage_dir("retrain") / "students.json"

    def student_dir(self, name: str) -> Path:
        return self.stage_dir("retrain") / name

    def student_model(self, name: str) -> Path:
        """A retrained student, exported with save_pretrained (weights, config, tokenizer)."""
        return self.student_dir(name) / "model"

    # --- tasks and evaluation ----------------------------------------------------------------
    def task_dir(self, task: str) -> Path:
        return self.stage_dir("tasks") / task

    def task_model(self, task: str, who: str) -> Path:
        return self.task_dir(task) / who

    def task_loss_curve(self, task: str, who: str) -> Path:
        return self.task_dir(task) / f"{who}-loss.json"

    def task_training(self, task: str, who: str) -> Path:
        return self.task_dir(task) / f"{who}-train"

    def task_best(self, task: str, who: str) -> Path:
        """The best model on the validation split so far, while a task trains."""
        return self.task_training(task, who) / "best"

    def task_predictions(self, task: str, who: str) -> Path:
        """The selected model's prediction for every validation example, with the labels (elm-eval's
        :class:`~elm_eval.TaskPredictions`), for the report's paired bootstrap."""
        return self.task_dir(task) / f"{who}-predictions.json"

    def task_selection(self, task: str, who: str) -> Path:
        """Which evaluation's model ``task_model`` is (step, score) and every evaluation's score."""
        return self.task_dir(task) / f"{who}-selection.json"

    @property
    def glue_submission(self) -> Path:
        """GLUE test-set predictions in the server's layout, one folder per student."""
        return self.stage_dir("tasks") / "glue_submission"

    def glue_submission_dir(self, student: str) -> Path:
        """``CoLA.tsv``, ``MNLI-m.tsv``, ... of one student (zip the folder's files to submit)."""
        return self.glue_submission / student

    def glue_submission_record(self, student: str) -> Path:
        """Per task, which files were written (rows) and which could not be (why)."""
        return self.glue_submission / f"{student}.json"

    @property
    def results(self) -> Path:
        """Every elm-eval result file of the run (tasks, perplexity, latency), read by the report."""
        return self.root / "results"

    def onnx_dir(self, who: str) -> Path:
        """A student's deployment files: ``model.onnx``, ``model.int8.onnx``, ``onnx_export.json``."""
        return self.stage_dir("evaluate") / "onnx" / who

    # --- report ------------------------------------------------------------------------------
    @property
    def report_dir(self) -> Path:
        return self.stage_dir("report")

    @property
    def report_json(self) -> Path:
        return self.report_dir / "report.json"

    @property
    def report_markdown(self) -> Path:
        return self.report_dir / "report.md"
