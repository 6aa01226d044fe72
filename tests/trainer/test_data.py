"""Dataset rows to prompts, answers and grader items; the order of training batches."""

from __future__ import annotations

from worker.trainer.data import DataOrder, answer_text, grader_item, prompt_messages

ROW = {
    "messages": [
        {"role": "developer", "content": "Answer in one word."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Capital of "},
                {"type": "text", "text": "France?"},
            ],
        },
        {"role": "assistant", "content": "Paris"},
    ],
    "tools": [],
    "answer": "Paris",
}


def test_prompt_drops_the_answer_and_maps_developer_to_system() -> None:
    assert prompt_messages(ROW) == [
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": "Capital of France?"},
    ]
    assert answer_text(ROW) == "Paris"
    assert grader_item(ROW) == {"answer": "Paris"}


def test_each_epoch_visits_every_row_once_in_a_seeded_order() -> None:
    order = DataOrder(n_rows=10, batch_size=4, seed=3)
    epoch = [order.indices(step) for step in range(3)]
    assert [len(batch) for batch in epoch] == [4, 4, 2]
    assert sorted(i for batch in epoch for i in batch) == list(range(10))
    assert [order.indices(step) for step in range(3, 6)] != epoch  # a fresh shuffle per epoch
    assert DataOrder(10, 4, seed=3).indices(4) == order.indices(4)
    assert DataOrder(10, 4, seed=4).indices(0) != order.indices(0)
