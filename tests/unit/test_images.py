"""Images turned into chat ``image_url`` parts: type sniffing, sources, limits, errors."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_minimax.exceptions import MiniMaxValidationError
from airflow_provider_minimax.images import (
    MAX_IMAGE_BYTES,
    as_list,
    check_image,
    image_part,
    sniff_mime,
    with_images,
)
from airflow_provider_minimax.testing.images import GIF_HEAD, JPEG_HEAD, WEBP_HEAD, png


@pytest.mark.parametrize(
    ("head", "mime"),
    [
        (png(), "image/png"),
        (JPEG_HEAD, "image/jpeg"),
        (GIF_HEAD, "image/gif"),
        (b"GIF87a" + bytes(8), "image/gif"),
        (WEBP_HEAD, "image/webp"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", None),  # RIFF, but audio
        (b"%PDF-1.7", None),
        (b"", None),
    ],
)
def test_sniff_mime(head: bytes, mime: str | None) -> None:
    assert sniff_mime(head[:12]) == mime


def url_of(part: dict[str, Any]) -> str:
    assert part["type"] == "image_url"
    return str(part["image_url"]["url"])


def test_a_misnamed_file_is_sent_with_the_type_of_its_bytes(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(png())

    assert url_of(image_part(path)).startswith("data:image/png;base64,")


def test_urls_pass_through_and_data_urls_are_checked() -> None:
    data_url = "data:image/png;base64," + base64.b64encode(png()).decode()

    assert url_of(image_part("HTTPS://cdn.example.com/a.webp")) == "HTTPS://cdn.example.com/a.webp"
    assert url_of(image_part(data_url)) == data_url


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("data:image/png,rawbytes", "a data URL must be 'data:<type>;base64,<data>'"),
        ("data:image/png;base64,@@@", "the data URL is not valid base64"),
        ("data:image/png;base64," + base64.b64encode(b"%PDF").decode(), "not an accepted image type"),
        (b"", "is empty"),
        (bytearray(b"BMP"), "not an accepted image type (accepted: PNG, JPEG, WebP, GIF)"),
        (b"\x89PNG\r\n\x1a\n" + bytes(MAX_IMAGE_BYTES), "over the 10,485,760-byte limit per image"),
        (3.5, "got float"),
    ],
)
def test_bad_sources_name_the_parameter(source: Any, message: str) -> None:
    with pytest.raises(MiniMaxValidationError) as caught:
        image_part(source, "images[2]")

    assert caught.value.parameter == "images[2]"
    assert message in caught.value.message


def test_a_file_over_the_limit_is_refused_from_its_size_alone(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    with path.open("wb") as handle:
        handle.write(png())
        handle.truncate(MAX_IMAGE_BYTES + 1)  # Sparse: the size is known without reading.

    with pytest.raises(MiniMaxValidationError, match="over the 10,485,760-byte limit"):
        check_image(str(path), "rows[0].photo")


def test_check_accepts_an_image_at_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "edge.gif"
    path.write_bytes(GIF_HEAD.ljust(MAX_IMAGE_BYTES, b"\x00"))

    check_image(path)
    assert url_of(image_part(path)).startswith("data:image/gif;base64,")


@pytest.mark.parametrize(
    ("images", "count"),
    [(None, 0), ("a.png", 1), (b"\x89PNG", 1), (Path("a.png"), 1), (["a.png", b"x"], 2), (("a", "b"), 2)],
)
def test_as_list(images: Any, count: int) -> None:
    assert len(as_list(images)) == count


def test_with_images_appends_parts_after_the_text() -> None:
    part = {"type": "image_url", "image_url": {"url": "https://x/y.png"}}

    assert with_images("Describe", [part]) == [{"type": "text", "text": "Describe"}, part]
    assert with_images([{"type": "text", "text": "a"}], [part]) == [{"type": "text", "text": "a"}, part]
    assert with_images("unchanged", []) == "unchanged"
