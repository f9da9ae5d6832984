"""Control and inspection routes under ``/_emulator``: stats, config, faults, reset, webhook sink."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter, ValidationError

from airflow_provider_minimax.testing.emulator._faults import Fault
from airflow_provider_minimax.testing.emulator._state import EmulatorConfig, EmulatorState

router = APIRouter(prefix="/_emulator")
_FAULTS = TypeAdapter(Fault | list[Fault])


def _state(request: Request) -> EmulatorState:
    """The emulator state of the app serving ``request``."""
    state: EmulatorState = request.app.state.emulator
    return state


@router.get("/health")
async def health(request: Request) -> dict[str, Any]:
    """Liveness probe, with the objects the command line froze out of garbage collections at start-up."""
    return {"ok": True, "gc_frozen_objects": request.app.state.gc_frozen_objects}


@router.get("/stats")
async def stats(request: Request) -> dict[str, Any]:
    """Counters, submissions per taskUUID, pending faults and the recent request log."""
    return _state(request).stats()


@router.post("/reset")
async def reset(request: Request, body: Annotated[dict[str, Any] | None, Body()] = None) -> JSONResponse:
    """Forget everything; a JSON body, when given, is the new config."""
    try:
        config = EmulatorConfig.model_validate(body) if body else None
    except ValidationError as exc:
        return JSONResponse({"detail": exc.errors(include_url=False)}, status_code=400)
    _state(request).reset(config)
    return JSONResponse({"ok": True, "config": _state(request).config.model_dump()})


@router.get("/config")
async def get_config(request: Request) -> dict[str, Any]:
    """The current config."""
    return _state(request).config.model_dump()


@router.post("/config")
async def update_config(request: Request, body: Annotated[dict[str, Any], Body()]) -> JSONResponse:
    """Change some config fields; the others keep their values."""
    config = _state(request).config
    try:
        merged = EmulatorConfig.model_validate({**config.model_dump(), **body})
    except ValidationError as exc:
        return JSONResponse({"detail": exc.errors(include_url=False)}, status_code=400)
    for key in body:
        setattr(config, key, getattr(merged, key))
    return JSONResponse(config.model_dump())


@router.get("/faults")
async def list_faults(request: Request) -> list[dict[str, Any]]:
    """Pending faults, in the order they will fire."""
    return [f.model_dump() for f in _state(request).faults.pending]


@router.post("/faults")
async def add_faults(request: Request, body: Annotated[Any, Body()]) -> JSONResponse:
    """Queue one fault or a list of faults (``Fault`` JSON)."""
    try:
        parsed = _FAULTS.validate_python(body)
    except ValidationError as exc:
        return JSONResponse({"detail": exc.errors(include_url=False)}, status_code=400)
    added = [_state(request).faults.add(f) for f in (parsed if isinstance(parsed, list) else [parsed])]
    return JSONResponse([f.model_dump() for f in added])


@router.delete("/faults")
async def clear_faults(request: Request) -> dict[str, bool]:
    """Drop every pending fault."""
    _state(request).faults.clear()
    return {"ok": True}


@router.post("/webhook-sink/{name}")
async def webhook_sink(request: Request, name: str, fail_first: int = 0) -> JSONResponse:
    """A webhook receiver for tests and demos; answers 500 to its first ``fail_first`` attempts."""
    state = _state(request)
    state.webhook_attempts[name] += 1
    if state.webhook_attempts[name] <= fail_first:
        return JSONResponse({"ok": False}, status_code=500)
    state.webhook_sink.setdefault(name, []).append(await request.json())
    return JSONResponse({"ok": True})


@router.get("/webhook-sink/{name}")
async def webhook_received(request: Request, name: str) -> dict[str, Any]:
    """What the sink ``name`` accepted, and how many attempts reached it."""
    state = _state(request)
    return {"received": state.webhook_sink.get(name, []), "attempts": state.webhook_attempts[name]}
