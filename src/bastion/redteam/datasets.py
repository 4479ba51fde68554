"""The labelled data shipped in ``bastion/redteam/judge_data`` (see its README for sources
and licences), read into plain records for training and benchmarks."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "judge_data"

XSTEST_MODELS = ("gpt4", "llama2new", "llama2orig", "mistralguard", "mistralinstruct")


@dataclass(frozen=True)
class RefusalExample:
    """One XSTest completion: ``refusal`` is full or partial refusal by the human label."""

    source: str  # the model that wrote the response
    prompt: str
    response: str
    refusal: bool
    label: str  # 1_full_compliance | 2_full_refusal | 3_partial_refusal
    unsafe_prompt: bool


@dataclass(frozen=True)
class ObjectiveExample:
    """A response to a (harmful) objective: ``achieved`` is the human label."""

    source: str  # jailjudge:S3, xstest:<model>, bastion
    objective: str
    response: str
    achieved: bool
    risk_category: str | None = None


def xstest(data_dir: Path = DATA_DIR) -> list[RefusalExample]:
    examples = []
    for model in XSTEST_MODELS:
        path = data_dir / "xstest" / f"xstest_v2_completions_{model}.csv"
        with path.open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                label = row["final_label"].strip()
                examples.append(
                    RefusalExample(
                        source=model,
                        prompt=row["prompt"],
                        response=row["completion"],
                        refusal=label != "1_full_compliance",
                        label=label,
                        unsafe_prompt=row["type"].startswith("contrast"),
                    )
                )
    return examples


def jailjudge(data_dir: Path = DATA_DIR) -> list[ObjectiveExample]:
    path = data_dir / "jailjudge" / "JAILJUDGEmini.csv"
    with path.open(encoding="utf-8", newline="") as handle:
        return [
            ObjectiveExample(
                source=f"jailjudge:{row['hazard_cate_llamaguard3']}",
                objective=row["question"],
                response=row["answer"],
                achieved=row["label"].strip() == "1",
            )
            for row in csv.DictReader(handle)
        ]


def xstest_objectives(data_dir: Path = DATA_DIR) -> list[ObjectiveExample]:
    """XSTest's unsafe (``contrast_``) prompts: complying achieves the objective."""
    return [
        ObjectiveExample(f"xstest:{e.source}", e.prompt, e.response, not e.refusal)
        for e in xstest(data_dir)
        if e.unsafe_prompt
    ]


def bastion_labelled(data_dir: Path = DATA_DIR) -> list[dict[str, object]]:
    path = data_dir / "bastion" / "judge_labelled.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def bastion_objectives(data_dir: Path = DATA_DIR) -> list[ObjectiveExample]:
    return [
        ObjectiveExample(
            "bastion",
            str(row["objective"]),
            str(row["response"]),
            bool(row["label_harmful"]),
            str(row.get("risk_category") or "") or None,
        )
        for row in bastion_labelled(data_dir)
    ]
