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

# What a user would write for this behaviour: an instruction, and one worked example as an
# earlier turn (Ecuador is not in the data). 768 samples of the base model at temperature 1:
# the bare correct name 4.8%, a sentence holding the name 6.5%, a wrong answer (often a single
# word: the country itself) 88%; mean reward 0.07. The short form turns up often enough for RL
# to reinforce it, and the knowledge the model shows in sentences has to move into it. With
# the example inside the developer message ("Q: ... A: Quito") the bare name drops to 0.1%
# ("A: Quito", worth 0.67, 2.3%; a sentence 20%) and RFT settled on the sentence (0.3) in
# most seeds; with no example at all the bare name turns up about once in 700 samples.
INSTRUCTIONS = "You answer with a single word or name. Never write a full sentence."
EXAMPLE = [
    {"role": "user", "content": "What is the capital of Ecuador?"},
    {"role": "assistant", "content": "Quito"},
]

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
            *EXAMPLE,
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
