"""The local target: each environment is a detached `bentoml serve` on 127.0.0.1 (see
serving.py), replaced by a checked candidate, or put back as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..config import Paths
from ..serving import (
    clear_state,
    healthy,
    listening,
    read_state,
    start,
    start_on_free_port,
    stop,
)


def candidate(environment: str) -> str:
    """The state name of the candidate a deploy to `environment` checks before switching."""
    return f"{environment}.candidate"


def stop_candidate(paths: Paths, environment: str) -> None:
    """Stop the candidate of an interrupted deploy, if one was left, and forget it."""
    stop(read_state(paths, candidate(environment)))
    clear_state(paths, candidate(environment))


def replace(
    paths: Paths,
    environment: str,
    port: int,
    bento: str,
    verify: Callable[[str, bool], dict[str, Any]],
) -> dict[str, Any]:
    """Serve `bento` on `port` in place of what serves there, only if it passes `verify`.

    `verify(url, full)` raises when a check fails. The candidate is checked fully on a
    spare port while the old server keeps serving; only then does it take over the port
    and get checked again. If anything fails, the old bento serves again on `port`.
    Every server is recorded as soon as it starts, so an interrupted deploy leaves nothing
    that `down` or the next deploy cannot find.
    """
    stop_candidate(paths, environment)
    old = read_state(paths, environment)
    old_serving = old if healthy(old) else None
    if listening(port) and not (old_serving and old_serving.port == port):
        raise RuntimeError(
            f"port {port} on 127.0.0.1 is in use by a process this project did not start "
            f"for {environment}: stop it or change deploy.port in environments/{environment}.yaml"
        )
    checked = start_on_free_port(
        paths, bento, f"{environment}-candidate", record_as=candidate(environment)
    )
    try:
        checks = verify(checked.url, True)
    except BaseException:
        stop_candidate(paths, environment)
        raise
    # The two stops side by side: each mostly waits for BentoML's processes to exit.
    with ThreadPoolExecutor(1) as background:
        stopping = background.submit(stop_candidate, paths, environment)
        stop(old)
        stopping.result()
    try:
        new = start(paths, bento, port, environment, record_as=environment)
        try:
            checks["after_switch"] = verify(new.url, False)
        except BaseException:
            stop(new)
            raise
    except BaseException:
        put_back(paths, environment, port, old_serving.bento if old_serving else None)
        raise
    return checks


def put_back(paths: Paths, environment: str, port: int, bento: str | None) -> None:
    """Serve `bento` on `port` again (None: nothing) in place of what serves there now.

    For a switch that must be undone; the environment is dark only for a restart.
    """
    stop(read_state(paths, environment))
    if bento is None:
        clear_state(paths, environment)
        return
    start(paths, bento, port, environment, record_as=environment)
