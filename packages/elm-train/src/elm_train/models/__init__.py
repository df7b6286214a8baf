"""ELM models: the static Hugging Face models, the elastic supernet, and BERT export.

Importing this package registers ``model_type="elm"`` with transformers' Auto classes, so saved
models load with ``AutoModel...from_pretrained`` wherever elm-train is installed (and with
``trust_remote_code=True`` where it is not).
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
)

from elm_train.models.configuration_elm import ElmConfig, ElmModelError
from elm_train.models.export import bert_config, bert_export_problem, export_bert, to_bert
from elm_train.models.modeling_elm import (
    ElmForCausalLM,
    ElmForMaskedLM,
    ElmForQuestionAnswering,
    ElmForSequenceClassification,
    ElmModel,
    ElmModelOutput,
    ElmOutputWithLogits,
    ElmPreTrainedModel,
    ElmQuestionAnsweringOutput,
)
from elm_train.models.settings import ModelSettings, architecture_of, elm_config
from elm_train.models.supernet import (
    ElmSupernet,
    GrownCandidate,
    GrowthRecord,
    HeadName,
    SliceChange,
    reset_optimizer_slices,
)

AutoConfig.register("elm", ElmConfig, exist_ok=True)
AutoModel.register(ElmConfig, ElmModel, exist_ok=True)
AutoModelForMaskedLM.register(ElmConfig, ElmForMaskedLM, exist_ok=True)
AutoModelForCausalLM.register(ElmConfig, ElmForCausalLM, exist_ok=True)
AutoModelForSequenceClassification.register(ElmConfig, ElmForSequenceClassification, exist_ok=True)
AutoModelForQuestionAnswering.register(ElmConfig, ElmForQuestionAnswering, exist_ok=True)

__all__ = [
    "ElmConfig",
    "ElmForCausalLM",
    "ElmForMaskedLM",
    "ElmForQuestionAnswering",
    "ElmForSequenceClassification",
    "ElmModel",
    "ElmModelError",
    "ElmModelOutput",
    "ElmOutputWithLogits",
    "ElmPreTrainedModel",
    "ElmQuestionAnsweringOutput",
    "ElmSupernet",
    "GrownCandidate",
    "GrowthRecord",
    "HeadName",
    "ModelSettings",
    "SliceChange",
    "architecture_of",
    "bert_config",
    "bert_export_problem",
    "elm_config",
    "export_bert",
    "reset_optimizer_slices",
    "to_bert",
]
