#!/usr/bin/env python3
"""Writes the sample API Gateway HTTP API (v2) payloads for lead-capture.

Run it after changing a sample here; `tests/lambda_events.rs` feeds every file to the handler
and checks the status listed in expectations.json, so the samples cannot rot.
"""
import json
import os
from urllib.parse import urlencode

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lead-capture")
API = "a1b2c3d4e5"
HOST = f"{API}.execute-api.eu-central-1.amazonaws.com"


def request(method, route, path, body=None, headers=None, query="", path_parameters=None, source_ip="198.51.100.23"):
    all_headers = {"host": HOST, "user-agent": "Mozilla/5.0 (sample)", "accept": "application/json"}
    all_headers.update(headers or {})
    event = {
        "version": "2.0",
        "routeKey": f"{method} {route}",
        "rawPath": path,
        "rawQueryString": query,
        "headers": all_headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": API,
            "domainName": HOST,
            "domainPrefix": API,
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": source_ip,
                     "userAgent": all_headers["user-agent"]},
            "requestId": "JKJaXmPLvHcESHA=",
            "routeKey": f"{method} {route}",
            "stage": "$default",
            "time": "22/Nov/2026:10:00:00 +0000",
            "timeEpoch": 1795341600000,
        },
        "isBase64Encoded": False,
    }
    if query:
        event["queryStringParameters"] = dict(p.split("=", 1) for p in query.split("&"))
    if path_parameters:
        event["pathParameters"] = path_parameters
    if body is not None:
        event["body"] = body
    return event


SUBMIT = "/v1/forms/{form_id}/submissions"
samples = {
    "submission-json.json": (201, request("POST", SUBMIT, "/v1/forms/newsletter/submissions",
        json.dumps({"email": "anna.petrova@example.com", "first_name": "Anna", "consent": True,
                    "utm_source": "google", "utm_medium": "cpc", "utm_campaign": "brand",
                    "time_zone": "Europe/Moscow", "locale": "ru-RU", "anonymous_id": "anon-7f3a"}),
        {"content-type": "application/json"}, path_parameters={"form_id": "newsletter"})),
    "submission-html-form.json": (303, request("POST", SUBMIT, "/v1/forms/consultation/submissions",
        urlencode({"name": "Ivan Petrov", "email": "ivan@example.com", "phone": "+7 916 123-45-67",
                   "website": "ivan.example", "company_size": "11-50", "consent": "on"}),
        {"content-type": "application/x-www-form-urlencoded", "accept": "text/html,application/xhtml+xml"},
        path_parameters={"form_id": "consultation"})),
    "submission-invalid.json": (400, request("POST", SUBMIT, "/v1/forms/consultation/submissions",
        json.dumps({"name": "", "email": "not-an-email", "phone": "123"}),
        {"content-type": "application/json"}, path_parameters={"form_id": "consultation"})),
    "submission-unknown-form.json": (404, request("POST", SUBMIT, "/v1/forms/no-such-form/submissions",
        json.dumps({"email": "a@example.com"}), {"content-type": "application/json"},
        path_parameters={"form_id": "no-such-form"})),
    "submission-wrong-content-type.json": (415, request("POST", SUBMIT, "/v1/forms/newsletter/submissions",
        "email=a@example.com", {"content-type": "text/plain"}, path_parameters={"form_id": "newsletter"})),
    "submission-foreign-origin.json": (403, request("POST", SUBMIT, "/v1/forms/newsletter/submissions",
        json.dumps({"email": "a@example.com", "consent": True}),
        {"content-type": "application/json", "origin": "https://evil.example"}, path_parameters={"form_id": "newsletter"})),
    "events-browser-batch.json": (202, request("POST", "/v1/events", "/v1/events",
        json.dumps({"events": [
            {"event_id": "anon-7f3a:pv:1", "type": "page_view", "anonymous_id": "anon-7f3a",
             "properties": {"url": "https://shop.example/shoes"}},
            {"event_id": "anon-7f3a:cv:1", "type": "category_view", "anonymous_id": "anon-7f3a",
             "properties": {"category": "shoes"}},
            {"event_id": "anon-7f3a:atc:1", "type": "add_to_cart", "anonymous_id": "anon-7f3a",
             "properties": {"cart_id": "cart-1", "sku": "SH-42", "name": "Trail shoes", "price": 7990,
                            "quantity": 1, "currency": "RUB"}},
            {"event_id": "anon-7f3a:fake", "type": "purchase", "anonymous_id": "anon-7f3a",
             "properties": {"order_id": "o-1", "revenue": 1}}]}),
        {"content-type": "application/json", "origin": "https://shop.example"})),
    "events-bad-signature.json": (401, request("POST", "/v1/events", "/v1/events",
        json.dumps({"events": [{"event_id": "order-1001:purchase", "type": "purchase", "email": "anna.petrova@example.com",
                                "properties": {"order_id": "order-1001", "revenue": 7990, "currency": "RUB"}}]}),
        {"content-type": "application/json", "x-voronka-signature": "sha256=" + "0" * 64}, source_ip="203.0.113.10")),
    "events-oversized-batch.json": (400, request("POST", "/v1/events", "/v1/events",
        json.dumps({"events": [{"event_id": f"e-{i}", "type": "page_view", "anonymous_id": "anon-1"} for i in range(101)]}),
        {"content-type": "application/json"})),
    "confirm-invalid-token.json": (400, request("GET", "/v1/confirm", "/v1/confirm", None,
        {"accept": "text/html"}, query="token=tampered.token")),
    "form-describe.json": (200, request("GET", "/v1/forms/{form_id}", "/v1/forms/newsletter", None,
        {"origin": "https://shop.example"}, path_parameters={"form_id": "newsletter"})),
    "unknown-route.json": (404, request("GET", "$default", "/v2/nothing", None)),
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
