"""LambdaInvoker: the poller starts worker invocations as asynchronous Lambda invokes (hexq.core.ports.Invoker).

Each trigger sends up to `cap` `Invoke(InvocationType="Event")` calls for the worker function, with the
payload `{"source": "hexq.poller"}` (hexq.functions.lambda_worker treats it as a direct invocation). An
async invoke only queues the event inside Lambda and returns 202, so nothing here waits for a worker.

`cap` bounds one tick, not the workers alive: this invoker cannot see how many earlier invocations
are still running. The real limit is the worker function's reserved concurrency (template.yaml,
`WorkerConcurrency`): Lambda holds events beyond it in its own queue and runs them as workers free up,
and the worker's EventInvokeConfig drops those that have waited too long. An extra invocation is
cheap anyway: with nothing to claim it returns after `idle_wait`.

boto3 is imported only when the first trigger creates the client, so importing this module (and the
poller's cold start) costs nothing; tests pass a stubbed client instead.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

log = logging.getLogger("hexq.invoker")

PAYLOAD = json.dumps({"source": "hexq.poller"}).encode()


class LambdaInvoker:
    def __init__(self, function_name: str, cap: int, *, client: Any = None) -> None:
        self._function_name = function_name
        self._cap = cap
        self._client = client

    async def trigger(self, n: int) -> int:
        count = max(0, min(n, self._cap))
        if count == 0:
            return 0
        # boto3 is blocking: the calls run in a thread so the poller's loop (and its backend) never stalls.
        return await asyncio.to_thread(self._invoke, count)

    def _invoke(self, count: int) -> int:
        from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

        client = self._lambda()
        for started in range(count):
            try:
                client.invoke(FunctionName=self._function_name, InvocationType="Event", Payload=PAYLOAD)
            except (BotoCoreError, ClientError) as exc:
                # Throttled, or the function is gone: the next tick asks again for what the backlog needs.
                log.warning("invoking %s failed after %d of %d: %s", self._function_name, started, count, exc)
                return started
        return count

    def _lambda(self) -> Any:
        if self._client is None:
            import boto3  # type: ignore[import-untyped]

            self._client = boto3.client("lambda")
        return self._client
