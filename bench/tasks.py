"""Built-in tasks for the benchmarks: prompts with reference answers, and graders for them."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
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


# ---------------------------------------------------------------------------------------------
# The learning suite: task families as a new user would write them, the instruction in the
# user turn and no worked example, each graded as that user would grade it. Rows are made
# deterministically; `split` puts every third row in validation.


def multi_grader(name: str, graders: dict[str, Any], formula: str) -> dict[str, Any]:
    return {"type": "multi", "name": name, "graders": graders, "calculate_output": formula}


def _string_check(name: str, reference: str, operation: str) -> dict[str, Any]:
    return {
        "type": "string_check",
        "name": name,
        "input": "{{ sample.output_text }}",
        "reference": reference,
        "operation": operation,
    }


# examples/capitals/grader.json: half for containing the name, half for being close to it
CONTAINS_FUZZY_GRADER = multi_grader(
    "capital",
    {
        "contains": _string_check("contains", "{{ item.answer }}", "ilike"),
        "similar": {
            "type": "text_similarity",
            "name": "similar",
            "input": "{{ sample.output_text }}",
            "reference": "{{ item.answer }}",
            "evaluation_metric": "fuzzy_match",
        },
    },
    "0.5 * contains + 0.5 * similar",
)
# half for containing the answer anywhere, half for answering with it alone
CONTAINS_EXACT_GRADER = multi_grader(
    "answer",
    {
        "contains": _string_check("contains", "{{ item.answer }}", "ilike"),
        "exact": _string_check("exact", "{{ item.answer }}", "eq"),
    },
    "0.5 * contains + 0.5 * exact",
)
# reads the first JSON object of the answer: a little for any object, the rest per field
JSON_FIELDS_GRADER: dict[str, Any] = {
    "type": "python",
    "name": "json_fields",
    "source": """
import json
import re


def grade(sample, item):
    match = re.search(r"\\{.*?\\}", sample["output_text"], re.S)
    if match is None:
        return 0.0
    try:
        data = json.loads(match.group(0))
    except ValueError:
        return 0.1
    if not isinstance(data, dict):
        return 0.1
    score = 0.2
    for key in ("name", "city"):
        if str(data.get(key, "")).strip().lower() == item[key].lower():
            score += 0.4
    return score
""",
}

SHORT_ANSWER_SUFFIX = " Answer with just the city name."


def short_answer_rows() -> list[dict[str, Any]]:
    """Capitals with the instruction in the user turn: the model knows many, and says them in
    a sentence ("The capital of Kenya is Nairobi."), which the grader scores about 0.6."""
    return [
        {
            "messages": [
                {
                    "role": "user",
                    "content": f"What is the capital of {country}?{SHORT_ANSWER_SUFFIX}",
                }
            ],
            "answer": city,
        }
        for country, city in CAPITALS
    ]


def arithmetic_rows(count: int = 42) -> list[dict[str, Any]]:
    """Sums of two two-digit numbers; the exact number is the answer."""
    generator = random.Random(7)
    rows = []
    for _ in range(count):
        a, b = generator.randint(11, 49), generator.randint(11, 49)
        question = f"What is {a} + {b}? Reply with the number only."
        rows.append({"messages": [{"role": "user", "content": question}], "answer": str(a + b)})
    return rows


PEOPLE = [
    "Maria", "Ahmed", "Chen", "Olga", "Pedro", "Aisha", "Lars", "Yuki", "Fatima", "Tom",
    "Ingrid", "Kofi", "Elena", "Ravi", "Sofia", "Jonas", "Amara", "Luca", "Hana", "Diego",
    "Nina", "Omar", "Greta", "Mateo", "Leila", "Sven", "Zara", "Ivan", "Clara", "Kenji",
    "Rosa", "Felix", "Mina", "Pablo", "Anya", "Hugo",
]  # fmt: skip
SENTENCES = [
    "{name} moved to {city} last spring.",
    "Last year {name} opened a small bakery in {city}.",
    "{name} has lived in {city} for ten years.",
    "After university, {name} found a job in {city}.",
]


def extraction_rows() -> list[dict[str, Any]]:
    """A person and a city in one sentence, to be given back as a JSON object."""
    cities = [city for _, city in CAPITALS]
    rows = []
    for index, name in enumerate(PEOPLE):
        city = cities[(index * 7) % len(cities)]
        sentence = SENTENCES[index % len(SENTENCES)].format(name=name, city=city)
        question = (
            "Extract the person's name and the city from the sentence below. Reply with only a "
            'JSON object with the keys "name" and "city".\n\n' + sentence
        )
        rows.append(
            {"messages": [{"role": "user", "content": question}], "name": name, "city": city}
        )
    return rows


REVIEWS = [
    ("The battery lasts all day and the screen is gorgeous.", "positive"),
    ("It broke after two days and support never answered.", "negative"),
    ("The package arrived on Tuesday.", "neutral"),
    ("Absolutely love it, best purchase this year.", "positive"),
    ("Terrible sound, I returned it at once.", "negative"),
    ("The box contains the device and a cable.", "neutral"),
    ("Fast delivery and it works perfectly.", "positive"),
    ("The strap snapped the first time I used it.", "negative"),
    ("It is available in black and white.", "neutral"),
    ("My kids enjoy it every evening, great value.", "positive"),
    ("Waste of money, the app keeps crashing.", "negative"),
    ("The manual is written in English and French.", "neutral"),
    ("Comfortable, light and very well made.", "positive"),
    ("The colour faded after one wash.", "negative"),
    ("I bought it in March.", "neutral"),
    ("Setup took a minute and it has been flawless.", "positive"),
    ("Too loud, too slow, and it smells of plastic.", "negative"),
    ("It weighs about two kilograms.", "neutral"),
    ("The staff were friendly and the food was delicious.", "positive"),
    ("Cold food, rude waiter, never again.", "negative"),
    ("The restaurant opens at noon.", "neutral"),
    ("A wonderful book, I could not put it down.", "positive"),
    ("Boring plot and flat characters.", "negative"),
    ("The book has three hundred pages.", "neutral"),
    ("Great camera for the price, sharp photos.", "positive"),
    ("The lens was scratched out of the box.", "negative"),
    ("It uses a standard USB charger.", "neutral"),
    ("Excellent service, they fixed it the same day.", "positive"),
    ("Overpriced and it stopped working in a week.", "negative"),
    ("The shop is next to the train station.", "neutral"),
    ("Such a relaxing hotel with a beautiful view.", "positive"),
    ("The room was dirty and the shower was broken.", "negative"),
    ("Check-in is at three in the afternoon.", "neutral"),
    ("These shoes are the most comfortable I own.", "positive"),
    ("They gave me blisters within an hour.", "negative"),
    ("The shoes come in sizes 36 to 46.", "neutral"),
]


def classification_rows() -> list[dict[str, Any]]:
    """Sentiment of a short review, one of three labels. REVIEWS cycle through the labels, so
    each triple is rotated by its place: every third row (the validation split) then holds
    each label as often as the training rows do."""
    triples = len(REVIEWS) // 3
    ordered = [REVIEWS[3 * k + (j + k) % 3] for k in range(triples) for j in range(3)]
    return [
        {
            "messages": [
                {
                    "role": "user",
                    "content": "Classify the sentiment of this review as positive, negative or "
                    f"neutral. Reply with the label only.\n\nReview: {review}",
                }
            ],
            "answer": label,
        }
        for review, label in ordered
    ]


def uppercase_rows() -> list[dict[str, Any]]:
    """Capitals in capital letters: the model almost never writes a bare upper-case name, so
    the top grade needs a behaviour it rarely shows."""
    return [
        {
            "messages": [
                {
                    "role": "user",
                    "content": f"What is the capital of {country}? Write only the city's name, "
                    "in capital letters.",
                }
            ],
            "answer": city.upper(),
            "city": city,
        }
        for country, city in CAPITALS
    ]


UPPERCASE_GRADER = multi_grader(
    "upper_capital",
    {
        "contains": _string_check("contains", "{{ item.city }}", "ilike"),
        "exact": _string_check("exact", "{{ item.answer }}", "eq"),
    },
    "0.5 * contains + 0.5 * exact",
)


@dataclass(frozen=True)
class TaskFamily:
    name: str
    rows: list[dict[str, Any]]
    grader: dict[str, Any]
    n_valid: int
    # a validation split of its own (examples/); None: every third row of `rows`
    valid_rows: list[dict[str, Any]] | None = None

    def splits(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        if self.valid_rows is not None:
            return self.rows, self.valid_rows
        return split(self.rows, self.n_valid)


EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "capitals"


def examples_family() -> TaskFamily:
    """examples/capitals as a user uploads it: its training and validation files, its grader."""

    def rows(name: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in (EXAMPLES / name).read_text().splitlines() if line]

    grader = json.loads((EXAMPLES / "grader.json").read_text())
    valid = rows("valid.jsonl")
    return TaskFamily("examples", rows("train.jsonl"), grader, len(valid), valid)


SUITE = ("short_answer", "arithmetic", "extraction", "classification", "uppercase")


def task_families() -> dict[str, TaskFamily]:
    """The learning suite's families (SUITE, run by default), the earlier worked-example task
    and examples/capitals, by name."""
    families = [
        TaskFamily("short_answer", short_answer_rows(), CONTAINS_FUZZY_GRADER, 16),
        TaskFamily("arithmetic", arithmetic_rows(), CONTAINS_EXACT_GRADER, 14),
        TaskFamily("extraction", extraction_rows(), JSON_FIELDS_GRADER, 12),
        TaskFamily("classification", classification_rows(), CONTAINS_EXACT_GRADER, 12),
        TaskFamily("uppercase", uppercase_rows(), UPPERCASE_GRADER, 16),
        # the earlier benchmark: a developer message and one worked example turn, ROUGE-1
        TaskFamily("worked_example", capital_rows(), ROUGE_GRADER, 16),
        examples_family(),
    ]
    return {family.name: family for family in families}
