"""lm-evaluation-harness on the benchmark files of ../shared/fixtures/evals as they are published, through local task
definitions: each is the harness's own YAML for the task (prompt, choices, target, metrics) with `dataset_path: json`
or `text` and the fixture file as `data_files`, and a `process_docs` that turns the file's layout into the fields that
YAML reads (PIQA's labels file joined, HellaSwag's six lines an item, ARC's nested question flattened). Run by
`bench/bench_lm_eval.py` with the python of lm-eval's own venv (lmforge never imports it).

    PEER_VENV/bin/python bench/lm_eval_tasks.py --model HF_DIR --evals EVALS_DIR --work DIR --limit N --output JSON

Writes {task: {"metrics": {...}, "items": {doc_id: [[loglikelihood, is_greedy], ...]}}}.
"""

from __future__ import annotations

import argparse
import json
import os

UTILS = """
import re

import datasets

EVALS = {evals!r}


def _lines(path):
    with open(path, encoding="utf-8") as handle:
        return [line for line in handle.read().splitlines() if line.strip()]


def piqa_docs(dataset):
    labels = _lines(EVALS + "/piqa/valid-labels-head200.lst")
    return dataset.map(lambda doc, index: {{"label": int(labels[index])}}, with_indices=True)


def _clean(text):
    text = text.strip().replace(" [title]", ". ")
    text = re.sub("\\\\[.*?\\\\]", "", text)
    return text.replace("  ", " ")


def hellaswag_docs(dataset):
    lines = [row["text"] for row in dataset if row["text"].strip()]
    items = []
    for start in range(0, len(lines), 6):
        items.append({{"query": _clean(lines[start]), "choices": [_clean(e) for e in lines[start + 2 : start + 6]],
                      "label": int(lines[start + 1])}})
    return datasets.Dataset.from_list(items)


def boolq_docs(dataset):
    return dataset.map(lambda doc: {{"label": int(bool(doc["answer"]))}})


def arc_docs(dataset):
    def flat(doc):
        return {{"question_text": doc["question"]["stem"],
                "choice_texts": [c["text"] for c in doc["question"]["choices"]],
                "gold": [c["label"] for c in doc["question"]["choices"]].index(doc["answerKey"])}}
    return dataset.map(flat)


def winogrande_text(doc):
    return {{"1": 0, "2": 1}}[doc["answer"]]


def winogrande_target(doc):
    return doc["sentence"][doc["sentence"].index("_") + 1 :].strip()


def winogrande_choice(doc):
    blank = doc["sentence"].index("_")
    return [doc["sentence"][:blank] + option for option in (doc["option1"], doc["option2"])]
"""

# Each task: the harness YAML's prompt fields (lm_eval/tasks/<task>/*.yaml at the fixtures' commit), with the data.
TASKS = {
    "hellaswag": {
        "dataset_path": "text", "file": "hellaswag/hellaswag_val_full-head200.txt", "process_docs": "hellaswag_docs",
        "output_type": "multiple_choice", "doc_to_text": "{{query}}", "doc_to_target": "{{label}}",
        "doc_to_choice": "choices", "metrics": ["acc", "acc_norm"],
    },
    "lambada": {
        "dataset_path": "json", "file": "lambada/lambada_test-head200.jsonl", "output_type": "loglikelihood",
        "doc_to_text": "{{text.split(' ')[:-1]|join(' ')}}", "doc_to_target": "{{' '+text.split(' ')[-1]}}",
        "metrics": ["perplexity", "acc"],
    },
    "piqa": {
        "dataset_path": "json", "file": "piqa/valid-head200.jsonl", "process_docs": "piqa_docs",
        "output_type": "multiple_choice", "doc_to_text": "Question: {{goal}}\nAnswer:", "doc_to_target": "label",
        "doc_to_choice": "{{[sol1, sol2]}}", "metrics": ["acc", "acc_norm"],
    },
    "winogrande": {
        "dataset_path": "json", "file": "winogrande/dev-head200.jsonl", "output_type": "multiple_choice",
        "doc_to_text": "!function utils.winogrande_text", "doc_to_target": "!function utils.winogrande_target",
        "doc_to_choice": "!function utils.winogrande_choice", "metrics": ["acc"],
    },
    "boolq": {
        "dataset_path": "json", "file": "boolq/dev-head200.jsonl", "process_docs": "boolq_docs",
        "output_type": "multiple_choice", "doc_to_text": "{{passage}}\nQuestion: {{question}}?\nAnswer:",
        "doc_to_target": "label", "doc_to_choice": ["no", "yes"], "metrics": ["acc"],
    },
    "arc_challenge": {
        "dataset_path": "json", "file": "arc_challenge/ARC-Challenge-Test-head200.jsonl", "process_docs": "arc_docs",
        "output_type": "multiple_choice", "doc_to_text": "Question: {{question_text}}\nAnswer:",
        "doc_to_target": "{{gold}}", "doc_to_choice": "{{choice_texts}}", "metrics": ["acc", "acc_norm"],
    },
    "arc_easy": {
        "dataset_path": "json", "file": "arc_easy_mosaicml/arc_easy-head200.jsonl", "output_type": "multiple_choice",
        "doc_to_text": "{{query}}\nAnswer:", "doc_to_target": "{{gold}}", "doc_to_choice": "{{choices}}",
        "metrics": ["acc", "acc_norm"],
    },
}  # fmt: skip


def _yaml_value(value) -> str:
    if isinstance(value, list):
        return json.dumps(value)
    if isinstance(value, str) and value.startswith("!function"):
        return value
    return json.dumps(value)


def write_tasks(folder: str, evals: str) -> list[str]:
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "utils.py"), "w", encoding="utf-8") as handle:
        handle.write(UTILS.format(evals=evals))
    names = []
    for name, task in TASKS.items():
        lines = [
            f"task: lmforge_{name}",
            f"dataset_path: {task['dataset_path']}",
            "dataset_kwargs:",
            "  data_files:",
            f"    validation: {json.dumps(os.path.join(evals, task['file']))}",
            "validation_split: validation",
            f"output_type: {task['output_type']}",
        ]
        if "process_docs" in task:
            lines.append(f"process_docs: !function utils.{task['process_docs']}")
        for field in ("doc_to_text", "doc_to_target", "doc_to_choice"):
            if field in task:
                lines.append(f"{field}: {_yaml_value(task[field])}")
        lines.append("metric_list:")
        for metric in task["metrics"]:
            lines.append(f"  - metric: {metric}")
        with open(os.path.join(folder, f"{name}.yaml"), "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
        names.append(f"lmforge_{name}")
    return names


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--evals", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import lm_eval
    from lm_eval.tasks import TaskManager

    names = write_tasks(os.path.join(args.work, "tasks"), os.path.abspath(args.evals))
    results = lm_eval.simple_evaluate(
        model="hf",
        model_args=f"pretrained={args.model},dtype=float32",
        tasks=names,
        task_manager=TaskManager(include_path=os.path.join(args.work, "tasks")),
        batch_size=args.batch_size,
        device="cpu",
        limit=args.limit or None,
        log_samples=True,
    )
    found = {}
    for name in names:
        items = {}
        for sample in results["samples"][name]:
            items[sample["doc_id"]] = [[float(r[0][0]), bool(r[0][1])] for r in sample["resps"]]
        found[name.removeprefix("lmforge_")] = {"metrics": results["results"][name], "items": items}
    with open(args.output, "w", encoding="utf-8") as handle:
        json.dump({"version": lm_eval.__version__, "tasks": found}, handle, indent=1)


if __name__ == "__main__":
    main()
