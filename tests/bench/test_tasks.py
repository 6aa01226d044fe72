"""The learning suite's task families (bench/tasks.py): splits that measure what they claim."""

from __future__ import annotations

from collections import Counter

from bench.tasks import task_families


def test_classification_validates_every_label_it_trains_on_as_often() -> None:
    train, valid = task_families()["classification"].splits()
    train_labels = Counter(row["answer"] for row in train)
    valid_labels = Counter(row["answer"] for row in valid)
    assert set(train_labels) == set(valid_labels) == {"positive", "negative", "neutral"}
    assert len(set(train_labels.values())) == 1 and len(set(valid_labels.values())) == 1
    # every review is used once
    assert len({row["messages"][-1]["content"] for row in train + valid}) == len(train + valid)
