"""The dashboard in a real headless Chromium against the live service: what a person sees.

Browser tests run on the embedded backend only: the API under the page is tested on both
backends by tests/api and tests/e2e, and a second browser run would double the time."""

from __future__ import annotations

import io
import json
import re
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from playwright.sync_api import expect

from tests.api.jobfiles import BASE_MODEL, cancel_unfinished, rft_rows, upload_rows
from tests.conftest import wait_for_job
from tests.dashboard.conftest import dashboard_url, sign_in
from tests.services import LiveService

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("service", ["embedded"], indirect=True)]

FINISHED = {"succeeded", "failed", "cancelled"}
# partial credit even for the tiny random model's words, so rewards differ within a step
GRADER = {
    "type": "multi",
    "name": "answer",
    "graders": {
        "contains": {"type": "string_check", "name": "contains", "operation": "ilike",
                     "input": "{{ sample.output_text }}", "reference": "{{ item.answer }}"},
        "close": {"type": "text_similarity", "name": "close", "evaluation_metric": "fuzzy_match",
                  "input": "{{ sample.output_text }}", "reference": "The answer is {{ item.answer }}"},
    },
    "calculate_output": "0.5 * contains + 0.5 * close",
}  # fmt: skip
# the same scores, plus a sub-grader that takes 0.4 s per sample and counts for nothing: each
# step then outlasts the page's 1.5 s poll however fast the machine, so the page sees the job
# running before it is done
PACED_GRADER = {
    **GRADER,
    "graders": {
        **GRADER["graders"],
        "pace": {"type": "python", "name": "pace",
                 "source": "import time\n\ndef grade(sample, item):\n    time.sleep(0.4)\n    return 0.0\n"},
    },
    "calculate_output": "0.5 * contains + 0.5 * close + 0 * pace",
}  # fmt: skip
TRAIN_POINTS = "[data-chart=reward] g.points[data-series=train] circle.point"


@pytest.fixture(autouse=True)
def _free_worker(client: openai.OpenAI) -> Iterator[None]:
    yield
    cancel_unfinished(client)


@pytest.fixture(scope="module")
def trained_job(service: LiveService, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A finished 3-step RFT job with a multi grader and a checkpoint at every step."""
    client = openai.OpenAI(base_url=service.base_url, api_key=service.api_key, max_retries=0)
    folder = tmp_path_factory.mktemp("dashboard-job")
    training = upload_rows(client, folder, "train.jsonl", rft_rows(12))
    validation = upload_rows(client, folder, "valid.jsonl", rft_rows(4))
    hyperparameters = {"n_epochs": 1, "batch_size": 4, "group_size": 2, "max_completion_tokens": 6,
                       "eval_interval": 1}  # fmt: skip
    job = client.fine_tuning.jobs.create(
        model=BASE_MODEL, training_file=training, validation_file=validation, suffix="dash",
        method={"type": "reinforcement",
                "reinforcement": {"grader": GRADER, "hyperparameters": hyperparameters}},
    )  # fmt: skip
    job = wait_for_job(client, job.id, FINISHED, timeout=240)
    assert job.status == "succeeded", job.error
    return job


def open_view(page, name: str) -> None:  # type: ignore[no-untyped-def]
    page.get_by_role("navigation", name="Main").get_by_role("link", name=name).click()


def _samples_api(service: LiveService, job_id: str) -> bool:
    response = httpx.get(
        f"{service.base_url}/fine_tuning/jobs/{job_id}/sample_steps",
        headers={"authorization": f"Bearer {service.api_key}"},
    )
    return response.status_code == 200


def test_a_wrong_key_shows_the_apis_message_and_is_not_kept(page, service: LiveService) -> None:  # type: ignore[no-untyped-def]
    page.get_by_label("API key").fill("sk-not-a-key")
    page.get_by_role("button", name="Sign in").click()
    alert = page.get_by_role("alert")
    assert alert.inner_text() == "Sign-in failed: Incorrect API key provided."
    assert page.get_by_role("navigation", name="Main").is_hidden()
    assert page.evaluate("sessionStorage.length") == 0

    # by keyboard: the key field has the focus, Enter submits
    page.get_by_label("API key").fill("")
    page.keyboard.type(service.api_key)
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Fine-tuning jobs").wait_for()
    # the key lives in this tab's sessionStorage only: no cookie, not in the address
    assert page.evaluate("sessionStorage.getItem('openrft.apiKey')") == service.api_key
    assert page.context.cookies() == []
    assert service.api_key not in page.url
    page.get_by_role("button", name="Sign out").click()
    assert page.get_by_label("API key").is_visible()
    assert page.evaluate("sessionStorage.length") == 0


def test_upload_shows_progress_the_check_and_a_preview(
    signed_in, client: openai.OpenAI, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    page = signed_in
    open_view(page, "Files")
    good = tmp_path / "capitals.jsonl"
    good.write_text("".join(json.dumps(row) + "\n" for row in rft_rows(7)))
    page.get_by_label("Choose files", exact=True).set_input_files(str(good))
    upload = page.locator("li.upload[data-name='capitals.jsonl']")
    upload.get_by_text("Valid JSONL: 7 examples.").wait_for()
    assert upload.locator("progress").evaluate("bar => bar.value") == 1
    assert upload.locator(".progress-text").inner_text() == "100%"
    uploaded_id = re.search(r"Uploaded as (file-\S+) ", upload.inner_text()).group(1)  # type: ignore[union-attr]
    assert client.files.retrieve(uploaded_id).filename == "capitals.jsonl"
    preview = upload.locator("table.preview")
    assert preview.locator("caption").inner_text() == "First 5 rows"
    assert preview.locator("tbody tr").first.inner_text().split("\t") == [
        "user: What is 0 + 1?",
        "1",
    ]

    # the stored file, read back from the API
    page.get_by_role("button", name="Preview capitals.jsonl").click()
    page.get_by_role("heading", name=f"capitals.jsonl ({uploaded_id})").wait_for()
    assert page.get_by_text("Valid JSONL: 7 examples.").count() == 2

    # dropped on the drop zone: a file whose second line is not JSON
    bad_rows = json.dumps(rft_rows(1)[0]) + "\n{not json\n"
    page.locator(".drop-zone").evaluate(
        """(zone, text) => {
            const data = new DataTransfer();
            data.items.add(new File([text], "broken.jsonl"));
            zone.dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true}));
        }""",
        bad_rows,
    )
    broken = page.locator("li.upload[data-name='broken.jsonl']")
    broken.get_by_text("Not a valid dataset: Line 2: invalid JSON").wait_for()
    # the API stores it (datasets are checked when a job starts): it is listed
    page.locator("table.files tbody tr", has_text="broken.jsonl").wait_for()


def test_a_job_started_from_the_page_draws_its_curve_live(  # type: ignore[no-untyped-def]
    signed_in, client: openai.OpenAI, tmp_path: Path, screenshot_dir: Path
) -> None:
    page = signed_in
    training = upload_rows(client, tmp_path, "train.jsonl", rft_rows(12))
    validation = upload_rows(client, tmp_path, "valid.jsonl", rft_rows(4))
    open_view(page, "New job")
    page.get_by_label("Base model").select_option(BASE_MODEL)
    page.get_by_label("Training file").select_option(training)
    page.get_by_label("Validation file").select_option(validation)
    page.get_by_label("Start from a template").select_option(label="Exact match (string_check eq)")
    assert '"operation": "eq"' in page.get_by_label("Grader JSON").input_value()
    page.get_by_label("Grader JSON").fill(json.dumps(PACED_GRADER, indent=2))
    assert page.get_by_label("n epochs").input_value() == "auto"
    page.get_by_label("n epochs").fill("2")
    page.get_by_label("batch size").fill("4")
    page.get_by_label("eval interval").fill("2")
    page.get_by_label("Extra hyperparameters (JSON)").fill(
        '{"group_size": 2, "max_completion_tokens": 8}'
    )
    page.get_by_label("Suffix").fill("live")
    page.get_by_label("Metadata").fill("team=dash")
    page.get_by_role("button", name="Create job").click()
    page.locator("h1", has_text="Job ftjob-").or_(page.get_by_role("alert")).first.wait_for()
    assert "#/jobs/ftjob-" in page.url, page.locator("main").inner_text()
    job_id = page.url.rsplit("/", 1)[1]
    assert client.fine_tuning.jobs.retrieve(job_id).user_provided_suffix == "live"

    # watch: the number of plotted training points grows while the job runs; a pause holds it
    # (so a fast machine cannot finish between two polls) and a resume lets it grow again
    def buttons() -> dict[str, bool]:
        return {name: page.get_by_role("button", name=name, exact=True).is_enabled()
                for name in ("Pause", "Resume", "Cancel")}  # fmt: skip

    def watch(until: set[str], points: int = 0) -> tuple[str, list[int]]:
        seen: list[int] = []
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            status = page.locator(".job-status .badge").inner_text()
            count = page.locator(TRAIN_POINTS).count()
            if count and (not seen or seen[-1] != count):
                seen.append(count)
            if status in until and count >= points or status in FINISHED:
                return status, seen
            time.sleep(0.2)
        pytest.fail(f"the job is still {status}: {page.locator('.event-log').inner_text()}")

    status, _ = watch({"running"}, points=1)
    assert status == "running", page.locator("main").inner_text()
    assert buttons() == {"Pause": True, "Resume": False, "Cancel": True}
    page.get_by_role("button", name="Pause", exact=True).click()
    page.locator(".event-log").get_by_text("Pause requested").wait_for()
    status, before_pause = watch({"paused", *FINISHED})
    assert status == "paused", page.locator("main").inner_text()
    assert buttons() == {"Pause": False, "Resume": True, "Cancel": True}
    paused_count = page.locator(TRAIN_POINTS).count()
    assert 1 <= paused_count < 6
    page.get_by_role("button", name="Resume", exact=True).click()
    status, after_resume = watch(FINISHED)
    assert status == "succeeded", page.locator("main").inner_text()
    seen = before_pause + after_resume
    assert seen == sorted(seen) and seen[-1] == 6, f"plotted point counts seen: {seen}"
    assert buttons() == {"Pause": False, "Resume": False, "Cancel": False}

    assert page.locator("[data-chart=reward] polygon.band").count() == 2  # training, validation
    # validation before training and every 2 steps: 4 validation points, and the checkpoints
    # marked on the curve
    valid_points = page.locator("[data-chart=reward] g.points[data-series=valid] circle.point")
    assert [title.split(":")[0] for title in valid_points.locator("title").all_text_contents()] == [
        f"validation reward (mean) at step {step}" for step in (0, 2, 4, 6)
    ]
    checkpoint_steps = sorted(
        c.step_number for c in client.fine_tuning.jobs.checkpoints.list(job_id)
    )
    assert checkpoint_steps[-3:] == [2, 4, 6]
    markers = page.locator("[data-chart=reward] g.marker").evaluate_all(
        "markers => markers.map(m => Number(m.dataset.step))"
    )
    assert sorted(markers) == checkpoint_steps
    assert page.locator(".step-progress").inner_text().strip().endswith("6 / 6")
    # another logged metric, picked from the selector
    page.get_by_label("Other metric").select_option("frac_reward_zero_std")
    assert page.locator("[data-chart=metric] figcaption").inner_text() == "frac_reward_zero_std"
    assert page.locator("[data-chart=metric] circle.point").count() == 6
    assert page.locator("table.kv", has_text="group_size").locator(
        "tr", has_text="max_completion_tokens"
    ).inner_text().split() == ["max_completion_tokens", "8"]
    assert page.locator(".event-log").get_by_text("The job has successfully completed").is_visible()
    page.screenshot(path=str(screenshot_dir / "job-page.png"), full_page=True)

    # usable on a phone-sized window: nothing wider than the screen
    page.set_viewport_size({"width": 390, "height": 844})
    # charts are drawn again for the narrower window
    expect(page.locator("[data-chart=reward] svg")).to_have_attribute(
        "viewBox", re.compile(r"^0 0 3\d\d ")
    )
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(screenshot_dir / "job-page-phone.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})

    # download the newest checkpoint's adapter: a .tar.gz with the adapter in it
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download adapter of step 6").click()
    archive = Path(download_info.value.path()).read_bytes()
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        assert any(name.endswith("adapter_config.json") for name in tar.getnames())
    page.get_by_text(re.compile(r"Downloaded .+\.tar\.gz")).wait_for()

    # the jobs list: progress, best validation reward, filters by status and metadata
    best = max(
        c.metrics.valid_reward_mean for c in client.fine_tuning.jobs.checkpoints.list(job_id)
    )
    open_view(page, "Jobs")
    row = page.locator(f"tr[data-job-id='{job_id}']")
    assert row.locator("td").nth(1).inner_text() == "succeeded"
    assert row.locator(".progress-text").inner_text() == "6 / 6"
    assert float(row.locator("td").nth(6).inner_text()) == pytest.approx(best, abs=1e-3)
    page.get_by_label("Status").select_option("failed")
    assert row.is_hidden()
    page.get_by_label("Status").select_option("succeeded")
    page.get_by_label("Metadata").fill("team=other")
    page.get_by_role("button", name="Filter").click()
    row.wait_for(state="detached")
    page.get_by_label("Metadata").fill("team=dash")
    page.get_by_role("button", name="Filter").click()
    row.wait_for()
    assert page.locator("table.jobs tbody tr").count() == 1


def test_samples_of_a_step_show_their_grades(  # type: ignore[no-untyped-def]
    signed_in, service: LiveService, trained_job, screenshot_dir: Path
) -> None:
    if not _samples_api(service, trained_job.id):
        pytest.skip("this branch's API has no samples endpoints (GET .../sample_steps)")
    page = signed_in
    page.goto(f"{dashboard_url(service)}#/jobs/{trained_job.id}")
    page.locator("#samples-h + div").get_by_role("link", name=re.compile(r"^step 2")).first.click()
    page.get_by_role("heading", name="Samples of step 2").wait_for()
    rows = page.locator("table.samples tbody tr")
    assert rows.count() > 0
    headers = page.locator("table.samples thead th").all_inner_texts()
    assert headers[:4] == ["Prompt #", "Prompt", "Completion", "Reward"]
    assert {"contains", "close"} <= set(headers)
    first = rows.first
    assert "user: What is" in first.locator("td").nth(1).inner_text()
    assert re.fullmatch(r"answer\s+\"\d+\"", first.locator("dl.reference").inner_text().strip())
    # each row's reward is the multi grader's formula over the sub-scores shown beside it
    for row in rows.all():
        reward = float(row.locator("td.reward").inner_text())
        contains, close = (float(row.locator(f"td[data-grader={name}]").inner_text())
                           for name in ("contains", "close"))  # fmt: skip
        assert reward == pytest.approx(0.5 * contains + 0.5 * close, abs=2e-3)
    page.get_by_role("button", name="Sort by Reward").click()
    rewards = [float(text) for text in page.locator("table.samples td.reward").all_inner_texts()]
    assert len(set(rewards)) > 1, "the grader gives partial credit, so rewards differ"
    assert rewards == sorted(rewards, reverse=True)
    page.get_by_role("button", name="Sort by Reward").click()
    rewards = [float(text) for text in page.locator("table.samples td.reward").all_inner_texts()]
    assert rewards == sorted(rewards)
    page.screenshot(path=str(screenshot_dir / "samples.png"), full_page=True)


def test_chat_side_by_side_with_base_and_fine_tuned(
    signed_in, service: LiveService, trained_job
) -> None:  # type: ignore[no-untyped-def]
    page = signed_in
    open_view(page, "Playground")
    page.get_by_label("Model 1", exact=True).fill(BASE_MODEL)
    page.get_by_label("Model 2", exact=True).fill(trained_job.fine_tuned_model)
    page.get_by_label("Max tokens").fill("6")
    page.get_by_label("Seed").fill("3")
    page.get_by_label("Prompt").fill("What is 2 + 1?")
    page.get_by_role("button", name="Send").click()
    replies = page.locator(".transcript .message.assistant")
    replies.nth(1).wait_for()
    first, second = (
        page.locator(f".transcript[data-pane='{n}'] .message.assistant small") for n in (1, 2)
    )
    assert first.inner_text().startswith(f"{BASE_MODEL} · ")
    assert second.inner_text().startswith(f"{trained_job.fine_tuned_model} · ")
    assert page.locator(".transcript .message.user").count() == 2
    # one model alone
    page.get_by_label("Compare two models side by side").uncheck()
    assert page.get_by_label("Model 2", exact=True).is_hidden()


def test_a_grader_runs_on_a_pasted_sample(signed_in, client: openai.OpenAI) -> None:  # type: ignore[no-untyped-def]
    page = signed_in
    open_view(page, "Playground")
    page.get_by_label("Grader JSON").fill(json.dumps(GRADER))
    page.get_by_label("Sample (model output)").fill("Paris, France")
    page.get_by_label("Item (dataset row, JSON)").fill('{"answer": "paris"}')
    page.get_by_role("button", name="Run grader").click()
    score = page.locator(".grader-result .reward")
    score.wait_for()
    expected = client.fine_tuning.alpha.graders.run(
        grader=GRADER, model_sample="Paris, France", item={"answer": "paris"}
    )
    assert float(score.inner_text()) == pytest.approx(expected.reward, abs=1e-4)
    sub_scores = {
        name: float(value)
        for name, value in (
            row.split("\t") for row in page.locator("table.sub-rewards tbody tr").all_inner_texts()
        )
    }
    assert sub_scores == pytest.approx(expected.sub_rewards, abs=1e-4)
    assert sub_scores["contains"] == 1.0 and 0 < sub_scores["close"] < 1

    page.get_by_label("Grader JSON").fill('{"type": "string_check"}')
    page.get_by_role("button", name="Run grader").click()
    assert page.locator(".grader-result [role=alert]").inner_text().startswith("Invalid grader")


def test_another_projects_key_sees_none_of_these_jobs(  # type: ignore[no-untyped-def]
    page, service: LiveService, trained_job
) -> None:
    sign_in(page, service.key_for("other-project"))
    page.get_by_text("No jobs yet.").wait_for()
    assert page.locator("table.jobs").count() == 0
    page.goto(f"{dashboard_url(service)}#/jobs/{trained_job.id}")
    alert = page.get_by_role("alert")
    assert alert.inner_text() == f"No such job: '{trained_job.id}'"


def test_a_failed_job_says_why_in_plain_words(  # type: ignore[no-untyped-def]
    signed_in, service: LiveService, client: openai.OpenAI, tmp_path: Path
) -> None:
    rows = [*rft_rows(3), {"messages": "not a list", "answer": "1"}]
    training = upload_rows(client, tmp_path, "broken.jsonl", rows)
    validation = upload_rows(client, tmp_path, "valid.jsonl", rft_rows(2))
    job = client.fine_tuning.jobs.create(
        model=BASE_MODEL, training_file=training, validation_file=validation, method={"type": "reinforcement",
        "reinforcement": {"grader": GRADER}},
    )  # fmt: skip
    page = signed_in
    page.goto(f"{dashboard_url(service)}#/jobs/{job.id}")
    alert = page.get_by_role("alert").filter(has_text="training file")
    alert.wait_for()
    assert alert.inner_text() == (
        'The training file is not usable: Line 4: "messages" must be a non-empty list of messages.'
    )
    assert page.locator(".job-status .badge").inner_text() == "failed"
    assert page.get_by_role("button", name="Cancel", exact=True).is_disabled()
