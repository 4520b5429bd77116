"""The console's changes (POST): dry run, replay, edit and replay, purge; job pages.

Every change needs the token (a signed-in session with its CSRF value, or a
Bearer header), runs as a job with progress, and is written to the audit log
(who, when, which letters, how many) before its page says it is done.
A dry run and a purge's confirmation page change nothing and need nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from router.core.outcome import DeadLetter
from router.core.pipeline import decide
from router.tools.letters import Letter, replay_envelope, replay_target
from router.tools.lettertext import outcome_text
from router.web.audit import AuditEntry
from router.web.auth import COOKIE, Allowed, Refused
from router.web.jobs import Job
from router.web.ops import client_of
from router.web.pages import letter_facts
from router.web.providers import Console
from router.web.render import base, page, refused
from router.web.selection import Selection, filter_of, letter_key

__all__ = ["LISTED", "action_routes"]

LISTED = 200  # letters a dry run or a purge confirmation lists one by one

Endpoint = Callable[[Request], Awaitable[Response]]


def _headers(request: Request) -> dict[str, str]:
    return {k.lower(): v for k, v in request.headers.items()}


def _selection(form: FormData, console: Console) -> Selection:
    """What the form means (``ValueError`` when it means nothing or its filter is wrong)."""
    fields = {k: str(v) for k, v in form.items() if isinstance(v, str)}
    flt, _ = filter_of(fields, console.clock())
    everything = fields.get("what") in ("replay-all", "all")
    keys = frozenset(str(k) for k in form.getlist("key")) if not everything else frozenset()
    group = fields.get("group") or None
    if not everything and not keys and group is None:
        raise ValueError("select at least one dead letter first")
    return Selection(flt, keys, group)


def _carried(form: FormData, console: Console) -> dict[str, str]:
    fields = {k: str(v) for k, v in form.items() if isinstance(v, str)}
    return filter_of(fields, console.clock())[1]


def _plan_row(letter: Letter, console: Console, to: str | None) -> dict[str, Any]:
    config = console.config()
    exchange, key = replay_target(letter, ingress=config.topology.ingress.exchange, to=to)
    if to is None:
        outcome = decide(replay_envelope(letter, exchange, key), config)
        text, bad = outcome_text(outcome), isinstance(outcome, DeadLetter)
    else:
        text, bad = f"would publish to {exchange or '(default)'!r} / {key!r}", False
    return {"message_id": letter.message_id, "reason": letter.reason,
            "type": letter.message_type, "exchange": exchange, "routing_key": key,
            "outcome": text, "bad": bad}


async def _authorised(request: Request, console: Console, form: FormData) -> Allowed | Refused:
    csrf = form.get("csrf")
    return console.credentials.check(_headers(request), request.cookies.get(COOKIE),
                                     csrf if isinstance(csrf, str) else None, client_of(request))


def _record(console: Console, who: str, action: str, ids: Sequence[str], **detail: Any) -> None:
    console.audit.record(AuditEntry.of(console.clock(), who, action, ids, **detail))


def action_routes(console: Console) -> list[BaseRoute]:
    """The console's POST routes and its job pages."""
    return [Route("/dead-letters/dry-run", _dry_run(console), methods=["POST"]),
            Route("/dead-letters/replay", _replay(console), methods=["POST"]),
            Route("/dead-letters/purge", _purge(console), methods=["POST"]),
            Route("/dead-letters/{key:str}/edit", _edit(console), methods=["POST"]),
            *_job_routes(console)]


def _job_page(request: Request, job: Job) -> Response:
    """See other: the page that follows the job's progress."""
    return RedirectResponse(f"{base(request)}/jobs/{job.id}", status_code=303)


def _replay(console: Console) -> Endpoint:
    """Replay the selection (to the ingress, or to the queue each letter failed in) as a job."""

    async def replay(request: Request) -> Response:
        form = await request.form()
        verdict = await _authorised(request, console, form)
        if isinstance(verdict, Refused):
            return refused(request, console, verdict.status, verdict.why)
        try:
            selection = _selection(form, console)
        except ValueError as exc:
            return refused(request, console, 400, str(exc))
        to = "" if form.get("to") == "queue" else None
        total = len(selection.among((await console.broker.browse()).letters))

        async def work(job: Job) -> str:
            done = await console.broker.replay(selection.matches, to=to, progress=job.progress)
            job.notes += done.notes
            await asyncio.to_thread(_record, console, verdict.who, "replay", done.ids,
                                    target="the queue it failed in" if to == "" else "ingress",
                                    failed=done.failed)
            return f"replayed {done.done} of {done.done + done.failed} dead letters"
        return _job_page(request, console.jobs.start("replay", total, work))

    return replay


def _purge(console: Console) -> Endpoint:
    """The confirmation page first (read-only); with ``confirm``, purge as a job."""

    async def purge(request: Request) -> Response:
        form = await request.form()
        try:
            selection = _selection(form, console)
        except ValueError as exc:
            return refused(request, console, 400, str(exc))
        if "confirm" not in form:
            chosen = selection.among((await console.broker.browse()).letters)
            return page(request, console, "purge.html", title="Purge", page="letters",
                        letters=chosen[:LISTED], total=len(chosen),
                        more=max(len(chosen) - LISTED, 0), keys=sorted(selection.keys),
                        given=_carried(form, console), group=selection.group,
                        what=form.get("what", "selected"))
        verdict = await _authorised(request, console, form)
        if isinstance(verdict, Refused):
            return refused(request, console, verdict.status, verdict.why)

        async def work(job: Job) -> str:
            gone = await console.broker.purge(selection.matches, progress=job.progress)
            await asyncio.to_thread(_record, console, verdict.who, "purge", gone)
            return f"purged {len(gone)} dead letters"
        named = str(form["confirm"])  # how many the confirmation page named
        return _job_page(request, console.jobs.start("purge", int(named) if named.isdigit()
                                                     else 0, work))

    return purge


def _edit(console: Console) -> Endpoint:
    """Check an edited body (read-only); with ``what=send`` and a body that routes, replay it."""

    async def edit(request: Request) -> Response:
        form = await request.form()
        key = request.path_params["key"]
        found = next((x for x in (await console.broker.browse()).letters
                      if letter_key(x) == key), None)
        if found is None:
            return refused(request, console, 404, "that dead letter is no longer in the queue")
        text = str(form.get("body", ""))
        check, body = _check(found, text, console)
        facts = {**letter_facts(found), "edit_body": text}
        if form.get("what") != "send" or body is None:
            return page(request, console, "letter.html", title="Dead letter", page="letters",
                        key=key, jaeger=console.jaeger_url, check=check,
                        check_ok=body is not None, **facts)
        verdict = await _authorised(request, console, form)
        if isinstance(verdict, Refused):
            return refused(request, console, verdict.status, verdict.why)
        original = found.envelope.body.decode("utf-8", "replace")

        async def work(job: Job) -> str:
            done = await console.broker.replay(lambda x: letter_key(x) == key, body=body,
                                               progress=job.progress)
            job.notes += done.notes
            await asyncio.to_thread(_record, console, verdict.who, "edit", done.ids,
                                    original_body=original, edited_body=body.decode())
            return f"replayed {done.done} edited dead letter{'s' if done.done != 1 else ''}"
        return _job_page(request, console.jobs.start("edit and replay", 1, work))

    return edit


def _job_routes(console: Console) -> list[BaseRoute]:
    async def job_view(request: Request) -> Response:
        job = console.jobs.get(request.path_params["job"])
        if job is None:
            return refused(request, console, 404, "no such job (the console restarted?)")
        name = "_job.html" if request.url.path.endswith("/progress") else "job.html"
        return page(request, console, name, title=job.action.capitalize(), page="letters",
                    job=job)

    return [Route("/jobs/{job:str}", job_view), Route("/jobs/{job:str}/progress", job_view)]


def _dry_run(console: Console) -> Endpoint:
    """What replaying the selection would do now: read-only, the confirmation form."""

    async def dry_run(request: Request) -> Response:
        form = await request.form()
        try:
            selection = _selection(form, console)
        except ValueError as exc:
            return refused(request, console, 400, str(exc))
        chosen = selection.among((await console.broker.browse()).letters)
        plan = [_plan_row(x, console, None) for x in chosen[:LISTED]]
        return page(request, console, "dryrun.html", title="Dry run", page="letters",
                    plan=plan, total=len(chosen), more=max(len(chosen) - LISTED, 0),
                    keys=sorted(selection.keys), given=_carried(form, console),
                    group=selection.group, what=str(form.get("what", "replay")))

    return dry_run


def _check(letter: Letter, text: str, console: Console) -> tuple[str, bytes | None]:
    """What the router would do with the edited body; the bytes to send when it would route."""
    try:
        body = orjson.dumps(orjson.loads(text))
    except orjson.JSONDecodeError as exc:
        return f"not JSON: {exc}", None
    config = console.config()
    exchange, key = replay_target(letter, ingress=config.topology.ingress.exchange)
    edited = replay_envelope(letter, exchange, key)
    outcome = decide(edited.__class__(body, edited.properties, exchange, key), config)
    if isinstance(outcome, DeadLetter):
        return f"still invalid, not sent: {outcome_text(outcome)}", None
    return outcome_text(outcome), body
