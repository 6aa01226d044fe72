"""Built-in tasks for the benchmarks: prompts with reference answers, and graders for them."""

from __future__ import annotations

from typing import Any

# Capitals a small model has seen many times. It knows most of them but answers in a
# sentence ("The capital of France is Paris."); the task asks for the name alone.
CAPITALS = [
    ("France", "Paris"),
    ("Germany", "Berlin"),
    ("Italy", "Rome"),
    ("Spain", "Madrid"),
    ("Japan", "Tokyo"),
    ("China", "Beijing"),
    ("Russia", "Moscow"),
    ("the United Kingdom", "London"),
    ("Egypt", "Cairo"),
    ("Greece", "Athens"),
    ("Portugal", "Lisbon"),
    ("Canada", "Ottawa"),
    ("Australia", "Canberra"),
    ("India", "New Delhi"),
    ("Ireland", "Dublin"),
    ("Austria", "Vienna"),
    ("Norway", "Oslo"),
    ("Sweden", "Stockholm"),
    ("Finland", "Helsinki"),
    ("Denmark", "Copenhagen"),
    ("Poland", "Warsaw"),
    ("Hungary", "Budapest"),
    ("the Czech Republic", "Prague"),
    ("Belgium", "Brussels"),
    ("the Netherlands", "Amsterdam"),
    ("Turkey", "Ankara"),
    ("Thailand", "Bangkok"),
    ("South Korea", "Seoul"),
    ("Argentina", "Buenos Aires"),
    ("Mexico", "Mexico City"),
    ("Peru", "Lima"),
    ("Kenya", "Nairobi"),
    ("Cuba", "Havana"),
    ("Iran", "Tehran"),
    ("Iraq", "Baghdad"),
    ("Chile", "Santiago"),
    ("Vietnam", "Hanoi"),
    ("the Philippines", "Manila"),
    ("Indonesia", "Jakarta"),
    ("Saudi Arabia", "Riyadh"),
    ("Ukraine", "Kyiv"),
    ("Romania", "Bucharest"),
    ("Bulgaria", "Sofia"),
    ("Serbia", "Belgrade"),
    ("Croatia", "Zagreb"),
    ("Scotland", "Edinburgh"),
    ("Wales", "Cardiff"),
    ("Nigeria", "Abuja"),
]

# The developer message a user would write for this behaviour. The base model mostly ignores
# it, but now and then answers "A: Quito"-style (0.67) or with the bare name (1), which gives
# RL something to reinforce; without it the bare name turns up about once in 700 samples and
# RFT settles on the sentence.
INSTRUCTIONS = (
    "You answer with a single word or name. Never write a full sentence. "
    "Example: Q: What is the capital of Ecuador? A: Quito"
)

# Overlap with the reference, as a user would grade "answer with the name only": the bare
# name scores 1, a sentence that contains it about 0.3, a wrong answer 0.
ROUGE_GRADER: dict[str, Any] = {
    "type": "text_similarity",
    "name": "answer_overlap",
    "input": "{{sample.output_text}}",
    "reference": "{{item.answer}}",
    "evaluation_metric": "rouge_1",
}
EXACT_GRADER: dict[str, Any] = {
    "type": "string_check",
    "name": "exact_answer",
    "input": "{{sample.output_text}}",
    "reference": "{{item.answer}}",
    "operation": "eq",
}


def capital_rows(with_answer: bool = False) -> list[dict[str, Any]]:
    """One row per country: the instructions, the question, the reference `answer`, and for
    SFT the answer as the assistant's message."""
    rows = []
    for country, city in CAPITALS:
        messages = [
            {"role": "developer", "content": INSTRUCTIONS},
            {"role": "user", "content": f"What is the capital of {country}?"},
        ]
        if with_answer:
            messages.append({"role": "assistant", "content": city})
        rows.append({"messages": messages, "answer": city})
    return rows


def split(
    rows: list[dict[str, Any]], n_valid: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every third row (up to `n_valid`) for validation, the rest for training."""
    valid_index = set(range(0, len(rows), 3)[:n_valid])
    train = [row for i, row in enumerate(rows) if i not in valid_index]
    valid = [row for i, row in enumerate(rows) if i in valid_index]
    return train, valid
