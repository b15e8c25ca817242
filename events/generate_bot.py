#!/usr/bin/env python3
"""Writes the sample API Gateway HTTP API (v2) payloads for qualify-bot into qualify-bot/.

Run it after changing a sample here; `tests/lambda_events.rs` feeds every file to the Lambda
handler and checks the status listed in expectations.json. The answer samples name the session
`bs_000...01`, which the test stores before it sends them.
"""
import json
import os

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "qualify-bot")
API = "a1b2c3d4e5"
HOST = f"{API}.execute-api.eu-central-1.amazonaws.com"
SESSION = "bs_" + "0" * 31 + "1"


def request(method, route, path, body=None, headers=None, path_parameters=None, source_ip="198.51.100.23"):
    all_headers = {"host": HOST, "user-agent": "Mozilla/5.0 (sample)", "accept": "application/json"}
    all_headers.update(headers or {})
    event = {
        "version": "2.0",
        "routeKey": f"{method} {route}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": all_headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": API,
            "domainName": HOST,
            "domainPrefix": API,
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": source_ip,
                     "userAgent": all_headers["user-agent"]},
            "requestId": "JKJaXmPLvHcESHB=",
            "routeKey": f"{method} {route}",
            "stage": "$default",
            "time": "22/Nov/2026:10:00:00 +0000",
            "timeEpoch": 1795341600000,
        },
        "isBase64Encoded": False,
    }
    if path_parameters:
        event["pathParameters"] = path_parameters
    if body is not None:
        event["body"] = body
    return event


START = "/v1/bot/{script_id}/sessions"
ANSWER = "/v1/bot/sessions/{session_id}/answers"
JSON = {"content-type": "application/json", "origin": "https://shop.example"}
samples = {
    "session-start.json": (201, request("POST", START, "/v1/bot/b2b_demo/sessions",
        json.dumps({"locale": "en", "anonymous_id": "anon-7f3a", "page": "https://shop.example/pricing",
                    "referrer": "https://www.google.com/", "utm_source": "google", "utm_medium": "cpc",
                    "utm_campaign": "demo"}),
        JSON, path_parameters={"script_id": "b2b_demo"})),
    "session-start-preflight.json": (204, request("OPTIONS", START, "/v1/bot/b2b_demo/sessions", None,
        {"origin": "https://shop.example", "access-control-request-method": "POST",
         "access-control-request-headers": "content-type"}, path_parameters={"script_id": "b2b_demo"})),
    "session-start-unknown-script.json": (404, request("POST", START, "/v1/bot/no_such_bot/sessions",
        json.dumps({}), JSON, path_parameters={"script_id": "no_such_bot"})),
    "session-start-foreign-origin.json": (403, request("POST", START, "/v1/bot/b2b_demo/sessions",
        json.dumps({}), {"content-type": "application/json", "origin": "https://evil.example"},
        path_parameters={"script_id": "b2b_demo"})),
    "session-start-hostile-field.json": (400, request("POST", START, "/v1/bot/b2b_demo/sessions",
        json.dumps({"utm_source": ["a", "b"], "page": "x" * 3000}), JSON, path_parameters={"script_id": "b2b_demo"})),
    "answer-json.json": (200, request("POST", ANSWER, f"/v1/bot/sessions/{SESSION}/answers",
        json.dumps({"seq": 1, "value": "https://acme.example"}), JSON, path_parameters={"session_id": SESSION})),
    "answer-out-of-order.json": (409, request("POST", ANSWER, f"/v1/bot/sessions/{SESSION}/answers",
        json.dumps({"seq": 5, "value": "11-50"}), JSON, path_parameters={"session_id": SESSION})),
    "answer-preflight.json": (204, request("OPTIONS", ANSWER, f"/v1/bot/sessions/{SESSION}/answers", None,
        {"origin": "https://shop.example", "access-control-request-method": "POST",
         "access-control-request-headers": "content-type"}, path_parameters={"session_id": SESSION})),
    "answer-unknown-session.json": (404, request("POST", ANSWER, "/v1/bot/sessions/bs_guessed/answers",
        json.dumps({"seq": 1, "value": "x"}), JSON, path_parameters={"session_id": "bs_guessed"})),
    "answer-wrong-content-type.json": (415, request("POST", ANSWER, f"/v1/bot/sessions/{SESSION}/answers",
        "seq=1&value=x", {"content-type": "application/x-www-form-urlencoded", "origin": "https://shop.example"},
        path_parameters={"session_id": SESSION})),
}

os.makedirs(HERE, exist_ok=True)
expectations = {}
for name, (status, event) in samples.items():
    with open(os.path.join(HERE, name), "w") as f:
        json.dump(event, f, indent=2, ensure_ascii=False)
        f.write("\n")
    expectations[name] = status
with open(os.path.join(HERE, "expectations.json"), "w") as f:
    json.dump(expectations, f, indent=2, sort_keys=True)
    f.write("\n")
