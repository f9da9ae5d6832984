"""Vision input end to end against the emulator: the chat operator, @task.minimax and the batch operator."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from airflow_provider_minimax.decorators.minimax import MiniMaxDecoratedOperator
from airflow_provider_minimax.exceptions import MiniMaxValidationError
from airflow_provider_minimax.images import MAX_IMAGE_BYTES
from airflow_provider_minimax.operators.batch import MiniMaxBatchOperator
from airflow_provider_minimax.operators.chat import MiniMaxChatOperator
from airflow_provider_minimax.testing.emulator import EMULATOR_API_KEY, EmulatorHandle
from airflow_provider_minimax.testing.images import GIF_HEAD, JPEG_HEAD, WEBP_HEAD, png

CONN = {"task": "minimax_default", "chat": "minimax_chat"}


class RecordingTI:
    """Keeps what the operator pushes to XCom."""

    def __init__(self) -> None:
        self.dag_id, self.task_id, self.run_id, self.map_index, self.try_number = "dag", "ask", "run", -1, 1
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def ask(api: str = "chat", **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    kwargs.setdefault("prompt", "Transcribe this page")
    ti = RecordingTI()
    answer = MiniMaxChatOperator(task_id="ask", conn_id=CONN[api], **kwargs).execute({"ti": ti})
    return answer, ti.xcom


def chat_bodies(emulator: EmulatorHandle) -> list[dict[str, Any]]:
    return [entry["body"] for entry in emulator.state.log if entry["route"] == "chat"]


def image_urls(body: dict[str, Any]) -> list[str]:
    parts = body["messages"][-1]["content"]
    return [part["image_url"]["url"] for part in parts if part["type"] == "image_url"]


@pytest.fixture
def page(tmp_path: Path) -> Path:
    path = tmp_path / "page.png"
    path.write_bytes(png(shade=10))
    return path


def test_local_file_goes_inline_as_a_png_data_url(minimax_connection: EmulatorHandle, page: Path) -> None:
    answer, _ = ask(images=[str(page)])

    [url] = image_urls(chat_bodies(minimax_connection)[0])
    assert url == "data:image/png;base64," + base64.b64encode(page.read_bytes()).decode()
    assert f"I see a PNG image of {page.stat().st_size} bytes" in answer


def test_object_storage_uri_bytes_and_url_in_one_request(
    minimax_connection: EmulatorHandle, page: Path
) -> None:
    ask(images=[f"file://{page}", png(shade=99), "https://example.com/photo.jpg"])

    urls = image_urls(chat_bodies(minimax_connection)[0])
    assert urls[0].startswith("data:image/png;base64,") and urls[1].startswith("data:image/png;base64,")
    assert urls[0] != urls[1]
    assert urls[2] == "https://example.com/photo.jpg"


def test_two_images_get_two_answers_and_one_image_the_same_answer(minimax_connection: EmulatorHandle) -> None:
    first, _ = ask(images=png(shade=1))
    again, _ = ask(images=png(shade=1))
    other, _ = ask(images=png(shade=2))

    assert first == again
    assert first != other


def test_images_are_templated(minimax_connection: EmulatorHandle, page: Path) -> None:
    operator = MiniMaxChatOperator(
        task_id="ask", conn_id="minimax_chat", prompt="Read it", images=["{{ params.scan }}"]
    )
    operator.render_template_fields({"params": {"scan": str(page)}})  # type: ignore[arg-type]

    assert operator.images == [str(page)]


@pytest.mark.parametrize(
    ("images", "message"),
    [
        ("/no/such/scan.png", "images[0]: no image file at '/no/such/scan.png'"),
        (b"%PDF-1.7 not an image", "not an accepted image type (accepted: PNG, JPEG, WebP, GIF)"),
        ([png(), b"BM bitmap"], "images[1]"),
        (42, "or a list of them, got int"),
        ([42], "images[0]: an image is a path, an ObjectStoragePath, an http(s) URL or bytes, got int"),
        (b"\x89PNG\r\n\x1a\n" + bytes(MAX_IMAGE_BYTES), f"over the {MAX_IMAGE_BYTES:,}-byte limit"),
    ],
)
def test_bad_images_fail_before_any_request(
    minimax_connection: EmulatorHandle, images: Any, message: str
) -> None:
    with pytest.raises(MiniMaxValidationError, match="images") as caught:
        ask(images=images)

    assert message in str(caught.value)
    assert chat_bodies(minimax_connection) == []


def test_images_on_a_task_api_connection_say_to_use_a_chat_connection(
    minimax_connection: EmulatorHandle,
) -> None:
    with pytest.raises(MiniMaxValidationError, match="needs a chat-API connection"):
        ask("task", images=png())

    assert list(minimax_connection.state.log) == []


@pytest.mark.parametrize("head", [JPEG_HEAD, GIF_HEAD, WEBP_HEAD], ids=["jpeg", "gif", "webp"])
def test_each_accepted_type_is_sent_with_its_own_mime_type(
    minimax_connection: EmulatorHandle, head: bytes
) -> None:
    mime = {JPEG_HEAD: "image/jpeg", GIF_HEAD: "image/gif", WEBP_HEAD: "image/webp"}[head]
    ask(images=head)

    [url] = image_urls(chat_bodies(minimax_connection)[0])
    assert url.startswith(f"data:{mime};base64,")


# --- the emulator's own checks ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("data:image/png;base64,!!!", "not valid base64"),
        ("data:image/png;base64," + base64.b64encode(GIF_HEAD).decode(), "its bytes are not a image/png"),
        ("data:image/bmp;base64,Qk0=", "must be an http(s) URL or data:image/"),
        ("ftp://example.com/a.png", "must be an http(s) URL or data:image/"),
    ],
)
def test_emulator_refuses_bad_image_urls(minimax_emulator: EmulatorHandle, url: str, problem: str) -> None:
    parts = [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": url}}]
    response = httpx.post(
        minimax_emulator.chat_base_url + "/chat/completions",
        headers={"Authorization": f"Bearer {EMULATOR_API_KEY}"},
        json={"model": "minimax-m2.7", "messages": [{"role": "user", "content": parts}]},
    )

    assert response.status_code == 400
    assert problem in response.json()["error"]["message"]
    assert response.json()["error"]["param"] == "messages[0].content[1].image_url.url"


# --- batch: one image per row -----------------------------------------------------------------


def run_batch(conn_id: str, rows: list[dict[str, Any]], **kwargs: Any) -> Any:
    operator = MiniMaxBatchOperator(
        task_id="batch",
        conn_id=conn_id,
        rows=rows,
        prompt_template="Describe product {{ sku }}",
        image_field="photo",
        **kwargs,
    )
    return operator.execute({"ti": RecordingTI()})  # type: ignore[arg-type]


def test_batch_sends_each_rows_image_with_its_prompt(
    minimax_connection: EmulatorHandle, tmp_path: Path
) -> None:
    rows = []
    for shade in range(3):
        path = tmp_path / f"p{shade}.png"
        path.write_bytes(png(shade=shade))
        rows.append({"sku": f"A{shade}", "photo": str(path)})
    rows.append({"sku": "URL", "photo": "https://example.com/u.jpg"})

    results = run_batch("minimax_chat", rows, max_concurrency=2)

    assert [r["status"] for r in results] == ["success"] * 4
    sent = {json.dumps(image_urls(body)) for body in chat_bodies(minimax_connection)}
    assert len(sent) == 4
    assert len({r["text"] for r in results}) == 4


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"sku": "X"}, "rows[1].photo: the row has no image"),
        ({"sku": "X", "photo": "/missing.png"}, "rows[1].photo: no image file at '/missing.png'"),
    ],
)
def test_batch_checks_every_rows_image_before_any_request(
    minimax_connection: EmulatorHandle, row: dict[str, Any], message: str
) -> None:
    rows = [{"sku": "ok", "photo": "https://example.com/a.png"}, row]
    with pytest.raises(MiniMaxValidationError) as caught:
        run_batch("minimax_chat", rows)

    assert message in str(caught.value)
    assert chat_bodies(minimax_connection) == []


def test_batch_image_field_on_the_task_api_says_to_use_a_chat_connection(
    minimax_connection: EmulatorHandle,
) -> None:
    with pytest.raises(MiniMaxValidationError, match="image_field needs a chat-API connection"):
        run_batch("minimax_default", [{"sku": "a", "photo": "https://example.com/a.png"}])

    assert list(minimax_connection.state.log) == []


def test_the_decorator_takes_images(minimax_connection: EmulatorHandle, page: Path) -> None:
    op = MiniMaxDecoratedOperator(
        task_id="ask",
        conn_id="minimax_chat",
        images=str(page),
        python_callable=lambda: "What is on this page?",
        op_args=[],
        op_kwargs={},
    )

    answer = op.execute({"ti": RecordingTI()})  # type: ignore[arg-type]

    assert "I see a PNG image" in answer
    assert len(image_urls(chat_bodies(minimax_connection)[0])) == 1


def test_a_streamed_batch_sends_each_rows_image_and_checks_them_all_first(
    minimax_connection: EmulatorHandle, tmp_path: Path
) -> None:
    rows = []
    for shade in range(3):
        path = tmp_path / f"p{shade}.png"
        path.write_bytes(png(shade=shade))
        rows.append({"sku": f"A{shade}", "photo": str(path)})
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    operator = MiniMaxBatchOperator(
        task_id="batch",
        conn_id="minimax_chat",
        input_path=str(source),
        output_path=str(tmp_path / "out.jsonl"),
        prompt_template="Describe product {{ sku }}",
        image_field="photo",
    )
    operator.window_rows = 2
    source.write_text(source.read_text() + json.dumps({"sku": "late", "photo": "/missing.png"}) + "\n")
    with pytest.raises(MiniMaxValidationError, match=r"rows\[3\].photo: no image file"):
        operator.execute({"ti": RecordingTI()})  # type: ignore[arg-type]
    assert chat_bodies(minimax_connection) == []  # the bad last row stopped it before any request

    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    operator.execute({"ti": RecordingTI()})  # type: ignore[arg-type]
    written = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [line["status"] for line in written] == ["success"] * 3
    assert len({json.dumps(image_urls(body)) for body in chat_bodies(minimax_connection)}) == 3
