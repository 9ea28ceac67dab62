"""The review web application: one static page and a small JSON API (aiohttp).

Security:

- Every ``/api/`` call needs the shared token, either as ``Authorization: Bearer <token>``
  (scripts; the reviewer is named by ``X-Reviewer``) or through the login form, which
  trades it for a random session id in an HttpOnly, SameSite=Strict cookie (only the id's
  hash is stored). Tokens are compared as SHA-256 digests with ``hmac.compare_digest``.
- State-changing calls are JSON POSTs (a cross-site form cannot send them) and a foreign
  ``Origin`` is refused.
- The page puts model output into the DOM with ``textContent`` only, and the
  Content-Security-Policy allows no script or style but the page's own inline blocks (by
  hash): an answer containing markup is shown as text and cannot run.
- Nothing sent to the browser names the models: items carry opaque ids, and "left"/"right"
  are mapped to the stored answers here, on the server.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

import orjson
from aiohttp import web
from yarl import URL

from shadoweval.config.review import ReviewConfig
from shadoweval.redaction import Redactor
from shadoweval.review.publish import Outbox
from shadoweval.review.store import Comparison, Letter, Rating, Store
from shadoweval.score.sinks import ScoreSink
from shadoweval.types import Json

log = logging.getLogger(__name__)

COOKIE = "shadoweval_review"
SCORING_RULES = ("exact", "rubric", "human")
_REVIEWER = re.compile(r"^[^\x00-\x1f\x7f]{1,64}$")
_MAX_NOTE = 2000
_MAX_EXPECTED = 100_000
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def load_page() -> tuple[bytes, str]:
    """The page and its Content-Security-Policy (hashes of its inline script and style)."""
    page = resources.files("shadoweval.review").joinpath("static/review.html").read_bytes()
    text = page.decode()

    def hashes(tag: str) -> str:
        blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", text, flags=re.S)
        digests = [base64.b64encode(hashlib.sha256(b.encode()).digest()).decode() for b in blocks]
        return " ".join(f"'sha256-{d}'" for d in digests)

    csp = (
        "default-src 'self'; "
        f"script-src {hashes('script')}; style-src {hashes('style')}; "
        "img-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    )
    return page, csp


@dataclass
class State:
    cfg: ReviewConfig
    store: Store
    outbox: Outbox
    token_digest: bytes
    page: bytes
    csp: str


STATE = web.AppKey("review_state", State)
# Typed request storage where aiohttp has it (3.12+); a plain key on older versions.
REVIEWER: Any = web.RequestKey("reviewer", str) if hasattr(web, "RequestKey") else "reviewer"


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status, dumps=_dumps)


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=_dumps)


def _reviewer_name(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value if _REVIEWER.match(value) else None


async def _authenticate(request: web.Request, state: State) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        if not hmac.compare_digest(_digest(auth[7:].strip()), state.token_digest):
            return None
        return _reviewer_name(request.headers.get("X-Reviewer", "api"))
    session = request.cookies.get(COOKIE)
    if not session:
        return None
    return await state.store.call(state.store.session, session)


def _same_origin(request: web.Request) -> bool:
    """Browsers send Origin with every POST; a foreign one is a cross-site request. (A
    missing Origin is a script, which must hold the token anyway.)"""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    host = URL(origin).host_port_subcomponent if "://" in origin else None
    return host is not None and host == request.host


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[STATE]
    response: web.StreamResponse
    try:
        if request.method == "POST" and not _same_origin(request):
            response = _error(403, "cross-origin request refused")
        elif request.path.startswith("/api/") and request.path != "/api/login":
            reviewer = await _authenticate(request, state)
            if reviewer is None:
                response = _error(401, "not logged in")
            else:
                request[REVIEWER] = reviewer
                response = await handler(request)
        else:
            response = await handler(request)
    except web.HTTPException as exc:
        response = _error(exc.status, exc.reason)
    headers = response.headers
    headers["Content-Security-Policy"] = state.csp
    headers["X-Content-Type-Options"] = "nosniff"
    headers["X-Frame-Options"] = "DENY"
    headers["Referrer-Policy"] = "no-referrer"
    headers["Cache-Control"] = "no-store"
    return response


async def _body(request: web.Request) -> Json:
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(reason="send application/json")
    try:
        body = await request.json(loads=orjson.loads)
    except ValueError:
        raise web.HTTPBadRequest(reason="invalid JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(reason="expected a JSON object")
    return body


# -- pages and session ---------------------------------------------------------------------


async def page(request: web.Request) -> web.Response:
    return web.Response(body=request.app[STATE].page, content_type="text/html", charset="utf-8")


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def login(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await _body(request)
    token = body.get("token")
    reviewer = _reviewer_name(body.get("reviewer"))
    if not isinstance(token, str) or not hmac.compare_digest(_digest(token), state.token_digest):
        await asyncio.sleep(0.5)  # slows guessing down; the token is long anyway
        return _error(401, "wrong token")
    if reviewer is None:
        return _error(400, "enter your name (1-64 characters)")
    auth = state.cfg.auth
    session = await state.store.call(state.store.create_session, reviewer, auth.session_ttl_s)
    response = _json({"reviewer": reviewer})
    response.set_cookie(
        COOKIE,
        session,
        max_age=int(auth.session_ttl_s),
        httponly=True,
        samesite="Strict",
        secure=auth.cookie_secure,
        path="/",
    )
    return response


async def logout(request: web.Request) -> web.Response:
    state = request.app[STATE]
    session = request.cookies.get(COOKIE)
    if session:
        await state.store.call(state.store.drop_session, session)
    response = _json({"ok": True})
    response.del_cookie(COOKIE, path="/")
    return response


async def session_info(request: web.Request) -> web.Response:
    state = request.app[STATE]
    settings = state.cfg.review
    progress = await _progress(request)
    return _json(
        {
            "reviewer": request[REVIEWER],
            "rubric": [c.model_dump() for c in settings.rubric],
            "scale_max": settings.rubric_scale_max,
            "scoring_rules": SCORING_RULES,
            "progress": progress,
        }
    )


async def _progress(request: web.Request) -> Json:
    state = request.app[STATE]
    return await state.store.call(
        state.store.progress, request[REVIEWER], state.cfg.review.ratings_per_item
    )


async def progress(request: web.Request) -> web.Response:
    return _json(await _progress(request))


# -- comparisons ---------------------------------------------------------------------------


def _other(letter: Letter) -> Letter:
    return "b" if letter == "a" else "a"


def _view(item: Comparison, left: Letter, rating: Rating | None) -> Json:
    """What the browser sees: left/right texts, no upstream, model or pair id."""
    sides = {"a": item.a, "b": item.b}
    name = {left: "left", _other(left): "right"}

    def side(letter: Letter) -> Json:
        return {"text": sides[letter]["text"], "truncated": sides[letter]["truncated"]}

    view: Json = {
        "id": item.id,
        "route": item.route,
        "task": item.task,
        "prompt": item.prompt,
        "left": side(left),
        "right": side(_other(left)),
        "rating": None,
    }
    if rating is not None:
        view["rating"] = {
            "choice": None
            if rating.choice is None
            else "tie"
            if rating.choice == "tie"
            else name[rating.choice],
            "flags": sorted(name[f] for f in rating.flags),
            "rubric": None
            if rating.rubric is None
            else {name[k]: v for k, v in rating.rubric.items()},  # type: ignore[index]
            "note": rating.note,
        }
    return view


async def _item_response(request: web.Request, item_id: str | None) -> web.Response:
    state = request.app[STATE]
    store, reviewer = state.store, request[REVIEWER]
    view = None
    if item_id is not None:

        def fetch() -> Json | None:
            item = store.comparison(item_id)
            if item is None:
                return None
            return _view(item, store.left_side(item_id, reviewer), store.rating(item_id, reviewer))

        view = await store.call(fetch)
        if view is None:
            return _error(404, "no such item")
    return _json({"item": view, "progress": await _progress(request)})


async def compare_next(request: web.Request) -> web.Response:
    state = request.app[STATE]
    item_id = await state.store.call(
        state.store.next_comparison, request[REVIEWER], state.cfg.review.ratings_per_item
    )
    return await _item_response(request, item_id)


async def compare_item(request: web.Request) -> web.Response:
    return await _item_response(request, request.match_info["item_id"])


def _rubric(value: Any, state: State) -> dict[str, dict[str, int]] | None:
    if value is None:
        return None
    names = {c.name for c in state.cfg.review.rubric}
    scale = state.cfg.review.rubric_scale_max
    if not isinstance(value, dict) or set(value) != {"left", "right"}:
        raise web.HTTPBadRequest(reason="rubric needs scores for left and right")
    out = {}
    for side, scores in value.items():
        if not isinstance(scores, dict) or set(scores) != names:
            raise web.HTTPBadRequest(reason=f"rubric.{side} needs {', '.join(sorted(names))}")
        for v in scores.values():
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= scale:
                raise web.HTTPBadRequest(reason=f"rubric scores are whole numbers 1-{scale}")
        out[side] = dict(scores)
    return out


async def compare_rate(request: web.Request) -> web.Response:
    state = request.app[STATE]
    store, reviewer = state.store, request[REVIEWER]
    body = await _body(request)
    item_id = body.get("item")
    choice = body.get("choice")
    flags = body.get("flags") or []
    note = body.get("note") or ""
    if choice not in (None, "left", "right", "tie"):
        return _error(400, "choice is left, right or tie")
    rubric = _rubric(body.get("rubric"), state)
    if choice is None and rubric is None:
        return _error(400, "send a choice, a rubric, or both")
    if not isinstance(flags, list) or not set(flags) <= {"left", "right"}:
        return _error(400, "flags is a list of left/right")
    if not isinstance(note, str) or len(note) > _MAX_NOTE:
        return _error(400, f"note is text of at most {_MAX_NOTE} characters")
    if not isinstance(item_id, str) or await store.call(store.comparison, item_id) is None:
        return _error(404, "no such item")
    # Un-blind: the stored letter behind what this reviewer saw on each side.
    left = store.left_side(item_id, reviewer)
    letter: dict[str, Letter] = {"left": left, "right": _other(left)}
    choice_letter: Literal["a", "b", "tie"] | None = (
        None if choice is None else "tie" if choice == "tie" else letter[choice]
    )
    rating = Rating(
        item_id=item_id,
        reviewer=reviewer,
        choice=choice_letter,
        rubric=None if rubric is None else {letter[k]: v for k, v in rubric.items()},
        flags=sorted({letter[f] for f in flags}),
        note=note.strip(),
        left=left,
        updated_at=0.0,
    )
    await store.call(store.save_rating, rating)
    state.outbox.wake()
    return _json({"ok": True, "progress": await _progress(request)})


async def _skip(request: web.Request, kind: Literal["compare", "expected"]) -> web.Response:
    state = request.app[STATE]
    body = await _body(request)
    item_id = body.get("item")
    if not isinstance(item_id, str):
        return _error(400, "item is required")
    await state.store.call(state.store.skip, kind, item_id, request[REVIEWER])
    return _json({"ok": True})


async def compare_skip(request: web.Request) -> web.Response:
    return await _skip(request, "compare")


# -- expected answers ----------------------------------------------------------------------


def _expected_view(item_id: str, line: Json, expected: Json | None) -> Json:
    from shadoweval.dataset.inputs import turns

    current = expected
    if current is None and line.get("expected") is not None:
        value = line["expected"]
        current = {
            "text": value if isinstance(value, str) else orjson.dumps(value).decode(),
            "scoring": line.get("scoring") or "human",
            "origin": "dataset",
            "reviewer": None,
        }
    return {
        "id": item_id,
        "route": line.get("route"),
        "task": line.get("task"),
        "prompt": turns(line.get("request") or {}),
        "selection": line.get("selection"),
        "edge_case": line.get("edge_case"),
        "scoring": line.get("scoring") or "human",
        "suggestion": line.get("expected_suggestion"),
        "expected": current,
    }


async def _expected_response(request: web.Request, item_id: str | None) -> web.Response:
    state = request.app[STATE]
    view = None
    if item_id is not None:
        found = await state.store.call(state.store.dataset_item, item_id)
        if found is None:
            return _error(404, "no such dataset item")
        view = _expected_view(item_id, *found)
    return _json({"item": view, "progress": await _progress(request)})


async def expected_next(request: web.Request) -> web.Response:
    state = request.app[STATE]
    item_id = await state.store.call(state.store.next_expected, request[REVIEWER])
    return await _expected_response(request, item_id)


async def expected_item(request: web.Request) -> web.Response:
    return await _expected_response(request, request.match_info["item_id"])


async def expected_save(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body = await _body(request)
    item_id, text, scoring = body.get("item"), body.get("text"), body.get("scoring", "human")
    if not isinstance(text, str) or not text.strip() or len(text) > _MAX_EXPECTED:
        return _error(400, f"the expected answer is 1-{_MAX_EXPECTED} characters of text")
    if scoring not in SCORING_RULES:
        return _error(400, f"scoring is one of {', '.join(SCORING_RULES)}")
    if (
        not isinstance(item_id, str)
        or await state.store.call(state.store.dataset_item, item_id) is None
    ):
        return _error(404, "no such dataset item")
    origin = "approved" if body.get("approve") else "written"
    await state.store.call(
        state.store.save_expected, item_id, text, scoring, origin, request[REVIEWER]
    )
    return _json({"ok": True, "progress": await _progress(request)})


async def expected_skip(request: web.Request) -> web.Response:
    return await _skip(request, "expected")


async def export_dataset(request: web.Request) -> web.Response:
    state = request.app[STATE]
    lines = await state.store.call(lambda: list(state.store.export_dataset()))
    body = b"".join(orjson.dumps(line, option=orjson.OPT_APPEND_NEWLINE) for line in lines)
    return web.Response(
        body=body,
        content_type="application/x-ndjson",
        headers={"Content-Disposition": 'attachment; filename="dataset.reviewed.jsonl"'},
    )


# -- assembly ------------------------------------------------------------------------------


def create_app(cfg: ReviewConfig, store: Store, sink: ScoreSink, token: str) -> web.Application:
    """The application; the outbox worker publishes to ``sink`` while it is started."""
    page_bytes, csp = load_page()
    outbox = Outbox(store, sink, cfg.review, Redactor(cfg.redaction))
    app = web.Application(middlewares=[guard], client_max_size=1024 * 1024)
    app[STATE] = State(cfg, store, outbox, _digest(token), page_bytes, csp)

    async def lifecycle(app: web.Application) -> Any:
        outbox.start()
        yield
        await outbox.close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/", page)
    app.router.add_get("/healthz", healthz)
    app.router.add_post("/api/login", login)
    app.router.add_post("/api/logout", logout)
    app.router.add_get("/api/session", session_info)
    app.router.add_get("/api/progress", progress)
    app.router.add_get("/api/compare/next", compare_next)
    app.router.add_get("/api/compare/item/{item_id}", compare_item)
    app.router.add_post("/api/compare/rate", compare_rate)
    app.router.add_post("/api/compare/skip", compare_skip)
    app.router.add_get("/api/expected/next", expected_next)
    app.router.add_get("/api/expected/item/{item_id}", expected_item)
    app.router.add_post("/api/expected", expected_save)
    app.router.add_post("/api/expected/skip", expected_skip)
    app.router.add_get("/api/export/dataset.jsonl", export_dataset)
    return app
