"""The few HTML pages Bastion itself serves: sign-in, sign-out, and the app proxy's
access-denied and app-unavailable pages. Everything interpolated is escaped."""

from __future__ import annotations

from html import escape

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;background:#f5f6f8;
color:#1f2328;margin:0;display:flex;min-height:100vh;align-items:center;justify-content:center}
main{background:#fff;border:1px solid #d8dee4;border-radius:10px;padding:32px 36px;
width:min(420px,90vw);box-shadow:0 1px 3px rgba(0,0,0,.06)}
h1{font-size:20px;margin:0 0 6px}p{color:#57606a;line-height:1.5}
label{display:block;font-size:14px;margin:14px 0 6px}
input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:9px 10px;
border:1px solid #d0d7de;border-radius:6px;font-size:15px}
button{margin-top:20px;width:100%;padding:10px;border:0;border-radius:6px;background:#1f6feb;
color:#fff;font-size:15px;cursor:pointer}.error{color:#cf222e;font-size:14px}
.brand{font-weight:600;letter-spacing:.02em;color:#1f6feb;font-size:13px;margin-bottom:14px}
code{background:#f0f2f4;padding:1px 5px;border-radius:4px}
"""


def _page(title: str, body: str, *, refresh_s: int | None = None) -> str:
    refresh = f'<meta http-equiv="refresh" content="{refresh_s}">' if refresh_s else ""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"{refresh}<title>{escape(title)} · Bastion</title><style>{_STYLE}</style></head>"
        f"<body><main><div class=brand>BASTION</div>{body}</main></body></html>"
    )


def login_page(next_path: str, csrf: str, error: str | None = None, user: str = "") -> str:
    message = f"<p class=error role=alert>{escape(error)}</p>" if error else ""
    return _page(
        "Sign in",
        "<h1>Sign in</h1><p>Sign in to continue to Bastion.</p>"
        f"{message}<form method=post action=/login>"
        f'<input type=hidden name=csrf value="{escape(csrf)}">'
        f'<input type=hidden name=next value="{escape(next_path)}">'
        "<label for=username>User name</label>"
        f'<input id=username name=username type=text autocomplete=username value="{escape(user)}"'
        " required autofocus>"
        "<label for=password>Password</label>"
        "<input id=password name=password type=password autocomplete=current-password required>"
        "<button type=submit>Sign in</button></form>",
    )


def logout_page(csrf: str, user: str | None) -> str:
    who = f"You are signed in as <b>{escape(user)}</b>." if user else "You are not signed in."
    return _page(
        "Sign out",
        f"<h1>Sign out</h1><p>{who}</p><form method=post action=/logout>"
        f'<input type=hidden name=csrf value="{escape(csrf)}">'
        "<button type=submit>Sign out</button></form>",
    )


def message_page(title: str, text: str, *, refresh_s: int | None = None) -> str:
    return _page(title, f"<h1>{escape(title)}</h1><p>{escape(text)}</p>", refresh_s=refresh_s)
