"""The enqueue benchmark's baseline: `python -m benchmarks.noop_server`.

The same stack as `scheduler serve` (a Flask app served by waitress, with as many server
threads as serve's default `--threads`) doing nothing but what any JSON endpoint does:
`POST /api/v1/tasks` parses the body as JSON whatever its Content-Type (as the scheduler
does) and answers 201 with a small JSON object. No database, no validation. The bound
port is printed on stdout as `PORT <n>`.
"""

from __future__ import annotations

import argparse
import itertools
import signal
from types import FrameType
from typing import Any

import waitress
from flask import Flask, jsonify, request

THREADS = 8  # `scheduler serve --threads` default


def create_app() -> Flask:
    app = Flask("noop")
    counter = itertools.count(1)

    @app.post("/api/v1/tasks")
    def enqueue() -> Any:
        body = request.get_json(force=True)
        count = len(body) if isinstance(body, list) else 1
        return jsonify({"id": next(counter), "status": "pending", "count": count}), 201

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.noop_server", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--threads", type=int, default=THREADS)
    args = parser.parse_args(argv)
    server: Any = waitress.create_server(  # type: ignore[attr-defined]
        create_app(), host="127.0.0.1", port=args.port, threads=args.threads
    )
    print(f"PORT {server.effective_port}", flush=True)

    def stop(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


if __name__ == "__main__":
    main()
