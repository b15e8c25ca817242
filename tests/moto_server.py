#!/usr/bin/env python3
"""Runs moto's server for the AWS adapter tests, with DynamoDB requests serialised.

moto evaluates a conditional write or a transaction in several steps without a lock, so two
concurrent requests can both pass a condition that DynamoDB would let only one pass. Real
DynamoDB makes every single-item write and every transaction atomic; serialising moto's DynamoDB
requests restores that guarantee, which is exactly what the contract tests rely on. SQS and SES
requests stay concurrent (an SQS long poll must not hold the others up).

Two test-only routes serve tests/demo_moto.rs, which runs the demo's simulation over the AWS
adapters; both are inert until a test calls them:
- POST /_voronka/sqs/clock with {"now": <epoch seconds>}: SQS's clock (visibility timeouts,
  delays, retention) runs on from that time, as the embedded queue runs on the simulation's clock.
  Until then SQS keeps the real time.
- GET /_voronka/ses/raw-messages: every raw message SES took (moto's documented
  `ses_backend.sent_messages`), without `/moto-api/data.json`'s dump of every model of every
  service, which takes minutes once a table holds a few thousand items.
- GET /_voronka/sqs/bodies?queue=<name>: the bodies of every message a queue holds, waiting, in
  flight or delayed, in the order sent. SQS has no API that lists messages without receiving them
  (a receive counts towards maxReceiveCount and, near it, moves the message to the DLQ), and
  in-flight or delayed messages cannot be received at all.

Usage: moto_server.py -H 127.0.0.1 -p PORT
"""
import argparse
import json
import os
import threading
import time
from urllib.parse import parse_qs

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

parser = argparse.ArgumentParser()
parser.add_argument("-H", "--host", default="127.0.0.1")
parser.add_argument("-p", "--port", type=int, required=True)
args = parser.parse_args()
os.environ.setdefault("MOTO_PORT", str(args.port))

moto_app = DomainDispatcherApplication(create_backend_app)
dynamodb_lock = threading.Lock()

import copy  # noqa: E402
import types  # noqa: E402

import moto.dynamodb.models as dynamodb_models  # noqa: E402
import moto.ses.models as ses_models  # noqa: E402
import moto.sqs.models as sqs_models  # noqa: E402
from moto.core import DEFAULT_ACCOUNT_ID  # noqa: E402
from moto.dynamodb.models.dynamo_type import DynamoType  # noqa: E402
from moto.dynamodb.models.table import Table  # noqa: E402

# moto backs up a transaction's table by deep-copying all of it, once per operation, so each
# transaction costs the size of the whole table and a run of a few thousand items slows to a
# crawl. Instead only the items the transaction names are saved and put back if it fails: the
# same all-or-nothing result (DynamoDB requests are serialised above, so nothing else writes
# meanwhile).
dynamodb_models.copy = types.SimpleNamespace(
    deepcopy=lambda value, memo=None: value if isinstance(value, Table) else copy.deepcopy(value, memo)
)
moto_transact_write_items = dynamodb_models.DynamoDBBackend.transact_write_items


def transact_write_items(self, transact_items):
    saved = []
    for entry in transact_items:
        _, op = next(iter(entry.items()))
        table = self.tables.get(op.get("TableName"))
        key = op.get("Key") or op.get("Item")
        if table is None or not key or table.hash_key_attr not in key:
            continue
        hash_value = DynamoType(key[table.hash_key_attr])
        range_value = DynamoType(key[table.range_key_attr]) if table.range_key_attr in key else None
        if range_value is None:
            existing = table.items.get(hash_value)
        else:
            existing = table.items.get(hash_value, {}).get(range_value)
        saved.append((table, hash_value, range_value, None if existing is None else copy.deepcopy(existing)))
    try:
        return moto_transact_write_items(self, transact_items)
    except Exception:
        for table, hash_value, range_value, item in reversed(saved):
            if range_value is None:
                if item is None:
                    table.items.pop(hash_value, None)
                else:
                    table.items[hash_value] = item
            elif item is None:
                table.items.get(hash_value, {}).pop(range_value, None)
            else:
                table.items[hash_value][range_value] = item
        raise


dynamodb_models.DynamoDBBackend.transact_write_items = transact_write_items

# Seconds added to the real time on SQS's clock (POST /_voronka/sqs/clock).
sqs_clock_offset = [0.0]


def sqs_unix_time(dt=None):
    return time.time() + sqs_clock_offset[0] if dt is None else real_unix_time(dt)


real_unix_time = sqs_models.unix_time
sqs_models.unix_time = sqs_unix_time
sqs_models.unix_time_millis = lambda dt=None: sqs_unix_time(dt) * 1000.0


def answer(start_response, status, value):
    body = json.dumps(value).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def test_route(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/_voronka/sqs/clock" and environ.get("REQUEST_METHOD") == "POST":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        now = float(json.loads(environ["wsgi.input"].read(length))["now"])
        sqs_clock_offset[0] = now - time.time()
        return answer(start_response, "200 OK", {"now": now})
    if path == "/_voronka/ses/raw-messages":
        messages = []
        for account in ses_models.ses_backends.values():
            for backend in account.values():
                messages.extend(
                    {"id": m.id, "raw_data": m.raw_data} for m in backend.sent_messages if hasattr(m, "raw_data")
                )
        return answer(start_response, "200 OK", messages)
    if path == "/_voronka/sqs/bodies":
        name = parse_qs(environ.get("QUERY_STRING", "")).get("queue", [""])[0]
        for region in sqs_models.sqs_backends[DEFAULT_ACCOUNT_ID].keys():
            queue = sqs_models.sqs_backends[DEFAULT_ACCOUNT_ID][region].queues.get(name)
            if queue is not None:
                return answer(start_response, "200 OK", [m.body for m in list(queue._messages)])
        return answer(start_response, "404 Not Found", {"error": f"no queue {name}"})
    return answer(start_response, "404 Not Found", {"error": f"no test route {path}"})


def app(environ, start_response):
    if environ.get("PATH_INFO", "").startswith("/_voronka/"):
        return test_route(environ, start_response)
    if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
        with dynamodb_lock:
            # Consume the whole response inside the lock: the write happens while it is produced.
            return list(moto_app(environ, start_response))
    return moto_app(environ, start_response)


run_simple(args.host, args.port, app, threaded=True, use_reloader=False)
