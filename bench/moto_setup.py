#!/usr/bin/env python3
"""Creates in a running moto server what the functions' environment names (infra/template.yaml):
the table with its index, the two queues with dead-letter queues, the two secrets and the SES
identity. Prints NAME=value lines for the harness.

Usage: moto_setup.py ENDPOINT
"""
import json
import sys

import boto3

endpoint = sys.argv[1]
session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="eu-central-1")
client = lambda service: session.client(service, endpoint_url=endpoint)

table = "voronka-bench"
ddb = client("dynamodb")
attribute = lambda name: {"AttributeName": name, "AttributeType": "S"}
ddb.create_table(
    TableName=table,
    BillingMode="PAY_PER_REQUEST",
    AttributeDefinitions=[attribute(n) for n in ("pk", "sk", "gsi1pk", "gsi1sk")],
    KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
    GlobalSecondaryIndexes=[
        {
            "IndexName": "gsi1",
            "KeySchema": [{"AttributeName": "gsi1pk", "KeyType": "HASH"}, {"AttributeName": "gsi1sk", "KeyType": "RANGE"}],
            "Projection": {"ProjectionType": "ALL"},
        }
    ],
)

sqs = client("sqs")
urls = {}
for name in ("events", "sends"):
    dlq = sqs.create_queue(QueueName=f"voronka-bench-{name}-dlq")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": "5"})
    urls[name] = (sqs.create_queue(QueueName=f"voronka-bench-{name}", Attributes={"RedrivePolicy": redrive})["QueueUrl"], dlq)

secrets = client("secretsmanager")
arns = {}
for name in ("token", "events"):
    key = (name * 16)[:48]
    arns[name] = secrets.create_secret(Name=f"voronka-bench-{name}", SecretString=json.dumps({"key": key}))["ARN"]

client("sesv2").create_email_identity(EmailIdentity="example.com")

print(f"TABLE_NAME={table}")
print(f"EVENTS_QUEUE_URL={urls['events'][0]}")
print(f"EVENTS_DLQ_URL={urls['events'][1]}")
print(f"SENDS_QUEUE_URL={urls['sends'][0]}")
print(f"SENDS_DLQ_URL={urls['sends'][1]}")
print(f"TOKEN_SECRET_ARN={arns['token']}")
print(f"EVENTS_SECRET_ARN={arns['events']}")
