#!/usr/bin/env python3
"""Writes the sample payloads of the KPI functions.

events/kpi-api/: API Gateway HTTP API (v2) requests to the admin routes, as API Gateway delivers
them after its IAM authoriser let the caller in (the request context names the IAM user); one
sample has no IAM context, as a route the template forgot to protect would deliver it.
events/kpi-rollup/: what EventBridge Scheduler hands the kpi-rollup function: the schedule's
Input as the whole event (the template's two schedules), and an EventBridge rule's envelope with
the same `kind` in `detail`.

Run it after changing a sample here; `tests/lambda_events.rs` feeds every file to its function.
"""
import json
import os

ROOT = os.path.dirname(os.path.abspath(__file__))
API = "a1b2c3d4e5"
HOST = f"{API}.execute-api.eu-central-1.amazonaws.com"
IAM = {
    "accessKey": "AKIAIOSFODNN7EXAMPLE",
    "accountId": "123456789012",
    "callerId": "AIDACKCEVSQ6C2EXAMPLE",
    "principalOrgId": None,
    "userArn": "arn:aws:iam::123456789012:user/marketing-analyst",
    "userId": "AIDACKCEVSQ6C2EXAMPLE",
}


def request(method, route, path, body=None, headers=None, query="", iam=True):
    all_headers = {"host": HOST, "user-agent": "aws-sdk-python/1.35 (sample)", "accept": "application/json"}
    all_headers.update(headers or {})
    context = {
        "accountId": "123456789012",
        "apiId": API,
        "domainName": HOST,
        "domainPrefix": API,
        "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "198.51.100.40",
                 "userAgent": all_headers["user-agent"]},
        "requestId": "KpIaXmPLvHcESHA=",
        "routeKey": f"{method} {route}",
        "stage": "$default",
        "time": "22/Nov/2026:10:00:00 +0000",
        "timeEpoch": 1795341600000,
    }
    if iam:
        context["authorizer"] = {"iam": IAM}
    event = {
        "version": "2.0",
        "routeKey": f"{method} {route}",
        "rawPath": path,
        "rawQueryString": query,
        "headers": all_headers,
        "requestContext": context,
        "isBase64Encoded": False,
    }
    if query:
        event["queryStringParameters"] = dict(p.split("=", 1) for p in query.split("&"))
    if body is not None:
        event["body"] = body
    return event


JSON = {"content-type": "application/json"}
CSV = {"content-type": "text/csv"}
ROWS = {"rows": [
    {"date": "2026-11-20", "channel": "paid_search", "campaign": "brand", "amount": 1250.5, "currency": "RUB"},
    {"date": "2026-11-20", "channel": "paid_social", "amount": 800, "currency": "RUB"},
]}
api_samples = {
    "spend-json.json": (200, request("POST", "/v1/spend", "/v1/spend", json.dumps(ROWS), JSON)),
    "spend-csv.json": (200, request("POST", "/v1/spend", "/v1/spend",
        "date,channel,campaign,amount,currency\n2026-11-21,paid_search,brand,990.00,RUB\n2026-11-21,email,,0,RUB\n",
        CSV)),
    "spend-invalid-rows.json": (400, request("POST", "/v1/spend", "/v1/spend", json.dumps({"rows": [
        {"date": "2026-11-20", "channel": "Paid Search!", "amount": -5, "currency": "RUB"}]}), JSON)),
    "spend-wrong-content-type.json": (415, request("POST", "/v1/spend", "/v1/spend", "rows", {"content-type": "text/plain"})),
    "spend-without-iam-context.json": (401, request("POST", "/v1/spend", "/v1/spend", json.dumps(ROWS), JSON, iam=False)),
    "kpi-by-channel.json": (200, request("GET", "/v1/kpi", "/v1/kpi", query="from=2026-11-01&to=2026-11-30&group_by=channel")),
    "kpi-csv.json": (200, request("GET", "/v1/kpi", "/v1/kpi", query="from=2026-11-01&to=2026-11-30&format=csv",
                                  headers={"accept": "text/csv"})),
    "kpi-bad-group-by.json": (400, request("GET", "/v1/kpi", "/v1/kpi", query="group_by=year")),
    "unknown-route.json": (404, request("GET", "$default", "/v1/kpis", None)),
}

os.makedirs(os.path.join(ROOT, "kpi-api"), exist_ok=True)
expectations = {}
for name, (status, event) in api_samples.items():
    expectations[name] = status
    with open(os.path.join(ROOT, "kpi-api", name), "w") as f:
        json.dump(event, f, indent=2, ensure_ascii=False)
        f.write("\n")
with open(os.path.join(ROOT, "kpi-api", "expectations.json"), "w") as f:
    json.dump(expectations, f, indent=2, sort_keys=True)
    f.write("\n")

# What each sample asks kpi_rollup::scheduled for.
schedule_samples = {
    "scheduled-hourly.json": ("hourly", {"kind": "hourly"}),
    "scheduled-nightly.json": ("nightly", {"kind": "nightly"}),
    "eventbridge-rule-nightly.json": ("nightly", {
        "version": "0",
        "id": "7bf73129-1428-4cd3-a780-95db273d1602",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-11-22T02:30:00Z",
        "region": "eu-central-1",
        "resources": ["arn:aws:events:eu-central-1:123456789012:rule/voronka-kpi-nightly"],
        "detail": {"kind": "nightly"},
    }),
}
os.makedirs(os.path.join(ROOT, "kpi-rollup"), exist_ok=True)
kinds = {}
for name, (kind, event) in schedule_samples.items():
    kinds[name] = kind
    with open(os.path.join(ROOT, "kpi-rollup", name), "w") as f:
        json.dump(event, f, indent=2)
        f.write("\n")
with open(os.path.join(ROOT, "kpi-rollup", "expectations.json"), "w") as f:
    json.dump(kinds, f, indent=2, sort_keys=True)
    f.write("\n")
