"""Question answering by distillation: does a student distilled from a fine-tuned QA teacher beat
the same student trained on the labels alone, on the same budget?

Data: the SQuAD-shaped stand-in of elm-eval (:mod:`elm_eval.qa_standin`: contexts of 3-4 Penn
Treebank sentences, "what follows <the first three words of one of them> ?", the answer its next
three words; v2.0 adds unanswerable questions), read through ``datasets.load_dataset`` from a local
copy in the hub's layout, as ``hub_mirrors`` reads ``rajpurkar/squad``. Teacher: the pretrained
MiniLM-L6 (6 x 384) with a new QA head, fine-tuned on the labels with the new code
(:class:`elm_train.QATaskTraining`, DeepSpeed engine, best dev checkpoint). Students: one ELM
architecture (3 BERT blocks of 128, random initialisation, the teacher's tokenizer), trained with
the same steps, learning rate and seed twice: on the labels alone, and distilled (soft
cross-entropy on the start and end logits + Pearson hidden-state KD on embeddings and layers, the
tasks stage's defaults, + the labels). Both keep their best dev checkpoint; EM/F1 of that
checkpoint are elm-eval's SQuAD metrics on the dev split.

    python benchmarks/bench_qa_distillation.py [--version v1|v2] [--seeds 0 1] [--smoke]
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import _common
import datasets
import torch
from transformers import AutoModelForQuestionAnswering, AutoTokenizer, PreTrainedModel

import elm_eval
from elm_eval.qa_standin import write_hub_copy
from elm_space import Architecture, Backbone, BlockKind, LayerChoice
from elm_train.config import DeepSpeedConfig, OptimConfig, QATaskSettings, TaskStageConfig
from elm_train.models import ElmForQuestionAnswering, elm_config
from elm_train.teacher import resolve
from elm_train.training.loop import LoopSettings
from elm_train.training.qa_distill import QATaskTraining, QAValidation, encode_train, qa_model

NAME = "qa_distillation"


def bottom_of_teacher(source: str, layers: int, seed: int) -> PreTrainedModel:
    """The pretrained MiniLM's embedding and first ``layers`` layers, a new QA head (seeded): a
    student that starts from pretrained weights, as the pipeline's retrained students do."""
    torch.manual_seed(seed)
    return AutoModelForQuestionAnswering.from_pretrained(source, num_hidden_layers=layers)


def student(vocab: int, positions: int, seed: int) -> ElmForQuestionAnswering:
    backbone = Backbone(hidden_size=128, vocab_size=vocab, max_positions=positions, type_vocab_size=2)
    block = LayerChoice(candidate=0, kind=BlockKind.BERT, ffn_width=512, heads=2)
    torch.manual_seed(seed)
    return ElmForQuestionAnswering(elm_config(Architecture(backbone=backbone, layers=(block,) * 3)))


def train(name, model, teacher, train_rows, validation, settings, optim, seed, out):
    trainer = QATaskTraining(
        name,
        model,
        teacher,
        train_rows,
        elm_eval.get_qa_task(validation.metric),  # the spec TaskTraining records (QA: its metric)
        settings,
        optim,
        LoopSettings(
            DeepSpeedConfig(micro_batch_size=16),
            seed=seed,
            out_dir=out / name,
            checkpoint_every=10_000,
            pad_id=0,
        ),
        validation=validation,
        eval_every=None,
    )
    started = time.perf_counter()
    trainer.train()
    return {
        "best_step": trainer.best["step"],
        "f1": trainer.best["score"],
        "values": trainer.best["values"],
        "evaluations": [[e["step"], round(e["score"], 2)] for e in trainer.evaluations],
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0], NAME, seeds=2, threads=2)
    p.add_argument("--version", choices=["v1", "v2"], default="v1")
    p.add_argument("--train", type=int, default=500)
    p.add_argument("--validation", type=int, default=150)
    p.add_argument("--teacher-epochs", type=int, default=3)
    p.add_argument("--teacher-lr", type=float, default=2e-4)
    p.add_argument("--student-epochs", type=int, default=6)
    p.add_argument("--student-lr", type=float, default=5e-4)
    p.add_argument(
        "--student-init",
        choices=["scratch", "teacher-layers"],
        default="scratch",
        help="scratch: the ELM student, random; teacher-layers: MiniLM's first --student-layers layers",
    )
    p.add_argument("--student-layers", type=int, default=2)
    p.add_argument(
        "--teacher-dir", type=Path, help="a QA teacher fine-tuned by an earlier run (skips its training)"
    )
    args = p.parse_args()
    if args.smoke:
        args.train, args.validation, args.teacher_epochs, args.student_epochs = 64, 32, 1, 1
    machine = _common.machine(args.threads)
    out = _common.output_path(args, f"{NAME}_{args.version}_{args.student_init}")
    work = Path(tempfile.mkdtemp(prefix="qa-bench-"))
    datasets.config.HF_DATASETS_CACHE = work / "cache"
    task = "squad" if args.version == "v1" else "squad_v2"
    hub = write_hub_copy(work / task, args.version, args.train, args.validation, seed=0)
    spec = elm_eval.with_hub_mirrors(elm_eval.get_qa_task(task), {f"rajpurkar/{task}": hub})
    data = elm_eval.load_qa_data(spec)
    source = resolve(_common.TEACHER)
    tokenizer = AutoTokenizer.from_pretrained(source)
    qa = QATaskSettings(max_seq_length=96, doc_stride=32, max_query_length=16)
    settings = TaskStageConfig(qa=qa)
    rows = encode_train(tokenizer, data.train, qa)
    validation = QAValidation.build(tokenizer, data.validation, qa, spec.metric)

    result = {
        **_common.provenance(NAME, args, machine),
        "seeds": args.seeds,
        "version": args.version,
        "data": {
            "train_examples": len(data.train),
            "train_windows": len(rows),
            "validation": len(data.validation),
        },
        "settings": {
            "qa": qa.model_dump(),
            "teacher": {
                "model": _common.TEACHER,
                "lr": args.teacher_lr,
                "epochs": args.teacher_epochs,
                "batch": 16,
            },
            "student": {
                "arch": "3 x BERT(128, ffn 512, 2 heads), random init"
                if args.student_init == "scratch"
                else f"MiniLM-L6's embedding and first {args.student_layers} layers (384 wide), new QA head",
                "lr": args.student_lr,
                "epochs": args.student_epochs,
                "batch": 16,
            },
            "kd": {
                "logits": settings.qa.logits_loss,
                "hidden": settings.hidden_terms(),
                "label_weight": settings.label_weight,
            },
        },
        "runs": [],
    }
    if args.teacher_dir is None:
        teacher = qa_model(source, seed=0)
        optim = OptimConfig(lr=args.teacher_lr, epochs=args.teacher_epochs)
        result["teacher"] = train("teacher", teacher, None, rows, validation, settings, optim, 0, work)
        teacher_dir = work / "teacher" / "best"
    else:
        teacher_dir = args.teacher_dir
        value = validation.score(qa_model(teacher_dir, seed=0).eval())
        result["teacher"] = {"from": str(teacher_dir), "f1": value["score"], "values": value["values"]}
    best_teacher = qa_model(teacher_dir, seed=0).eval()
    print("teacher", result["teacher"])
    for seed in args.seeds:
        optim = OptimConfig(lr=args.student_lr, epochs=args.student_epochs)
        run = {"seed": seed}
        for label, who in (("labels only", None), ("distilled", best_teacher)):
            if args.student_init == "scratch":
                model = student(len(tokenizer), 128, seed)
            else:
                model = bottom_of_teacher(source, args.student_layers, seed)
            run[label] = train(
                f"{label.replace(' ', '-')}-{seed}", model, who, rows, validation, settings, optim, seed, work
            )
            print(seed, label, run[label]["f1"])
        result["runs"].append(run)
        _common.write(out, result, summary(result, args, data))


def summary(result, args, data) -> str:
    lines = [
        f"Task: PTB SQuAD {args.version} stand-in, {len(data.train)} train / {len(data.validation)} dev examples.",
        "",
        f"Teacher (MiniLM-L6 + QA head, {args.teacher_epochs} epochs"
        f"{', fine-tuned by an earlier run: ' + result['teacher']['from'] if 'from' in result['teacher'] else ''}): "
        f"dev F1 {result['teacher']['f1']:.1f}, "
        f"values {', '.join(f'{k} {v:.1f}' for k, v in result['teacher']['values'].items())}",
        "",
        "| seed | labels only F1 | distilled F1 | labels only EM | distilled EM |",
        "|---|---|---|---|---|",
    ]
    em = "exact_match" if args.version == "v1" else "exact"
    for run in result["runs"]:
        a, b = run["labels only"], run["distilled"]
        lines.append(
            f"| {run['seed']} | {a['f1']:.1f} | {b['f1']:.1f} | {a['values'][em]:.1f} | {b['values'][em]:.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
