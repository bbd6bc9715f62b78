"""racebench's locustfile: one FastHttpUser that sends the work items of a load profile.

Run it through `racebench bench`, or by hand (one machine, several cores):

    locust -f loadtests/locustfile.py --headless -H http://127.0.0.1:8000 -u 32 -r 32 -t 30s \
        --processes 2 --bench-profile verify --pool-first 1 --pool-size 100000 \
        --tally-dir /tmp/tally

or distributed, with Locust's own master and workers (the options travel from the master):

    locust -f loadtests/locustfile.py --master --expect-workers 4 --headless ... (as above)
    locust -f loadtests/locustfile.py --worker --master-host MASTER   # on each load machine

The pool must already be seeded (`loadtests.pool.seed`). Every process writes its exact
latencies and outcomes to `<tally-dir>/tally-<pid>.json`; `loadtests.tally` merges them.
Options can also come from the environment (RACEBENCH_PROFILE, RACEBENCH_POOL_FIRST, ...).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gevent
from locust import FastHttpUser, constant, events, task
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from racebench.harness.requests import Call
from racebench.harness.target.file import TargetSpec
from racebench.harness.target.file import load as load_target
from racebench.harness.target.load import TargetCalls, read_answer, read_pool
from racebench.loadtests.pool import DEFAULT_AMOUNT, Pool
from racebench.loadtests.profiles import PROFILE_NAMES, ItemSource, parse_profile
from racebench.loadtests.schedule import OpenSchedule, Pacer, corrected_latency_ms
from racebench.loadtests.tally import BUSY_STATUS, Tally
from racebench.reference_service.models import ANSWERED_OUTCOMES

# Connections one simulated client may hold: a contention item needs two at once.
CONNECTIONS_PER_USER = 2
# A request that takes longer than this is a failure (the service's own lock and statement
# timeouts are 5 s and 10 s, so an honest answer always comes sooner).
NETWORK_TIMEOUT_S = 30.0
MS_PER_S = 1_000.0


@events.init_command_line_parser.add_listener
def _add_options(parser: Any) -> None:
    group = parser.add_argument_group("racebench")
    group.add_argument(
        "--bench-profile",
        choices=PROFILE_NAMES,
        default="verify",
        env_var="RACEBENCH_PROFILE",
        help="racebench load profile",
    )
    group.add_argument(
        "--pool-first", type=int, default=1, env_var="RACEBENCH_POOL_FIRST",
        help="first payment id of the seeded pool",
    )  # fmt: skip
    group.add_argument(
        "--pool-size", type=int, default=1, env_var="RACEBENCH_POOL_SIZE",
        help="payments in the seeded pool",
    )  # fmt: skip
    group.add_argument(
        "--pool-amount", type=int, default=DEFAULT_AMOUNT, env_var="RACEBENCH_POOL_AMOUNT",
        help="amount of every pool payment (paise)",
    )  # fmt: skip
    group.add_argument(
        "--open-rate", type=float, default=0.0, env_var="RACEBENCH_RATE",
        help="open model: work items per second, all processes together (0: closed model)",
    )  # fmt: skip
    group.add_argument(
        "--hot-epoch", type=float, default=0.0, env_var="RACEBENCH_HOT_EPOCH",
        help="hot_row: epoch seconds at which the hot set starts moving (0: test start)",
    )  # fmt: skip
    group.add_argument(
        "--tally-dir", default="", env_var="RACEBENCH_TALLY_DIR",
        help="folder for each process's tally-<pid>.json",
    )  # fmt: skip
    group.add_argument(
        "--target-file", default="", env_var="RACEBENCH_TARGET_FILE",
        help="load a target (a target file) instead of the reference service",
    )  # fmt: skip
    group.add_argument(
        "--target-pool", default="", env_var="RACEBENCH_TARGET_POOL",
        help="a target's payments (pool.jsonl); with arms, each arm names its own",
    )  # fmt: skip


@dataclass
class ProcessState:
    """What this Locust process sends and what it saw."""

    source: ItemSource
    pacer: Pacer | None
    tally: Tally
    tally_dir: Path | None
    target: TargetSpec | None = None  # a target's answers are read with its file

    def observe(
        self,
        call: Call,
        *,
        intended: float | None,
        start_time: float,
        response_time: float,
        response: Any,
        exception: BaseException | None,
    ) -> None:
        """Classify one answer and record its latency (from the intended start, if paced)."""
        status = int(getattr(response, "status_code", 0) or 0)
        latency = response_time
        start = start_time
        if intended is not None:
            latency = corrected_latency_ms(
                intended_start=intended, actual_start=start_time, response_ms=response_time
            )
            start = min(intended, start_time)
        reading = _classify(call, status, response, exception, self.target)
        headers = getattr(response, "headers", None) if status else None
        retry_after = bool(headers is not None and headers.get("Retry-After"))
        self.tally.record(
            outcome=reading.outcome,
            latency_ms=latency,
            start=start,
            end=start_time + response_time / MS_PER_S,
            busy=reading.busy,
            failed=reading.failed,
            acked_event_id=reading.acked_event,
            acked_payment_id=reading.acked_payment,
            status=status,
            retry_after=retry_after,
        )


@dataclass(frozen=True)
class Classified:
    outcome: str
    busy: bool = False
    failed: bool = False
    acked_event: str | None = None  # a webhook delivery answered 2xx (WEBHOOK_LOST)
    acked_payment: int | None = None  # a capture answered 2xx: must be captured (the ledger)


def _classify(
    call: Call,
    status: int,
    response: Any,
    exception: BaseException | None,
    target: TargetSpec | None,
) -> Classified:
    """One answer: its outcome, and what it told the client."""
    if status == BUSY_STATUS:
        return Classified(f"{call.kind}:503", busy=True)
    if not 200 <= status < 300:
        return Classified(f"{call.kind}:{status or type(exception).__name__}", failed=True)
    content = response.content or b""
    if target is not None:
        reading = read_answer(target, call, content)
        return Classified(
            reading.outcome, acked_event=reading.acked_event, acked_payment=reading.acked_payment
        )
    if status != 200:
        return Classified(f"{call.kind}:{status}", failed=True)
    if call.kind == "verify":
        if b'"replayed":false' in content:
            return Classified("verify:captured", acked_payment=call.payment_id)
        if b'"replayed":true' in content:
            return Classified("verify:replayed", acked_payment=call.payment_id)
        return Classified("verify:bad_body", failed=True)
    try:
        answer = json.loads(content).get("status")
    except (ValueError, AttributeError):
        answer = None
    if answer not in ANSWERED_OUTCOMES:  # what a 2xx webhook answer may say
        return Classified("webhook:bad_body", failed=True, acked_event=call.event_id)
    return Classified(f"webhook:{answer}", acked_event=call.event_id)


STATE: ProcessState | None = None
"""The process's state with one arm (every user sends to --host)."""

ARMS_ENV = "RACEBENCH_ARMS"
"""Several services in one Locust run (bench --order concurrent): a JSON list of
{"label", "url", "tally_dir"}. Each arm gets a user class of its own, so the users are split
evenly among them, and one Locust process (one scheduler, one CPU budget) sends to all of them:
the load generator's own noise falls on every arm alike. Read at import, since user classes
must exist before Locust parses its options."""
ARMS: list[dict[str, str]] = json.loads(os.environ.get(ARMS_ENV) or "[]")
ARM_STATES: dict[str, ProcessState] = {}


def _process_position(environment: Environment) -> tuple[int, int]:
    """(index, count) of this process among the processes that send load."""
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        count = int(getattr(environment.parsed_options, "expect_workers", 1) or 1)
        return max(runner.worker_index, 0), count
    return 0, 1


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_: Any) -> None:
    global STATE
    if isinstance(environment.runner, MasterRunner):
        return  # the master sends no requests
    options = environment.parsed_options
    if options is None:
        raise RuntimeError("racebench's locustfile runs under the locust command, with options")
    index, count = _process_position(environment)
    pool = Pool(options.pool_first, options.pool_size, options.pool_amount)
    target = load_target(options.target_file) if options.target_file else None

    def source_of(pool_file: str) -> ItemSource:
        source = ItemSource(
            parse_profile(options.bench_profile),
            pool,
            process_index=index,
            processes=count,
            hot_epoch=options.hot_epoch or None,
        )
        if target is not None:  # a target's payments, by their index in its pool file
            payments = {int(p["index"]): p for p in read_pool(Path(pool_file))}
            source.calls = TargetCalls(target, payments)
        return source

    arms = max(1, len(ARMS))

    def pacer() -> Pacer | None:
        if options.open_rate <= 0:
            return None
        return Pacer(OpenSchedule(options.open_rate / arms, index, count))

    tally_dir = Path(options.tally_dir) if options.tally_dir else None
    if not ARMS:
        STATE = ProcessState(source_of(options.target_pool), pacer(), Tally(), tally_dir, target)
    for arm in ARMS:  # the same items, in the same order, for each arm's own database
        ARM_STATES[arm["label"]] = ProcessState(
            source_of(arm.get("pool_file", "")),
            pacer(),
            Tally(),
            Path(arm["tally_dir"]),
            target,
        )


@events.request.add_listener
def _on_request(
    context: dict[str, Any],
    start_time: float,
    response_time: float,
    response: Any = None,
    exception: BaseException | None = None,
    **_: Any,
) -> None:
    call = context.get("racebench_call")
    state = ARM_STATES.get(context.get("racebench_arm", ""), STATE)
    if state is None or call is None:
        return
    state.observe(
        call,
        intended=context.get("racebench_intended"),
        start_time=start_time,
        response_time=response_time,
        response=response,
        exception=exception,
    )


@events.test_stop.add_listener
def _on_test_stop(environment: Environment, **_: Any) -> None:
    for state in ARM_STATES.values() if ARMS else [STATE]:
        if state is None or state.tally_dir is None:
            continue
        state.tally.pool_wrapped = state.source.wrapped
        state.tally.write(state.tally_dir)


class PaymentTraffic(FastHttpUser):
    """Takes the next work item of the profile and sends its calls at the same moment."""

    abstract = bool(ARMS)  # with arms, each arm's subclass below sends instead
    arm = ""
    wait_time = constant(0)
    concurrency = CONNECTIONS_PER_USER
    network_timeout = NETWORK_TIMEOUT_S
    connection_timeout = NETWORK_TIMEOUT_S

    @task
    def send_item(self) -> None:
        state = ARM_STATES.get(self.arm, STATE)
        if state is None:
            return
        intended = state.pacer.next_start() if state.pacer is not None else None
        item = state.source.next_item()
        if len(item) == 1:
            self._send(item[0], intended)
            return
        if len({call.payment_id for call in item}) == 1:
            state.tally.contended += 1  # one payment, two requests at the same moment
        gevent.joinall([gevent.spawn(self._send, call, intended) for call in item])

    def _send(self, call: Call, intended: float | None) -> None:
        self.client.request(
            "POST",
            call.path,
            name=call.kind,
            data=call.body,  # type: ignore[arg-type]  # geventhttpclient sends bytes as they are
            headers=call.headers,
            context={
                "racebench_call": call,
                "racebench_intended": intended,
                "racebench_arm": self.arm,
            },
        )


for _i, _arm in enumerate(ARMS):  # one user class an arm: Locust splits the users evenly
    globals()[f"Arm{_i}Traffic"] = type(
        f"Arm{_i}Traffic", (PaymentTraffic,), {"host": _arm["url"], "arm": _arm["label"]}
    )
