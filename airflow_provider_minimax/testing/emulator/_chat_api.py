"""The chat completions API (``POST /v1/chat/completions``), OpenAI protocol, MiniMax flavour."""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from airflow_provider_minimax.images import ACCEPTED_TYPES, sniff_mime
from airflow_provider_minimax.models import CHAT_MODEL, ChatCompletionRequest, ChatMessage
from airflow_provider_minimax.testing.emulator._faults import Fault
from airflow_provider_minimax.testing.emulator._http import (
    ErrorStyle,
    error_path,
    read_json,
    serve_with_faults,
    sse_response,
)
from airflow_provider_minimax.testing.emulator._schema import instance_for
from airflow_provider_minimax.testing.emulator._state import EmulatorState
from airflow_provider_minimax.testing.emulator._text import (
    REPLY_PREFIX,
    Reply,
    count_tokens,
    digest,
    make_reply,
    pieces,
    quote,
    reply_text,
)

STYLE = ErrorStyle("chat")
router = APIRouter()
# Keys the wire model does not know are ignored, not refused, as a real OpenAI-protocol server does.
_KNOWN_KEYS = frozenset(ChatCompletionRequest.model_fields) - {"extra_body"}
# Keys of a previous assistant message that clients send back verbatim in a multi-turn chat.
_IGNORED_MESSAGE_KEYS = frozenset({"reasoning_details", "refusal", "annotations", "audio", "function_call"})
_STRUCTURED = ("json_schema", "json_object")
_DATA_URL = re.compile(
    r"data:(" + "|".join(re.escape(mime) for mime in ACCEPTED_TYPES) + r");base64,(.*)", re.DOTALL
)


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    """Serve one chat completion request, streamed or not."""
    state: EmulatorState = request.app.state.emulator
    body, bad_json = await read_json(request)
    entry = state.record("chat", body)
    obj = body if isinstance(body, dict) else {}
    response_format = obj.get("response_format")
    structured = isinstance(response_format, dict) and response_format.get("type") in _STRUCTURED
    streaming = obj.get("stream") is True

    async def serve(fault: Fault | None) -> Response:
        return await _serve(body, bad_json, request, state, fault)

    return await serve_with_faults(
        request, state, STYLE, entry, serve, streaming=streaming, structured=structured
    )


async def _serve(
    body: Any, bad_json: str | None, request: Request, state: EmulatorState, fault: Fault | None
) -> Response:
    """Validate an authenticated request and answer it, applying the faults that shape content."""
    if bad_json is not None or not isinstance(body, dict):
        return STYLE.response(400, "invalidJson", bad_json or "The body must be a JSON object.")
    if fault is not None and fault.kind == "base_resp":
        return _base_resp(fault, body, request, state)
    parsed = _validate(body, state)
    if isinstance(parsed, Response):
        return parsed
    await state.occupy()
    broken = fault.variant if fault is not None and fault.kind == "invalid_json_content" else None
    message, reply = _answer(parsed, body.get("seed"), broken)
    usage = _usage(reply, _cached_tokens(parsed, state))
    cid = "chatcmpl-" + digest(json.dumps(body, sort_keys=True))[:24]
    head = {"id": cid, "created": int(time.time()), "model": parsed.model}
    finish = "tool_calls" if message.get("tool_calls") else reply.finish_reason
    if parsed.stream:
        cut = fault.after_chunks if fault is not None and fault.kind == "stream_cut" else None
        wanted = bool((parsed.stream_options or {}).get("include_usage"))
        return sse_response(_chunks(head, message, finish, usage if wanted else None), request, state, cut)
    choice = {"index": 0, "message": message, "finish_reason": finish}
    return JSONResponse({**head, "object": "chat.completion", "choices": [choice], "usage": usage})


def _validate(body: dict[str, Any], state: EmulatorState) -> ChatCompletionRequest | Response:
    """Parse the request with the wire model; the 400/422 response when it is refused."""
    clean = {k: v for k, v in body.items() if k in _KNOWN_KEYS}
    if "max_tokens" not in clean and "max_completion_tokens" in body:
        clean["max_tokens"] = body["max_completion_tokens"]
    if isinstance(clean.get("messages"), list):
        clean["messages"] = [
            {k: v for k, v in m.items() if k not in _IGNORED_MESSAGE_KEYS} if isinstance(m, dict) else m
            for m in clean["messages"]
        ]
    fmt = clean.get("response_format")
    if fmt is not None:
        kind = fmt.get("type") if isinstance(fmt, dict) else None
        schema = (fmt.get("json_schema") or {}).get("schema") if kind == "json_schema" else {}
        if kind not in ("text", *_STRUCTURED) or not isinstance(schema, dict):
            message = "response_format must be text, json_object, or json_schema with json_schema.schema."
            return STYLE.response(422, "unprocessableEntity", message, "response_format")
    # Image parts first: the wire model's own check would name only the message's content.
    bad_image = _check_images(clean.get("messages"))
    if bad_image is not None:
        return STYLE.response(400, "invalidValue", *bad_image)
    try:
        parsed = ChatCompletionRequest.model_validate(clean)
    except ValidationError as exc:
        err = exc.errors()[0]
        path, _ = error_path(err["loc"])
        code = {"missing": "missingRequiredParameter", "extra_forbidden": "unknownParameter"}
        message = f"{path or 'request'}: {str(err['msg']).removeprefix('Value error, ')}"
        return STYLE.response(400, code.get(err["type"], "invalidValue"), message, path or None)
    if state.config.strict_model and parsed.model.lower() != CHAT_MODEL:
        return STYLE.response(400, "modelNotFound", f"Unknown model {parsed.model!r}.", "model")
    return parsed


def _check_images(messages: Any) -> tuple[str, str] | None:
    """The (message, parameter) of the first bad content part: an unknown type, a URL that is
    neither http(s) nor a base64 ``data:`` URL of an accepted image type matching its bytes.

    :param messages: the request's ``messages`` as sent (anything: the wire model checks the rest).
    """
    for i, message in enumerate(messages if isinstance(messages, list) else []):
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            where = f"messages[{i}].content[{j}]"
            if not isinstance(part, dict):
                continue
            kind = part.get("type")
            if kind == "text" and isinstance(part.get("text"), str):
                continue
            if kind != "image_url":
                return f"{where}: unsupported content part type {kind!r} (text, image_url).", where
            url = (part.get("image_url") or {}).get("url")
            problem = _image_url_problem(url)
            if problem is not None:
                return f"{where}.image_url.url: {problem}", f"{where}.image_url.url"
    return None


def _image_url_problem(url: Any) -> str | None:
    if not isinstance(url, str):
        return "must be a string."
    if url.lower().startswith(("http://", "https://")):
        return None
    match = _DATA_URL.fullmatch(url)
    if match is None:
        return "must be an http(s) URL or data:image/<png|jpeg|webp|gif>;base64,<data>."
    try:
        data = base64.b64decode(match.group(2), validate=True)
    except (binascii.Error, ValueError):
        return "the data URL is not valid base64."
    if sniff_mime(data[:12]) != match.group(1):
        return f"the data URL says {match.group(1)} but its bytes are not a {match.group(1)} image."
    return None


def _image_bytes(url: str) -> bytes:
    """The bytes an image part stands for: a data URL's image, or the URL itself (never fetched)."""
    match = _DATA_URL.fullmatch(url)
    return base64.b64decode(match.group(2)) if match else url.encode()


def _text_of(message: ChatMessage) -> str:
    """The text of a message; an image counts as a placeholder naming its bytes' digest."""
    if isinstance(message.content, str):
        return message.content
    parts = message.content or []
    return " ".join(
        str(p.get("text", "")) if p.get("type") == "text" else f"[image {_image_ref(p)}]" for p in parts
    )


def _image_ref(part: dict[str, Any]) -> str:
    return digest(_image_bytes(str((part.get("image_url") or {}).get("url", ""))))[:8]


def _seen_images(message: ChatMessage) -> str:
    """What the emulator "sees" in a message's images: type, size and a digest of the bytes."""
    seen = []
    for part in message.content if isinstance(message.content, list) else []:
        if part.get("type") != "image_url":
            continue
        url = str((part.get("image_url") or {}).get("url", ""))
        match = _DATA_URL.fullmatch(url)
        kind = f"a {match.group(1).removeprefix('image/').upper()} image" if match else "an image URL"
        seen.append(f"{kind} of {len(_image_bytes(url))} bytes [img {_image_ref(part)}]")
    return f" I see {', '.join(seen)}." if seen else ""


def _answer(req: ChatCompletionRequest, seed: Any, broken: str | None) -> tuple[dict[str, Any], Reply]:
    """The assistant message and its accounting: tool calls, tool summary, JSON or plain text.

    :param req: the validated request
    :param seed: the request's optional ``seed``, which varies the answer
    :param broken: ``invalid_json_content`` variant to apply to a structured answer
    """
    system = "\n".join(_text_of(m) for m in req.messages if m.role == "system")
    turns = [m for m in req.messages if m.role != "system"]
    prompt = "\n".join([system, *(f"{m.role}: {_text_of(m)}" for m in turns)]).strip()
    last_user = next((_text_of(m) for m in reversed(turns) if m.role == "user"), "")
    calls = _tool_calls(req, last_user, prompt)
    fmt = (req.response_format or {}).get("type")
    text: str | None = None
    if calls:
        text = ""
    elif fmt in _STRUCTURED:
        text = _json_answer(req, last_user, prompt, seed, broken)
    elif req.messages[-1].role == "tool":
        text = _tool_summary(req.messages)
    else:
        user = next((m for m in reversed(turns) if m.role == "user"), None)
        seen = _seen_images(user) if user is not None else ""
        text = reply_text(last_user, prompt, seed) + seen if seen else None
    reply = make_reply(last_user=last_user, prompt=prompt, seed=seed, max_tokens=req.max_tokens, text=text)
    message: dict[str, Any] = {"role": "assistant"}
    if req.reasoning_split:
        message["content"] = reply.text if reply.text or not calls else None
        message["reasoning_details"] = [{"type": "reasoning.text", "text": reply.reasoning}]
    else:
        message["content"] = f"<think>{reply.reasoning}</think>\n\n{reply.text}"
    if calls:
        message["tool_calls"] = calls
    return message, reply


def _tool_calls(req: ChatCompletionRequest, last_user: str, prompt: str) -> list[dict[str, Any]]:
    """One call per offered tool (parallel calls), unless tool results already came back."""
    if not req.tools or req.tool_choice == "none" or req.messages[-1].role == "tool":
        return []
    wanted = None
    if isinstance(req.tool_choice, dict):
        wanted = (req.tool_choice.get("function") or {}).get("name")
    calls = []
    for tool in req.tools:
        function = tool.get("function") or {}
        name = function.get("name")
        if tool.get("type", "function") != "function" or not name or wanted not in (None, name):
            continue
        schema = function.get("parameters") or {"type": "object", "properties": {}}
        arguments = json.dumps(instance_for(schema, hint=last_user))
        call_id = f"call_{digest(prompt, name)[:20]}"
        calls.append({"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}})
    return calls


def _tool_summary(messages: list[ChatMessage]) -> str:
    """Final answer after tool calls: quotes each trailing tool result with its tool's name."""
    names = {c.id: c.function.name for m in messages if m.tool_calls for c in m.tool_calls}
    results = []
    for message in reversed(messages):
        if message.role != "tool":
            break
        name = names.get(message.tool_call_id or "", message.name or "tool")
        results.append(f'{name} returned "{quote(_text_of(message))}"')
    return f"{REPLY_PREFIX} Based on the tool results: {'; '.join(reversed(results))}."


def _json_answer(
    req: ChatCompletionRequest, last_user: str, prompt: str, seed: Any, broken: str | None
) -> str:
    """JSON content for ``response_format``: an instance of the schema, or broken on purpose."""
    if broken == "not_json":
        return 'Sure! Here is the JSON you asked for: {"answer": '
    if broken == "wrong_shape":
        return json.dumps(["not", "an", "object"])
    fmt = req.response_format or {}
    if fmt.get("type") == "json_schema":
        return json.dumps(instance_for(fmt["json_schema"]["schema"], hint=prompt))
    return json.dumps({"answer": reply_text(last_user, prompt, seed)})


def _cached_tokens(req: ChatCompletionRequest, state: EmulatorState) -> int:
    """Automatic prompt caching: a system prompt seen before is read from the cache."""
    system = "\n".join(_text_of(m) for m in req.messages if m.role == "system")
    if not system:
        return 0
    key = digest(system)
    if key in state.cached_prefixes:
        return count_tokens(system)
    state.cached_prefixes.add(key)
    return 0


def _usage(reply: Reply, cached_tokens: int) -> dict[str, Any]:
    """OpenAI usage, with cached prompt tokens and reasoning tokens broken out."""
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.total_tokens,
        "prompt_tokens_details": {"cached_tokens": min(cached_tokens, reply.prompt_tokens)},
        "completion_tokens_details": {"reasoning_tokens": reply.thinking_tokens},
    }


def _chunks(
    head: dict[str, Any], message: dict[str, Any], finish: str, usage: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """The ``chat.completion.chunk`` events of a streamed answer, usage chunk last when asked."""
    deltas: list[dict[str, Any]] = [{"reasoning_details": [d]} for d in message.get("reasoning_details", [])]
    deltas += [{"content": p} for p in pieces(message.get("content") or "")]
    deltas += [{"tool_calls": [{"index": i, **c}]} for i, c in enumerate(message.get("tool_calls", []))]
    deltas = deltas or [{"content": ""}]
    deltas[0] = {"role": "assistant", **deltas[0]}
    base = {**head, "object": "chat.completion.chunk"}
    events = [{**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    if usage is not None:
        events.append({**base, "choices": [], "usage": usage})
    return events


def _base_resp(fault: Fault, body: dict[str, Any], request: Request, state: EmulatorState) -> Response:
    """HTTP 200 carrying a MiniMax ``base_resp`` error instead of an answer."""
    status = {"status_code": fault.status_code, "status_msg": fault.status_msg}
    head = {"id": "", "created": int(time.time()), "model": str(body.get("model", CHAT_MODEL))}
    if body.get("stream") is True:
        chunk = {**head, "object": "chat.completion.chunk", "choices": [], "base_resp": status}
        return sse_response([chunk], request, state)
    return JSONResponse({**head, "object": "chat.completion", "choices": [], "base_resp": status})
