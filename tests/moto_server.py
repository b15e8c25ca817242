#!/usr/bin/env python3
"""Runs moto's server for the AWS adapter tests, with DynamoDB requests serialised.

moto evaluates a conditional write or a transaction in several steps without a lock, so two
concurrent requests can both pass a condition that DynamoDB would let only one pass. Real
DynamoDB makes every single-item write and every transaction atomic; serialising moto's DynamoDB
requests restores that guarantee, which is exactly what the contract tests rely on. SQS and SES
requests stay concurrent (an SQS long poll must not hold the others up).

Usage: moto_server.py -H 127.0.0.1 -p PORT
"""
import argparse
import os
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

parser = argparse.ArgumentParser()
parser.add_argument("-H", "--host", default="127.0.0.1")
parser.add_argument("-p", "--port", type=int, required=True)
args = parser.parse_args()
os.environ.setdefault("MOTO_PORT", str(args.port))

moto_app = DomainDispatcherApplication(create_backend_app)
dynamodb_lock = threading.Lock()


def app(environ, start_response):
    if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
        with dynamodb_lock:
            # Consume the whole response inside the lock: the write happens while it is produced.
            return list(moto_app(environ, start_response))
    return moto_app(environ, start_response)


run_simple(args.host, args.port, app, threaded=True, use_reloader=False)
