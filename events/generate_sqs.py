#!/usr/bin/env python3
"""Writes the sample SQS batches for sender and trigger-evaluator (Lambda SQS event format).

`tests/lambda_events.rs` feeds each through the same batch handler the Lambda runs.
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
REGION = "eu-central-1"


def record(n, body, queue):
    return {
        "messageId": f"0c2a7f3e-0000-4000-8000-00000000000{n}",
        "receiptHandle": f"AQEB-sample-receipt-{n}",
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1795341600000",
                       "SenderId": "AIDAIENQZJOLO23YVJ4VO", "ApproximateFirstReceiveTimestamp": "1795341600001"},
        "messageAttributes": {},
        "md5OfBody": "0" * 32,
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:123456789012:{queue}",
        "awsRegion": REGION,
    }


def send_request(key, contact, template, klass, priority, context):
    return json.dumps({
        "idempotency_key": key, "contact_id": contact, "template": template, "channel": "email",
        "class": klass, "priority": priority, "context": context,
        "origin": {"kind": "form", "form_id": "newsletter", "submission_id": "sub-1"} if klass == "transactional"
        else {"kind": "journey", "journey_id": "welcome", "step_id": "s1"},
        "requested_at": "2026-11-22T10:00:00Z",
    })


sends = {"Records": [
    record(1, send_request("optin:c_sample:cr_sub-1", "c_sample", "optin_confirmation", "transactional", "transactional",
                           {"confirm_url": "https://api.shop.example/v1/confirm?token=sample"}), "voronka-sends"),
    record(2, send_request("journey:welcome:c_sample:s1", "c_sample", "welcome", "marketing", "journey",
                           {"discount_percent": 10}), "voronka-sends"),
    record(3, "{not a send request", "voronka-sends"),
]}

mail = {"timestamp": "2026-11-22T10:00:00.000Z", "messageId": "0102018c-sample-0001", "source": "news@shop.example",
        "destination": ["anna.petrova@example.com"],
        "tags": {"contact_id": ["c_sample"], "template": ["welcome"], "ses:configuration-set": ["voronka"]}}
bounce = {"eventType": "Bounce", "mail": mail, "bounce": {"bounceType": "Permanent", "bounceSubType": "General",
          "bouncedRecipients": [{"emailAddress": "anna.petrova@example.com"}], "timestamp": "2026-11-22T10:00:03.000Z",
          "feedbackId": "0102018c-feedback-1"}}
complaint = {"eventType": "Complaint", "mail": mail, "complaint": {"complainedRecipients": [{"emailAddress": "anna.petrova@example.com"}],
             "timestamp": "2026-11-22T11:00:00.000Z", "feedbackId": "0102018c-feedback-2"}}
delivery = {"eventType": "Delivery", "mail": mail, "delivery": {"timestamp": "2026-11-22T10:00:02.000Z",
            "recipients": ["anna.petrova@example.com"], "smtpResponse": "250 ok"}}
click = {"eventType": "Click", "mail": mail, "click": {"timestamp": "2026-11-22T10:05:00.000Z", "link": "https://shop.example/",
         "ipAddress": "198.51.100.7", "userAgent": "Mozilla/5.0"}}
envelope = {"Type": "Notification", "MessageId": "sns-sample-1", "TopicArn": f"arn:aws:sns:{REGION}:123456789012:voronka-ses-feedback",
            "Message": json.dumps(delivery), "Timestamp": "2026-11-22T10:00:02.500Z"}
events = {"Records": [
    record(1, json.dumps(bounce), "voronka-events"),
    record(2, json.dumps(complaint), "voronka-events"),
    record(3, json.dumps(envelope), "voronka-events"),
    record(4, json.dumps(click), "voronka-events"),
    record(5, json.dumps({"event_id": "order-1001:purchase", "type": "purchase", "contact": {"email": "buyer@example.com"},
                          "occurred_at": "2026-11-22T12:00:00Z", "received_at": "2026-11-22T12:00:01Z",
                          "properties": {"order_id": "order-1001", "revenue": 7990, "currency": "RUB"}, "trusted": True}),
           "voronka-events"),
]}

# The Bounce and Complaint examples of the SES developer guide ("Examples of event data that Amazon
# SES publishes to Amazon SNS"), as SNS delivers them to SQS with raw message delivery. They carry
# only SES's own tags: mail the shop's other systems sent on the same identity, or a lost tag.
guide_headers = [
    {"name": "From", "value": "Sender Name <sender@example.com>"},
    {"name": "To", "value": "recipient@example.com"},
    {"name": "Subject", "value": "Message sent from Amazon SES"},
    {"name": "MIME-Version", "value": "1.0"},
    {"name": "Content-Type", "value": "multipart/alternative; boundary=\"----=_Part_7307378_1629847660.1516840721503\""},
]
guide_common_headers = {"from": ["Sender Name <sender@example.com>"], "to": ["recipient@example.com"],
                        "messageId": "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000",
                        "subject": "Message sent from Amazon SES"}
guide_tags = {"ses:configuration-set": ["ConfigSet"], "ses:source-ip": ["192.0.2.0"],
              "ses:from-domain": ["example.com"], "ses:caller-identity": ["ses_user"]}


def guide_mail(timestamp):
    return {"timestamp": timestamp, "source": "Sender Name <sender@example.com>",
            "sourceArn": "arn:aws:ses:us-east-1:123456789012:identity/sender@example.com",
            "sendingAccountId": "123456789012",
            "messageId": "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000",
            "destination": ["recipient@example.com"], "headersTruncated": False, "headers": guide_headers,
            "commonHeaders": guide_common_headers, "tags": guide_tags}


guide_bounce = {"eventType": "Bounce", "bounce": {
    "bounceType": "Permanent", "bounceSubType": "General",
    "bouncedRecipients": [{"emailAddress": "recipient@example.com", "action": "failed", "status": "5.1.1",
                           "diagnosticCode": "smtp; 550 5.1.1 user unknown"}],
    "timestamp": "2017-08-05T00:41:02.669Z",
    "feedbackId": "01000157c44f053b-61b59c11-9236-11e6-8f96-7be8aexample-000000",
    "reportingMTA": "dsn; mta.example.com"}, "mail": guide_mail("2017-08-05T00:40:02.012Z")}
guide_complaint = {"eventType": "Complaint", "complaint": {
    "feedbackId": "0100015e44e59883-3e5d25f1-3a9e-4b06-b1da-5b2e0b01dd3b-000000", "complaintSubType": None,
    "complainedRecipients": [{"emailAddress": "recipient@example.com"}],
    "timestamp": "2017-08-05T00:41:02.669Z",
    "userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/60.0.3112.90 Safari/537.36",
    "complaintFeedbackType": "abuse", "arrivalDate": "2017-08-05T00:41:02.669Z"},
    "mail": guide_mail("2017-08-05T00:40:01.123Z")}
untagged = {"Records": [
    record(1, json.dumps(guide_bounce), "voronka-events"),
    record(2, json.dumps(guide_complaint), "voronka-events"),
]}

cart = {"Records": [
    record(1, json.dumps({"event_id": "anon-7f3a:atc:1", "type": "add_to_cart", "contact": {"anonymous_id": "anon-7f3a"},
        "occurred_at": "2026-11-22T10:00:00Z", "received_at": "2026-11-22T10:00:01Z",
        "properties": {"cart_id": "cart-1001", "sku": "SH-42", "name": "Trail shoes", "price": 7990, "quantity": 1,
                       "currency": "RUB", "image": "https://shop.example/img/sh-42.jpg", "cart_url": "https://shop.example/cart/1001"},
        "trusted": False}), "voronka-events"),
    record(2, json.dumps({"event_id": "due:cart-idle:cart-1001:1", "type": "cart_idle", "contact": {"contact_id": "anon:anon-7f3a"},
        "occurred_at": "2026-11-22T11:00:00Z", "received_at": "2026-11-22T11:00:05Z",
        "properties": {"cart_id": "cart-1001", "activity": 1}, "trusted": True}), "voronka-events"),
]}

for folder, name, payload in [("sender", "sqs-send-requests.json", sends),
                              ("trigger-evaluator", "sqs-events-and-ses-feedback.json", events),
                              ("trigger-evaluator", "sqs-cart-events.json", cart),
                              ("trigger-evaluator", "sqs-ses-feedback-without-tags.json", untagged)]:
    os.makedirs(os.path.join(HERE, folder), exist_ok=True)
    with open(os.path.join(HERE, folder, name), "w") as f:
        json.dump(payload, f, indent=2, ensure_ascii=False)
        f.write("\n")
