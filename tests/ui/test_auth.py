"""The dashboard's doors: no login without API keys, a login form with them, the cookie's
flags, the API's auth hook deciding, the Host check, and CSRF on every POST."""

from __future__ import annotations

from flask import Flask, Request

from scheduler_core.api import create_app
from scheduler_core.hookspecs import hookimpl
from scheduler_core.plugin_manager import PluginManager
from scheduler_core.settings import Settings
from scheduler_core.store import Store
from tests.api.helpers import FUTURE, NOWHERE
from tests.ui.conftest import API_KEY, Dashboard, csrf_of

PAGES = ("/ui/", "/ui/tasks", "/ui/tasks?status=stale", "/ui/attention", "/ui/config")


def pending_task(board: Dashboard) -> str:
    created = board.api("POST", "/api/v1/tasks", json={"webhookUrl": NOWHERE, "executeAt": FUTURE})
    assert created.status_code == 201, created.text
    task_id: str = created.json["id"]
    return task_id


def status_of(board: Dashboard, task_id: str) -> str:
    status: str = board.api("GET", f"/api/v1/tasks/{task_id}").json["status"]
    return status


def key_cookie(response) -> str:  # type: ignore[no-untyped-def]
    [cookie] = [c for c in response.headers.getlist("Set-Cookie") if "scheduler_ui_key=" in c]
    return str(cookie)


# -- without API keys -------------------------------------------------------------------


def test_without_api_keys_every_page_opens_and_there_is_no_login(client) -> None:  # type: ignore[no-untyped-def]
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.mimetype == "text/html"
        assert "Sign out" not in response.text

    assert client.get("/ui/login").status_code == 303
    assert client.get("/ui/login").headers["Location"] == "/ui/"


# -- with API keys ----------------------------------------------------------------------


def test_with_api_keys_every_page_sends_a_stranger_to_the_login_form(keyed_app: Flask) -> None:
    client = keyed_app.test_client()
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 303, path
        assert response.headers["Location"].startswith("/ui/login?next=%2Fui%2F")

    login = client.get(client.get("/ui/tasks").headers["Location"])
    assert login.status_code == 200
    assert 'type="password"' in login.text
    assert 'name="next" value="/ui/tasks"' in login.text
    assert "Stale &amp; failing" not in login.text  # no navigation before signing in


def test_a_bearer_header_is_not_a_dashboard_sign_in(keyed_app: Flask) -> None:
    # The dashboard reads its cookie; an Authorization header a browser may hold for
    # another reason does not sign it in (nor does it need to).
    client = keyed_app.test_client()
    response = client.get("/ui/", headers={"Authorization": f"Bearer {API_KEY}"})

    assert response.status_code == 303


def test_signing_in_sets_a_strict_httponly_cookie_for_ui_only(keyed_app: Flask) -> None:
    board = Dashboard(keyed_app.test_client())
    board.get("/ui/login")

    response = board.post("/ui/login", {"key": API_KEY, "next": "/ui/tasks?status=stale"})

    assert response.status_code == 303
    assert response.headers["Location"] == "/ui/tasks?status=stale"
    cookie = key_cookie(response)
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/ui" in cookie
    assert "Secure" not in cookie  # plain http: a Secure cookie would never come back
    assert board.get("/ui/tasks").status_code == 200


def test_over_https_the_cookie_is_secure(keyed_app: Flask) -> None:
    client = keyed_app.test_client()
    page = client.get("/ui/login", base_url="https://localhost")
    response = client.post(
        "/ui/login",
        data={"key": API_KEY, "csrf": csrf_of(page.text)},
        base_url="https://localhost",
    )

    assert response.status_code == 303
    assert "Secure" in key_cookie(response)


def test_a_wrong_key_shows_the_form_again_with_401_and_never_echoes_it(keyed_app: Flask) -> None:
    board = Dashboard(keyed_app.test_client())
    board.get("/ui/login")
    wrong = "not-the-key-<b>x</b>"

    response = board.post("/ui/login", {"key": wrong})

    assert response.status_code == 401
    assert "That key was not accepted." in response.text
    assert 'type="password"' in response.text
    assert "not-the-key" not in response.text
    assert not [c for c in response.headers.getlist("Set-Cookie") if "scheduler_ui_key=" in c]
    assert board.get("/ui/").status_code == 303


def test_a_key_with_punctuation_survives_the_cookie(settings: Settings, store: Store) -> None:
    key = 'k;e"y\\ x=1'  # SCHEDULER_API_KEYS allows any printable ASCII
    keyed = Settings(database_url=settings.database_url, load_entry_points=False, api_keys=(key,))
    app = create_app(
        keyed, store=store, plugins=PluginManager(keyed), test_config={"TESTING": True}
    )
    board = Dashboard(app.test_client())
    board.get("/ui/login")

    assert board.post("/ui/login", {"key": key}).status_code == 303
    assert board.get("/ui/tasks").status_code == 200


def test_the_key_never_appears_in_a_page(dashboard: Dashboard) -> None:
    task_id = pending_task(dashboard)
    for path in (*PAGES, f"/ui/tasks/{task_id}", "/ui/login"):
        response = dashboard.get(path)
        assert response.status_code in (200, 303), path
        assert API_KEY not in response.text, path


def test_signing_out_clears_the_cookie(dashboard: Dashboard) -> None:
    dashboard.get("/ui/")

    response = dashboard.post("/ui/logout")

    assert response.status_code == 303
    assert response.headers["Location"] == "/ui/login"
    cleared = key_cookie(response)
    assert "scheduler_ui_key=;" in cleared and "Path=/ui" in cleared
    assert dashboard.get("/ui/").status_code == 303


def test_next_never_leads_off_the_dashboard(keyed_app: Flask) -> None:
    for target in ("//evil.example/ui/", "https://evil.example/ui/", "/api/v1/tasks", "/ui\\x"):
        board = Dashboard(keyed_app.test_client())
        board.get("/ui/login")
        response = board.post("/ui/login", {"key": API_KEY, "next": target})
        assert response.headers["Location"] == "/ui/", target


class KeysFromAVault:
    """A third-party auth plugin: its own key, and nothing gets in without one, even
    with SCHEDULER_API_KEYS unset."""

    @hookimpl
    def scheduler_authorize(self, request: Request) -> bool | None:
        return request.headers.get("Authorization") == "Bearer vault-key"


def test_an_installed_auth_plugin_decides_for_the_dashboard(
    settings: Settings, store: Store
) -> None:
    app = create_app(
        settings,
        store=store,
        plugins=PluginManager(settings, extra_plugins=(KeysFromAVault(),)),
        test_config={"TESTING": True},
    )
    board = Dashboard(app.test_client())
    assert board.get("/ui/").status_code == 303  # no API keys, yet a login: the plugin says so
    board.get("/ui/login")

    assert board.post("/ui/login", {"key": API_KEY}).status_code == 401
    assert board.post("/ui/login", {"key": "vault-key"}).status_code == 303
    assert board.get("/ui/").status_code == 200


# -- Host check of an open server -------------------------------------------------------


def test_an_open_dashboard_refuses_a_foreign_host_name_as_the_api_does(client) -> None:  # type: ignore[no-untyped-def]
    rebound = client.get("/ui/", headers={"Host": "attacker.example"})
    assert rebound.status_code == 403
    assert "SCHEDULER_ALLOWED_HOSTS" in rebound.text
    assert client.get("/api/v1/tasks", headers={"Host": "attacker.example"}).status_code == 403
    assert client.get("/ui/", headers={"Host": "localhost:8080"}).status_code == 200


def test_with_api_keys_any_host_name_reaches_the_login(keyed_app: Flask) -> None:
    response = keyed_app.test_client().get("/ui/", headers={"Host": "scheduler.internal"})
    assert response.status_code == 303


# -- CSRF -------------------------------------------------------------------------------


def test_a_post_without_the_form_token_is_refused_and_changes_nothing(dashboard: Dashboard) -> None:
    task_id = pending_task(dashboard)

    missing = dashboard.client.post(f"/ui/tasks/{task_id}/cancel")
    wrong = dashboard.client.post(f"/ui/tasks/{task_id}/cancel", data={"csrf": "x" * 43})
    odd = dashboard.client.post(f"/ui/tasks/{task_id}/cancel", data={"csrf": "é\u2028"})

    assert missing.status_code == 403
    assert wrong.status_code == 403
    assert odd.status_code == 403
    assert "Nothing was changed" in wrong.text
    assert status_of(dashboard, task_id) == "pending"


def test_a_post_from_another_origin_is_refused_even_with_the_token(dashboard: Dashboard) -> None:
    task_id = pending_task(dashboard)
    dashboard.get("/ui/")
    for headers in (
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Referer": "http://evil.example/page"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ):
        response = dashboard.post(f"/ui/tasks/{task_id}/cancel", headers=headers)
        assert response.status_code == 403, headers
    assert status_of(dashboard, task_id) == "pending"

    same = dashboard.post(
        f"/ui/tasks/{task_id}/cancel",
        headers={"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"},
    )
    assert same.status_code == 303
    assert status_of(dashboard, task_id) == "cancelled"


def test_an_open_dashboard_refuses_a_cross_site_form_post(client) -> None:  # type: ignore[no-untyped-def]
    # No key to steal here: the token and the origin check are all that stop another
    # site's page from pressing the buttons.
    task_id = client.post("/api/v1/tasks", json={"webhookUrl": NOWHERE, "executeAt": FUTURE}).json[
        "id"
    ]

    response = client.post(
        f"/ui/tasks/{task_id}/cancel",
        data={"csrf": "guessed"},
        headers={"Origin": "http://evil.example"},
    )

    assert response.status_code == 403
    assert client.get(f"/api/v1/tasks/{task_id}").json["status"] == "pending"


def test_a_stranger_posting_with_a_token_is_sent_to_sign_in(keyed_app: Flask) -> None:
    board = Dashboard(keyed_app.test_client())
    board.get("/ui/login")
    api = Dashboard(keyed_app.test_client())
    task_id = pending_task(api)

    response = board.post(
        f"/ui/tasks/{task_id}/cancel", headers={"Referer": "http://localhost/ui/attention"}
    )

    assert response.status_code == 303
    assert response.headers["Location"] == "/ui/login?next=%2Fui%2Fattention"
    assert status_of(api, task_id) == "pending"


def test_pages_forbid_framing_and_foreign_scripts(dashboard: Dashboard) -> None:
    response = dashboard.get("/ui/")

    assert response.headers["X-Frame-Options"] == "DENY"
    policy = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy and "script-src 'self'" in policy
    assert response.headers["Cache-Control"] == "no-store"


def test_static_assets_need_no_sign_in(keyed_app: Flask) -> None:
    client = keyed_app.test_client()
    for path in ("/ui/static/ui.css", "/ui/static/ui.js", "/ui/static/vendor/uPlot.iife.min.js"):
        response = client.get(path)
        assert response.status_code == 200, path
        response.close()
