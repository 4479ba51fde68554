"""Browser sign-in for apps: ``GET/POST /login``, ``GET/POST /logout``, and ``/``.

``POST /login`` and ``POST /logout`` are CSRF-safe: a double-submit token (an HttpOnly
cookie set with the form, and the same value in the form) plus, when the browser sends one,
an ``Origin`` that is this server's own. The session cookie is HttpOnly, ``SameSite=Lax``,
and ``Secure`` when the request came over TLS. ``next`` only ever leads within Bastion.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from bastion.errors import RateLimited
from bastion.server.auth import platform_of
from bastion.server.origins import origin_allowed, safe_next
from bastion.server.pages import login_page, logout_page, message_page
from bastion.server.sessions import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    cookie_header,
    csrf_matches,
    new_csrf_token,
    sessions_of,
)

router = APIRouter(tags=["accounts"], include_in_schema=False)
_NO_STORE = {"Cache-Control": "no-store", "X-Frame-Options": "DENY"}


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _form_response(
    request: Request, render: Callable[[str], str], status: int = 200
) -> HTMLResponse:
    """A form page carrying the CSRF token that its cookie holds (set here if new)."""
    token = request.cookies.get(CSRF_COOKIE) or new_csrf_token()
    html = render(token)
    response = HTMLResponse(html, status_code=status, headers=_NO_STORE)
    response.headers.append(
        "set-cookie", cookie_header(CSRF_COOKIE, token, secure=_secure(request), max_age=3600)
    )
    return response


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None:
        return True  # an older browser or a script; the CSRF token still has to match
    headers = {k.lower(): v for k, v in request.headers.items()}
    allowed = platform_of(request).settings.app_allowed_origins
    return origin_allowed(origin, request.url.scheme, headers, allowed)


@router.get("/", name="home")
def home(request: Request) -> Response:
    apps = getattr(platform_of(request), "apps", None)
    target = "/apps/dashboard/" if apps is not None and apps.find("dashboard") else "/api/docs"
    return RedirectResponse(target, status_code=302)


@router.get("/login", name="login_form")
def login_form(request: Request, next: str | None = None) -> HTMLResponse:
    request.state.audit_skip = True
    target = safe_next(next)
    return _form_response(request, lambda csrf: login_page(target, csrf))


@router.post("/login", name="login")
async def login(request: Request) -> Response:
    form = await request.form()
    name = str(form.get("username") or "")[:255]
    password = str(form.get("password") or "")[:1024]
    target = safe_next(str(form.get("next") or ""))
    request.state.audit_user = name
    request.state.audit_params = {"username": name, "next": target}
    if not _same_origin(request) or not csrf_matches(
        request.cookies.get(CSRF_COOKIE), str(form.get("csrf") or "")
    ):
        request.state.error_message = "CSRF check failed"
        return _form_response(
            request,
            lambda csrf: login_page(target, csrf, "Your sign-in form expired; try again.", name),
            403,
        )
    address = request.client.host if request.client else ""
    try:
        session = sessions_of(platform_of(request)).login(name, password, address)
    except RateLimited as error:
        refused = error.message
        request.state.error_message = refused
        return _form_response(request, lambda csrf: login_page(target, csrf, refused, name), 429)
    if session is None:
        request.state.error_message = "invalid credentials"
        return _form_response(
            request,
            lambda csrf: login_page(target, csrf, "Invalid user name or password.", name),
            401,
        )
    raw, caller = session
    request.state.caller = caller
    response = RedirectResponse(target, status_code=303, headers=_NO_STORE)
    response.headers.append(
        "set-cookie",
        cookie_header(
            SESSION_COOKIE,
            raw,
            secure=_secure(request),
            max_age=platform_of(request).settings.app_session_ttl_s,
        ),
    )
    # A new CSRF token after sign-in, so a token planted before it is worth nothing.
    response.headers.append(
        "set-cookie",
        cookie_header(CSRF_COOKIE, new_csrf_token(), secure=_secure(request), max_age=3600),
    )
    return response


@router.get("/logout", name="logout_form")
def logout_form(request: Request) -> HTMLResponse:
    request.state.audit_skip = True
    caller = sessions_of(platform_of(request)).caller(request.cookies.get(SESSION_COOKIE))
    return _form_response(request, lambda csrf: logout_page(csrf, caller.name if caller else None))


@router.post("/logout", name="logout")
async def logout(request: Request) -> Response:
    form = await request.form()
    sessions = sessions_of(platform_of(request))
    raw = request.cookies.get(SESSION_COOKIE)
    caller = sessions.caller(raw)
    if caller is not None:
        request.state.caller = caller
    if not _same_origin(request) or not csrf_matches(
        request.cookies.get(CSRF_COOKIE), str(form.get("csrf") or "")
    ):
        request.state.error_message = "CSRF check failed"
        return HTMLResponse(
            message_page("Not signed out", "The sign-out form expired; open /logout again."),
            status_code=403,
            headers=_NO_STORE,
        )
    sessions.logout(raw)
    response = RedirectResponse("/login", status_code=303, headers=_NO_STORE)
    response.headers.append(
        "set-cookie", cookie_header(SESSION_COOKIE, "", secure=_secure(request), max_age=0)
    )
    return response
