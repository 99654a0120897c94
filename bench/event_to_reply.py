"""Event -> reply: from the agent-server's `finished` batch to the reply at the receiver.

Issue 8, target 2, with the agent answering at once (SUMMARY_MODE=final_response, a
fake agent-server and a webhook receiver on loopback): p50 at most 15 ms with one
conversation at a time, p99 at most 100 ms with 20 conversations finishing at once.

The real `agent-relay serve` (SQLite) gets its conversations through
POST /api/conversations with a webhook callback; once their start jobs have run, the
finish batch (FinishAction, its observation, execution_status finished, stats) is
POSTed to /agent/events/{id}, and the time runs from that POST to the receiver
getting the reply (the state-change job asks the agent-server for its final response,
closes the callback, queues the reply; the reply job delivers it). Every reply must
arrive once, completed, signed, with the agent's answer.

    .venv/bin/python bench/event_to_reply.py [--sequential 50] [--concurrent 20]
        [--rounds 10] [--record] [--label TEXT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

from harness import (
    AGENT_SESSION_KEY,
    API_TOKEN,
    HttpConnection,
    HttpResponse,
    Latency,
    Receiver,
    closed_loop,
    markdown_table,
    open_connections,
    parse_setting,
    record,
    relay_env,
    running,
    start_fake_peers,
    start_relay,
    wait_idle,
)
from payloads import (
    agent_events_request,
    start_conversation_request,
)

REPLY_WITHIN = 30.0  # seconds before a missing reply fails the run


async def register(port: int, receiver: Receiver, count: int) -> list[str]:
    """Start `count` conversations through the API; their ids, in order."""
    ids: dict[int, str] = {}
    failures: list[str] = []

    def keep(index: int, sent: float, answered: float, response: HttpResponse) -> None:
        if response.status != 201:
            failures.append(f"{response.status}: {response.body[:200]!r}")
        else:
            ids[index] = json.loads(response.body)["conversation_id"]

    await closed_loop(
        port,
        lambda index: start_conversation_request(receiver.url, index),
        connections=8,
        total=count,
        on_response=keep,
    )
    if failures:
        raise RuntimeError(f"registering conversations failed: {failures[0]}")
    return [ids[index] for index in range(count)]


async def finish(connection: HttpConnection, receiver: Receiver, conversation: str) -> float:
    """POST the finish batch; seconds until the reply arrived."""
    data = agent_events_request(conversation)
    waiter = receiver.expect(conversation)
    sent = time.monotonic()
    response = await connection.request(data)
    if not response.ok:
        raise RuntimeError(f"/agent/events answered {response.status}: {response.body[:200]!r}")
    arrived = await asyncio.wait_for(waiter, REPLY_WITHIN)
    return arrived - sent


async def main(args: argparse.Namespace) -> tuple[Latency, Latency, list[str]]:
    with tempfile.TemporaryDirectory(prefix="bench-event-to-reply-") as tmp:
        workdir = Path(tmp)
        peers = await start_fake_peers(workdir)
        receiver = await Receiver().start()
        database = workdir / "relay.db"
        env = relay_env(
            f"sqlite:///{database}",
            AGENT_SERVER_URL=peers.url,
            AGENT_SERVER_API_KEY=AGENT_SESSION_KEY,
            API_TOKEN=API_TOKEN,
            SUMMARY_MODE="final_response",
            **dict(args.setting or []),
        )
        relay = await start_relay(workdir, env)
        async with running(peers.service, relay.service):
            total = args.sequential + args.concurrent * args.rounds
            conversations = await register(relay.port, receiver, total)
            await wait_idle(database, within=120)
            sequential, concurrent = (
                conversations[: args.sequential],
                conversations[args.sequential :],
            )

            connection = await HttpConnection(relay.port).open()
            one_at_a_time = [
                await finish(connection, receiver, conversation) for conversation in sequential
            ]
            connection.close()

            pool = await open_connections(relay.port, args.concurrent)
            at_once: list[float] = []
            for round_number in range(args.rounds):
                batch = concurrent[
                    round_number * args.concurrent : (round_number + 1) * args.concurrent
                ]
                at_once += await asyncio.gather(
                    *(
                        finish(pooled, receiver, conversation)
                        for pooled, conversation in zip(pool, batch, strict=True)
                    )
                )
            for pooled in pool:
                pooled.close()
            await wait_idle(database, within=60)
            receiver.close()
            return Latency.of(one_at_a_time), Latency.of(at_once), receiver.problems(conversations)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequential", type=int, default=50, help="conversations, one at a time")
    parser.add_argument("--concurrent", type=int, default=20, help="conversations at once")
    parser.add_argument("--rounds", type=int, default=10, help="of --concurrent conversations")
    parser.add_argument(
        "--setting", type=parse_setting, action="append", help="a relay setting, NAME=VALUE"
    )
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    parser.add_argument("--label", help="added to the recorded heading")
    return parser.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    one, many, problems = asyncio.run(main(arguments))
    table = markdown_table(
        ["conversations", "n", "p50", "p99", "max", "target"],
        [
            ["one at a time", str(one.count), *one.row(), "p50 ≤ 15 ms"],
            [f"{arguments.concurrent} at once", str(many.count), *many.row(), "p99 ≤ 100 ms"],
        ],
    )
    print(table)
    verdict = "replies: all once, completed, signed" if not problems else "; ".join(problems)
    print(verdict)
    if arguments.record:
        record(
            "event_to_reply.py",
            "From POST /agent/events (finish batch) to the webhook receiver getting the reply;"
            " SUMMARY_MODE=final_response, fake agent-server and receiver on loopback, SQLite,"
            f" {arguments.rounds} rounds of {arguments.concurrent} at once.\n\n"
            + table
            + f"\n\n{verdict}.",
            label=arguments.label,
        )
    if problems:
        raise SystemExit(1)
