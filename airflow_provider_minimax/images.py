"""Images for the chat API's vision input: local files, object storage, URLs and bytes as ``image_url`` parts.

Files (local or object storage) and raw bytes are sent inline as ``data:`` URLs whose MIME type
comes from the bytes themselves (magic numbers), never from the file name; ``http(s)`` URLs are
passed through for the gateway to fetch. Every check (the file exists, its type is accepted, it
is within :data:`MAX_IMAGE_BYTES`) runs before any HTTP call.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_minimax.exceptions import MiniMaxValidationError

if TYPE_CHECKING:
    from airflow.providers.common.compat.sdk import ObjectStoragePath

#: The largest image accepted, in bytes before base64 (a data URL is a third larger).
MAX_IMAGE_BYTES = 10 * 1024 * 1024
#: The image types accepted, by MIME type, with the name errors use.
ACCEPTED_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WebP", "image/gif": "GIF"}
_ACCEPTED = ", ".join(ACCEPTED_TYPES.values())
#: Bytes enough to tell every accepted type apart.
_HEAD_BYTES = 12


def sniff_mime(head: bytes) -> str | None:
    """The MIME type of an image from its first bytes; None when it is not an accepted type.

    :param head: at least the first 12 bytes of the file.
    """
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def _is_url(source: Any) -> bool:
    return isinstance(source, str) and source.lower().startswith(("http://", "https://"))


def _is_path(source: Any) -> bool:
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    return isinstance(source, str | os.PathLike | ObjectStoragePath)


def _path(source: Any) -> ObjectStoragePath:
    """An ``ObjectStoragePath`` for a URI (``s3://...``) or a local path (made absolute)."""
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    from airflow_provider_minimax.batch.io import storage_path

    if isinstance(source, ObjectStoragePath):
        return source
    text = os.fspath(source) if isinstance(source, os.PathLike) else str(source)
    return storage_path(text if "://" in text else os.path.abspath(text))


def _read(source: Any, parameter: str, limit: int) -> tuple[bytes, int]:
    """Up to ``limit`` bytes of a file and the file's size; a clear error when it cannot be read."""
    path = _path(source)
    try:
        with path.open("rb") as handle:
            data = handle.read(limit)
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
    except (FileNotFoundError, IsADirectoryError):
        raise MiniMaxValidationError(
            f"{parameter}: no image file at {str(source)!r}", parameter=parameter
        ) from None
    except OSError as err:
        raise MiniMaxValidationError(
            f"{parameter}: cannot read {str(source)!r}: {err}", parameter=parameter
        ) from None
    return data, size


def _checked(data: bytes, size: int, what: str, parameter: str) -> str:
    """The MIME type of an image within the size limit; a validation error otherwise."""
    if size > MAX_IMAGE_BYTES:
        raise MiniMaxValidationError(
            f"{parameter}: {what} is {size:,} bytes, over the {MAX_IMAGE_BYTES:,}-byte limit per image; "
            "scale it down or pass an http(s) URL",
            parameter=parameter,
        )
    if size == 0:
        raise MiniMaxValidationError(f"{parameter}: {what} is empty", parameter=parameter)
    mime = sniff_mime(data[:_HEAD_BYTES])
    if mime is None:
        raise MiniMaxValidationError(
            f"{parameter}: {what} is not an accepted image type (accepted: {_ACCEPTED})", parameter=parameter
        )
    return mime


def _decode_data_url(url: str, parameter: str) -> bytes:
    header, sep, payload = url.partition(",")
    if not sep or not header.endswith(";base64"):
        raise MiniMaxValidationError(
            f"{parameter}: a data URL must be 'data:<type>;base64,<data>'", parameter=parameter
        )
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise MiniMaxValidationError(
            f"{parameter}: the data URL is not valid base64", parameter=parameter
        ) from None


def check_image(source: Any, parameter: str = "images") -> None:
    """Check one image without reading it whole: exists, accepted type, within the size limit.

    :param source: a local path, an ``ObjectStoragePath`` or URI, an ``http(s)`` URL or bytes.
    :param parameter: the parameter named in errors (``images[0]``, ``rows[3].photo``...).
    """
    if _is_url(source):
        return
    if isinstance(source, bytes | bytearray):
        _checked(bytes(source), len(source), "the image (bytes)", parameter)
    elif isinstance(source, str) and source.startswith("data:"):
        image_part(source, parameter)
    elif _is_path(source):
        data, size = _read(source, parameter, _HEAD_BYTES)
        _checked(data, size, repr(str(source)), parameter)
    else:
        raise MiniMaxValidationError(
            f"{parameter}: an image is a path, an ObjectStoragePath, an http(s) URL or bytes, "
            f"got {type(source).__name__}",
            parameter=parameter,
        )


def image_part(source: Any, parameter: str = "images") -> dict[str, Any]:
    """One image as a chat ``image_url`` content part: files and bytes inline, URLs as they are.

    :param source: a local path, an ``ObjectStoragePath`` or URI, an ``http(s)`` URL, a ``data:``
        URL or bytes.
    :param parameter: the parameter named in errors.
    """
    if _is_url(source):
        url = str(source)
    else:
        if isinstance(source, bytes | bytearray):
            data, size, what = bytes(source), len(source), "the image (bytes)"
        elif isinstance(source, str) and source.startswith("data:"):
            data = _decode_data_url(source, parameter)
            size, what = len(data), "the data URL's image"
        else:
            check_image(source, parameter)
            data, size = _read(source, parameter, MAX_IMAGE_BYTES + 1)
            what = repr(str(source))
        mime = _checked(data, size, what, parameter)
        url = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    return {"type": "image_url", "image_url": {"url": url}}


def as_list(images: Any, parameter: str = "images") -> list[Any]:
    """``images`` as a list: one source alone, or a list/tuple of them (a string is one source).

    :param images: what the user passed (after templating).
    :param parameter: the parameter named in errors.
    """
    if images is None:
        return []
    if isinstance(images, bytes | bytearray) or _is_path(images):
        return [images]
    if isinstance(images, Sequence):
        return list(images)
    raise MiniMaxValidationError(
        f"{parameter}: give an image (a path, an ObjectStoragePath, an http(s) URL or bytes) or a "
        f"list of them, got {type(images).__name__}",
        parameter=parameter,
    )


def with_images(content: Any, parts: Sequence[dict[str, Any]]) -> Any:
    """A user message's content followed by image parts (the content unchanged without images).

    :param content: the message's content: text, or a list of parts already.
    :param parts: ``image_url`` parts from :func:`image_part`.
    """
    if not parts:
        return content
    text = [{"type": "text", "text": content}] if isinstance(content, str) else list(content or [])
    return [*text, *parts]
