"""One distinctive secret planted in every place a secret can enter, real `scheduler serve`
and `scheduler worker` processes logging at DEBUG, a receiver that echoes the headers and
URL it got in its 401 and 500 answers; then every place a user or an operator reads is
searched: every API answer (tasks, lists, attempts, errors, config), every line the
processes wrote, and what the database holds.

Where a secret may legitimately rest: the webhook URL's credentials (userinfo, query) are
stored in webhook_url as given, since the callback needs them; nowhere else.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.fernet import Fernet

from scheduler_core.store.sqlite import sqlite_path
from tests.support.database import TestDatabase
from tests.support.processes import SchedulerProcess
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

AUTH_TOKEN = "AuthTok3n-q8Zr1"  # webhookAuth: Bearer <it>
BASIC_PASSWORD = "BasicPw-u5Kd7"  # webhookAuth: Basic base64(svc:<it>)
USERINFO_PASSWORD = "UserinfoPw-x3Vb2"  # http://user:<it>@host/...
QUERY_TOKEN = "QueryTok-m4Lp6"  # ...?token=<it>
API_KEY = "ApiKey-w7Tn3-scheduler"  # SCHEDULER_API_KEYS
DB_PASSWORD = "DbPassw0rd-k2Hs8"  # SCHEDULER_DATABASE_URL's password (PostgreSQL trusts)
ENCRYPTION_KEY = Fernet.generate_key().decode()  # SCHEDULER_ENCRYPTION_KEY
SIGNING_SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()  # SCHEDULER_SIGNING_SECRET

BASIC_AUTH = "Basic " + base64.b64encode(f"svc:{BASIC_PASSWORD}".encode()).decode()
USERINFO_BASIC = base64.b64encode(f"user:{USERINFO_PASSWORD}".encode()).decode()

# What may never be read, in each of its spellings, anywhere.
EVERYWHERE = {
    "webhookAuth": [AUTH_TOKEN, BASIC_AUTH.split()[1], BASIC_PASSWORD],
    "URL userinfo": [USERINFO_PASSWORD, USERINFO_BASIC],
    "query string": [QUERY_TOKEN],
    "API key": [API_KEY],
    "database password": [DB_PASSWORD],
    "encryption key": [ENCRYPTION_KEY, ENCRYPTION_KEY[:20]],
    "signing secret": [SIGNING_SECRET.removeprefix("whsec_")[:24]],
}
# Stored on purpose: the URL's own credentials, in webhook_url.
IN_WEBHOOK_URL = {"URL userinfo", "query string"}


class EchoReceiver:
    """Answers /ok... with 200, /e401... with 401 and anything else with 500, each time
    echoing back the request line and every header it got, as many receivers do."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str]]] = []
        lock = threading.Lock()
        calls = self.calls

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    calls.append((self.path, dict(self.headers.items())))
                status = 200 if self.path.startswith("/ok") else 500
                if self.path.startswith("/e401"):
                    status = 401
                # What was wrong first, as receivers put it: the credentials they got.
                echo = [
                    f"bad credentials {self.headers.get('Authorization')!r} for {self.path}",
                    *(f"{k}: {v}" for k, v in self.headers.items()),
                ]
                body = "\n".join(echo).encode("latin-1")
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str, userinfo: str = "") -> str:
        return f"http://{userinfo}127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def echo() -> Iterator[EchoReceiver]:
    receiver = EchoReceiver()
    yield receiver
    receiver.close()


def with_password(database_url: str) -> str:
    """The URL with DB_PASSWORD in it: PostgreSQL's trust authentication ignores it."""
    if not database_url.startswith("postgresql://"):
        return database_url
    scheme, _, rest = database_url.partition("://")
    userinfo, _, host = rest.partition("@")
    return f"{scheme}://{userinfo or 'postgres'}:{DB_PASSWORD}@{host}"


def find(text: str, kinds: set[str] | None = None) -> list[str]:
    """Which secrets `text` holds, as "kind: spelling" (letter case ignored)."""
    lowered = text.lower()
    return [
        f"{kind}: {spelling}"
        for kind, spellings in EVERYWHERE.items()
        if kinds is None or kind in kinds
        for spelling in spellings
        if spelling.lower() in lowered
    ]


class Api:
    """Every answer of the API, kept for the search."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {API_KEY}"
        self.answers: list[str] = []

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        response = self.session.request(method, self.base_url + path, timeout=15, **kwargs)
        self.answers.append(
            f"{method} {path} -> {response.status_code}\n{dict(response.headers)}\n{response.text}"
        )
        return response


def test_planted_secrets_show_nowhere(clean_database: str, db: TestDatabase, echo: EchoReceiver):
    database_url = with_password(clean_database)
    env = {
        "SCHEDULER_LOG_LEVEL": "DEBUG",
        "SCHEDULER_API_KEYS": API_KEY,
        "SCHEDULER_ENCRYPTION_KEY": ENCRYPTION_KEY,
        "SCHEDULER_SIGNING_SECRET": SIGNING_SECRET,
    }
    server = SchedulerProcess(["serve", "--port", "0"], database_url, env)
    worker = SchedulerProcess(["worker"], database_url, env)
    processes = [server, worker]
    try:
        api = Api(server.wait_listening(timeout=60))
        worker.wait_for_log("worker running", timeout=60)
        assert api.call("PATCH", "/api/v1/config", json={"retryBackoffMs": 0}).ok

        userinfo = f"user:{USERINFO_PASSWORD}@"
        query = f"?token={QUERY_TOKEN}&n=1"
        bearer = f"Bearer {AUTH_TOKEN}"
        tasks = [
            {"webhookUrl": echo.url("/e401"), "webhookAuth": bearer},
            {"webhookUrl": echo.url("/e500", userinfo)},  # sent as Basic by the client
            {"webhookUrl": echo.url("/e500" + query), "webhookAuth": bearer},
            {"webhookUrl": echo.url("/e401" + query, userinfo), "webhookAuth": bearer},
            {"webhookUrl": echo.url("/e401"), "webhookAuth": BASIC_AUTH},
            {"webhookUrl": echo.url("/ok" + query, userinfo), "webhookAuth": bearer},
            # Nobody listens on port 9: a failure without an answer.
            {"webhookUrl": f"http://{userinfo}127.0.0.1:9/x{query}", "webhookAuth": bearer},
        ]
        ids = []
        for task in tasks:
            response = api.call("POST", "/api/v1/tasks", json={**task, "maxRetries": 1})
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
        response = api.call("POST", "/api/v1/tasks", json=[{**t, "maxRetries": 0} for t in tasks])
        assert response.status_code == 201, response.text
        ids += [t["id"] for t in response.json()["tasks"]]
        later = {**tasks[3], "executeAt": "2099-01-01T00:00:00Z", "idempotencyKey": "later"}
        due_later = api.call("POST", "/api/v1/tasks", json=later)
        assert due_later.status_code == 201
        # The same again: an idempotent repeat answers with the stored task.
        assert api.call("POST", "/api/v1/tasks", json=later).status_code == 200

        # Refused requests that carry the secrets.
        bad = [
            {**tasks[3], "webhookUrl": f"ftp://{userinfo}example.com/x{query}"},
            {**tasks[3], "webhookUrl": f"http://{userinfo}127.0.0.1:notaport/x{query}"},
            {**tasks[3], "webhookUrl": f"http://user:[{USERINFO_PASSWORD}]@127.0.0.1/x"},
            {**tasks[3], "webhookAuth": bearer + "\n"},
            {**tasks[3], "maxRetries": "many"},
            {**tasks[3], "unknownField": QUERY_TOKEN},
        ]
        for body in bad:
            assert api.call("POST", "/api/v1/tasks", json=body).status_code == 400
        assert api.call("POST", "/api/v1/tasks", json=[tasks[0], bad[0]]).status_code == 400
        broken = f'{{"webhookUrl": "{echo.url("/x" + query, userinfo)}", "webhookAuth": "{bearer}'
        assert (
            api.call(
                "POST",
                "/api/v1/tasks",
                data=broken,
                headers={"Content-Type": "application/json"},
            ).status_code
            == 400
        )
        wrong_key = requests.get(
            f"{api.base_url}/api/v1/tasks", headers={"Authorization": "Bearer nope"}, timeout=15
        )
        api.answers.append(wrong_key.text + str(dict(wrong_key.headers)))
        assert wrong_key.status_code == 401

        def settled() -> bool:
            statuses = [api.call("GET", f"/api/v1/tasks/{i}").json()["status"] for i in ids]
            return all(s in ("stale", "resolved") for s in statuses)

        wait_until(settled, timeout=60, interval=0.2, message="for every task to settle")

        # Every read the API offers.
        for task_id in [*ids, due_later.json()["id"]]:
            api.call("GET", f"/api/v1/tasks/{task_id}")
            api.call("GET", f"/api/v1/tasks/{task_id}/attempts")
        for status in ("", "?status=stale", "?status=resolved", "?status=pending", "?limit=2"):
            api.call("GET", f"/api/v1/tasks{status}")
        api.call("POST", f"/api/v1/tasks/{ids[0]}/retry")
        api.call("DELETE", f"/api/v1/tasks/{ids[0]}")
        api.call("DELETE", f"/api/v1/tasks/{due_later.json()['id']}")
        api.call("GET", "/api/v1/config")
        api.call("GET", "/healthz")
        api.call("GET", "/readyz")
        api.call("GET", "/api/v1/tasks/not-a-task")

        # Facts that make the search worth something: the receiver got the secrets, it
        # echoed them, and lastError quotes the echo with them taken out.
        sent = json.dumps(echo.calls)
        assert AUTH_TOKEN in sent and USERINFO_BASIC in sent and QUERY_TOKEN in sent
        assert BASIC_AUTH in sent
        first = api.call("GET", f"/api/v1/tasks/{ids[0]}/attempts").json()["attempts"][0]
        assert first["error"].startswith("HTTP 401: bad credentials '[redacted]' for /e401")
        assert "[redacted]" in first["error"]
        third = api.call("GET", f"/api/v1/tasks/{ids[2]}").json()
        assert third["lastError"].startswith("HTTP 500")
        assert "[redacted]" in third["lastError"]
        assert third["webhookUrl"].endswith("/e500?token=***&n=***")
        database_files = stored_bytes(db) if db.dialect == "sqlite" else b""
    finally:
        for process in processes:
            process.stop()

    leaks = {}
    for number, answer in enumerate(api.answers):
        if find(answer):
            leaks[f"API answer {number}: {answer[:120]!r}"] = find(answer)
    for name, process in (("serve", server), ("worker", worker)):
        output = process.output
        assert " DEBUG " in output, "the processes log at DEBUG"
        for line in output.splitlines():
            if find(line):
                leaks[f"{name} log: {line[:200]}"] = find(line)
    assert "attempt=1 failed (HTTP 401" in server.output + worker.output

    # The database: no secret in any column but webhook_url; webhook_auth sealed.
    for table, row in database_rows(db):
        text = json.dumps({k: v for k, v in row.items() if k != "webhook_url"}, default=str)
        if find(text):
            leaks[f"{table} row {row.get('id') or row.get('task_id')}"] = find(text)
        if row.get("webhook_auth") is not None:
            assert str(row["webhook_auth"]).startswith("fernet:")
        if "webhook_url" in row:
            url_leaks = find(str(row["webhook_url"]), set(EVERYWHERE) - IN_WEBHOOK_URL)
            assert not url_leaks
    if db.dialect == "sqlite":  # the file's bytes, -wal included, while it ran and after
        files = database_files + stored_bytes(db)
        kinds = set(EVERYWHERE) - IN_WEBHOOK_URL
        assert not find(files.decode("latin-1"), kinds)

    assert not leaks, "\n".join(f"{where}: {what}" for where, what in leaks.items())


def database_rows(db: TestDatabase) -> Iterator[tuple[str, dict[str, Any]]]:
    for table in ("scheduler_tasks", "scheduler_attempts", "scheduler_config"):
        columns = [
            row[0]
            for row in db.sql(
                postgresql="SELECT column_name FROM information_schema.columns"
                " WHERE table_name = %s ORDER BY ordinal_position",
                sqlite="SELECT name FROM pragma_table_info(%s)",
                params=(table,),
            )
        ]
        for values in db.execute(f"SELECT {', '.join(columns)} FROM {table}"):
            yield table, dict(zip(columns, values, strict=True))


def stored_bytes(db: TestDatabase) -> bytes:
    path = Path(sqlite_path(db.url))
    data = b""
    for name in (path.name, path.name + "-wal", path.name + "-shm"):
        file = path.with_name(name)
        if file.exists():
            data += file.read_bytes()
    return data
