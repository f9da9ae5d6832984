"""The chat completions API (``POST /v1/chat/completions``), OpenAI protocol, MiniMax flavour."""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

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
    cid = "chatcmpl-" + digest(json.dumps(body, sort_keys=True))[:24]
    head = {"id": cid, "created": int(time.time()), "model": parsed.model}
    finish = "tool_calls" if message.get("tool_calls") else reply.finish_reason
    if parsed.stream:
        cut = fault.after_chunks if fault is not None and fault.kind == "stream_cut" else None
        usage = bool((parsed.stream_options or {}).get("include_usage"))
        return sse_response(_chunks(head, message, finish, reply, usage), request, state, cut)
    choice = {"index": 0, "message": message, "finish_reason": finish}
    return JSONResponse({**head, "object": "chat.completion", "choices": [choice], "usage": _usage(reply)})


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


def _text_of(message: ChatMessage) -> str:
    """The text of a message; image parts count as a placeholder."""
    if isinstance(message.content, str):
        return message.content
    parts = message.content or []
    return " ".join(str(p.get("text", "")) if p.get("type") == "text" else "[image]" for p in parts)


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


def _usage(reply: Reply) -> dict[str, Any]:
    """OpenAI usage, with the reasoning tokens broken out."""
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.total_tokens,
        "completion_tokens_details": {"reasoning_tokens": reply.thinking_tokens},
    }


def _chunks(
    head: dict[str, Any], message: dict[str, Any], finish: str, reply: Reply, include_usage: bool
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
    if include_usage:
        events.append({**base, "choices": [], "usage": _usage(reply)})
    return events


def _base_resp(fault: Fault, body: dict[str, Any], request: Request, state: EmulatorState) -> Response:
    """HTTP 200 carrying a MiniMax ``base_resp`` error instead of an answer."""
    status = {"status_code": fault.status_code, "status_msg": fault.status_msg}
    head = {"id": "", "created": int(time.time()), "model": str(body.get("model", CHAT_MODEL))}
    if body.get("stream") is True:
        chunk = {**head, "object": "chat.completion.chunk", "choices": [], "base_resp": status}
        return sse_response([chunk], request, state)
    return JSONResponse({**head, "object": "chat.completion", "choices": [], "base_resp": status})
