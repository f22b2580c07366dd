"""Who may use the ui, and which writes are real: loopback by default, a token anywhere else, CSRF on POST.

- Bound to a loopback address, the ui trusts the machine's own users (like `simreel up`'s NATS port).
  Anywhere else it refuses to start without SIMREEL_UI_TOKEN, and then every request needs the token:
  `Authorization: Bearer <token>`, or once `/?token=<token>` has set an HttpOnly cookie (the page then
  never holds the token).
- Every write is a POST carrying `X-CSRF-Token` equal to the `simreel_csrf` cookie (double submit;
  SameSite=Strict), so another site cannot make a visitor's browser start or delete runs.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets

from aiohttp import web

from simreel.runtime.config import TokenRequired, check_bind, is_loopback

__all__ = ["TokenRequired", "check_bind", "is_loopback", "middleware"]

AUTH_COOKIE = "simreel_ui"
CSRF_COOKIE = "simreel_csrf"
CSRF_HEADER = "X-CSRF-Token"


def _cookie_value(token: str) -> str:
    # The cookie holds a digest, not the token itself.
    return hashlib.sha256(b"simreel-ui:" + token.encode()).hexdigest()


HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    # Videos may come from S3 (presigned URLs); everything else only from the ui itself.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; media-src 'self' https: http:; "
                               "style-src 'self'; script-src 'self'; frame-ancestors 'none'",
}


def middleware(token: str | None):
    @web.middleware
    async def guard(request: web.Request, handler):
        if token:
            bearer = request.headers.get("Authorization", "")
            given = request.query.get("token")
            ok = (hmac.compare_digest(bearer, f"Bearer {token}")
                  or hmac.compare_digest(request.cookies.get(AUTH_COOKIE, ""), _cookie_value(token)))
            if not ok and given is not None and hmac.compare_digest(given, token) and request.method == "GET":
                # Trade the token in the URL for a cookie, and drop it from the address bar.
                resp = web.HTTPFound(request.rel_url.with_query({k: v for k, v in request.query.items()
                                                                 if k != "token"}))
                resp.set_cookie(AUTH_COOKIE, _cookie_value(token), httponly=True, samesite="Strict")
                raise resp
            if not ok:
                return web.json_response({"error": "unauthorized: SIMREEL_UI_TOKEN required"}, status=401)
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            cookie = request.cookies.get(CSRF_COOKIE, "")
            header = request.headers.get(CSRF_HEADER, "")
            if not cookie or not hmac.compare_digest(cookie, header):
                return web.json_response({"error": "missing or wrong CSRF token"}, status=403)
        resp = await handler(request)
        for k, v in HEADERS.items():
            resp.headers.setdefault(k, v)
        if request.method == "GET" and CSRF_COOKIE not in request.cookies and not resp.prepared:
            resp.set_cookie(CSRF_COOKIE, secrets.token_urlsafe(24), samesite="Strict")
        return resp

    return guard
