#!/usr/bin/env python3
"""Cold start harness: each Lambda function's release bootstrap against a minimal local Lambda
Runtime API, with DynamoDB, SQS and Secrets Manager in moto server and Partner Center, Dataverse
and DNS simulated by a running hunter-local.

Usage (from the repository root; `make cold-start` builds first and starts moto):
    scripts/with-moto.sh python3 scripts/cold-start.py [--runs 10] [--seed 300] [--secrets env]
    (it starts moto itself through scripts/with-moto.sh when HUNTER_MOTO_URL is unset)

For every run (round) it makes fresh resources in moto (table, both queues with DLQs, the
refresh-token secret) and starts each function once, cold, in the order of the data flow:
  fetch-referrals  an EventBridge Scheduler event: a real sync of the simulator's --seed
                   referrals (pages of 100) into the round's referrals queue;
  ingest-referral  an SQS event of ONE message taken from that queue (cold), then, warm, a
                   batch of 10 more (what the event source mapping sends: BatchSize 10);
  push-dynamics    an SQS event of ONE message from the dynamics-push queue ingest filled (cold),
                   then, warm, a batch of up to 10 more, upserted into the Dataverse simulator;
  pull-dynamics    an EventBridge Scheduler event: the first pull of the Dataverse simulator's
                   changes (every lead push-dynamics wrote) onto the round's leads (cold), then,
                   warm, the next pull (nothing changed);
  http-api         an API Gateway HTTP API (payload 2.0) event `GET /api/v1/health` (cold), then
                   warm the same.
A counting proxy between the functions and moto records every AWS call per invocation (DynamoDB
write/read request units from the items' sizes, index writes, SQS messages sent, how long moto
took): the inputs of docs/cost.md.
Measured from outside, per function and run: exec -> first `GET .../invocation/next` (ms),
the invocation's duration (the event handed over -> its response posted), peak RSS (VmHWM of
/proc/PID/status) after the first invocation and after the warm one, and the bytes the
function logged (stdout + stderr) per invocation. Medians over the runs go to a table on stdout
and to target/bench/cold-start.json (with every run's figures).

The binaries are the x86_64 release builds (`cargo build --release -p <function>`), not the
arm64 zips: this machine cannot run arm64. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN_DIR = os.path.join(ROOT, "target/release")
FUNCTIONS = ["fetch-referrals", "ingest-referral", "push-dynamics", "pull-dynamics", "http-api"]
# template.yaml's Timeout of each function: the deadline handed to the function.
TIMEOUTS = {"fetch-referrals": 120, "ingest-referral": 60, "push-dynamics": 60, "pull-dynamics": 120,
            "http-api": 29}
TARGET_FIRST_NEXT_MS = 30.0
TARGET_RSS_MB = 30.0
API_TOKEN = "cold-start-token"
REGION = "us-east-1"
ACCOUNT = "123456789012"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def now_ms() -> float:
    return time.monotonic_ns() / 1e6


# ------------------------------------------------------------------ AWS APIs (moto), stdlib only


class Moto:
    """The few DynamoDB, SQS and Secrets Manager calls the harness makes, as JSON protocol
    requests to moto server (which routes by the credential scope and checks no signature)."""

    CONTENT_TYPES = {"dynamodb": "1.0", "sqs": "1.0", "secretsmanager": "1.1"}
    PREFIXES = {"dynamodb": "DynamoDB_20120810", "sqs": "AmazonSQS", "secretsmanager": "secretsmanager"}

    def __init__(self, url: str):
        self.url = url.rstrip("/")

    def call(self, service: str, action: str, body: dict) -> dict:
        request = urllib.request.Request(
            self.url + "/",
            data=json.dumps(body).encode(),
            method="POST",
            headers={
                "Content-Type": f"application/x-amz-json-{self.CONTENT_TYPES[service]}",
                "X-Amz-Target": f"{self.PREFIXES[service]}.{action}",
                "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/"
                f"{REGION}/{service}/aws4_request, SignedHeaders=host, Signature=0",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as err:
            raise RuntimeError(f"moto {service}.{action}: {err.code} {err.read()[:500]!r}") from err
        return json.loads(text) if text else {}

    def create_table(self, name: str) -> None:
        """The table as template.yaml (and DynamoStore::ensure_table) makes it."""
        key = lambda n: [{"AttributeName": f"{n}pk", "KeyType": "HASH"},
                         {"AttributeName": f"{n}sk", "KeyType": "RANGE"}]
        self.call("dynamodb", "CreateTable", {
            "TableName": name,
            "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": key(""),
            "AttributeDefinitions": [{"AttributeName": a, "AttributeType": "S"} for a in
                                     ["pk", "sk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk"]],
            "GlobalSecondaryIndexes": [
                {"IndexName": g, "KeySchema": key(g), "Projection": {"ProjectionType": "ALL"}}
                for g in ("gsi1", "gsi2")
            ],
        })

    def create_queue(self, name: str) -> str:
        """`name` with its DLQ `<name>-dlq` (maxReceiveCount 5, visibility 360 s)."""
        dlq = self.call("sqs", "CreateQueue", {"QueueName": f"{name}-dlq"})["QueueUrl"]
        arn = self.call("sqs", "GetQueueAttributes",
                        {"QueueUrl": dlq, "AttributeNames": ["QueueArn"]})["Attributes"]["QueueArn"]
        policy = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": "5"})
        return self.call("sqs", "CreateQueue", {
            "QueueName": name,
            "Attributes": {"VisibilityTimeout": "360", "RedrivePolicy": policy},
        })["QueueUrl"]

    def receive(self, queue_url: str, count: int) -> list[dict]:
        """Up to `count` messages (several receives of at most 10)."""
        messages: list[dict] = []
        while len(messages) < count:
            answer = self.call("sqs", "ReceiveMessage", {
                "QueueUrl": queue_url,
                "MaxNumberOfMessages": min(10, count - len(messages)),
                "AttributeNames": ["All"],
                "MessageSystemAttributeNames": ["All"],
            })
            got = answer.get("Messages") or []
            if not got:
                break
            messages.extend(got)
        return messages

    def queue_depth(self, queue_url: str) -> int:
        attributes = self.call("sqs", "GetQueueAttributes", {
            "QueueUrl": queue_url, "AttributeNames": ["ApproximateNumberOfMessages"],
        })["Attributes"]
        return int(attributes.get("ApproximateNumberOfMessages", "0"))

    def create_secret(self, name: str, value: dict) -> str:
        return self.call("secretsmanager", "CreateSecret",
                         {"Name": name, "SecretString": json.dumps(value)})["ARN"]


# ------------------------------------------------------- a counting proxy in front of moto


class QuickHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with TCP_NODELAY: an answer goes out at once as one write. (Headers and body
    in two small writes meet the client's delayed ACK under Nagle's algorithm: +40 ms a call.)"""

    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args):  # quiet
        pass


def end_headers_with_body(handler: BaseHTTPRequestHandler, body: bytes) -> None:
    """end_headers() and the body in one write."""
    handler._headers_buffer.append(b"\r\n" + body)
    handler.flush_headers()


def ddb_size(value) -> int:
    """DynamoDB's size of an attribute value in its JSON wire form (AWS's documented rules:
    strings and binaries by length, numbers ~1 byte per 2 digits + 1, maps and lists 3 bytes +
    1 per element + their contents)."""
    (kind, v), = value.items()
    if kind == "S":
        return len(v.encode())
    if kind == "B":
        return len(v) * 3 // 4
    if kind == "N":
        return (len(v.strip("-").replace(".", "").lstrip("0")) + 1) // 2 + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + 1 + ddb_size(x) for k, x in v.items())
    if kind == "L":
        return 3 + sum(1 + ddb_size(x) for x in v)
    if kind == "SS":
        return sum(len(x.encode()) for x in v)
    if kind == "NS":
        return sum((len(x) + 1) // 2 + 1 for x in v)
    return len(json.dumps(v))


def item_size(item: dict) -> int:
    return sum(len(k.encode()) + ddb_size(v) for k, v in item.items())


class CountingProxy:
    """Forwards every AWS request of the functions to moto and counts them per phase (the
    function and invocation running): calls per service and action, DynamoDB write and read
    request units (on-demand: a write unit per 1 KB of item, two in a transaction; a strongly
    consistent read unit per 4 KB, half for an eventually consistent one), SQS messages sent."""

    def __init__(self, moto_url: str):
        self.target = urllib.parse.urlsplit(moto_url)
        self.phase = "setup"
        self.lock = threading.Lock()
        self.counts: dict[str, dict] = {}
        proxy = self

        class Handler(QuickHandler):

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                import http.client
                began = now_ms()
                conn = http.client.HTTPConnection(proxy.target.hostname, proxy.target.port, timeout=60)
                conn.connect()
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                waited = now_ms() - began
                try:  # counted before the function has its answer, so in the phase it belongs to
                    proxy.record(self.headers, body, response.status, data, waited)
                except Exception as err:  # counting must never break a call
                    log(f"proxy: cannot count a request: {err}")
                self.send_response(response.status)
                for k, v in response.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                end_headers_with_body(self, data)
                conn.close()

            do_GET = do_POST
            do_PUT = do_POST
            do_DELETE = do_POST

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def record(self, headers, body: bytes, status: int, answer: bytes, waited_ms: float) -> None:
        target = headers.get("X-Amz-Target", "")
        action = target.split(".")[-1] if target else "?"
        scope = re.search(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/", headers.get("Authorization", ""))
        service = scope.group(1) if scope else "?"
        request = json.loads(body) if body and body[:1] == b"{" else {}
        reply = json.loads(answer) if answer[:1] == b"{" else {}
        wru = rru = 0.0
        sent = 0
        writes: list[dict] = []  # DynamoDB items written: key prefixes, size, units
        def prefix(item: dict, name: str) -> str:
            value = item.get(name, {}).get("S", "")
            return value.split("#")[0] if value else ""
        if service == "dynamodb":
            kb = lambda n: max(1, -(-n // 1024))
            rcu = lambda n, consistent: max(1, -(-n // 4096)) * (1 if consistent else 0.5)
            if action == "PutItem":
                item = request.get("Item", {})
                wru = kb(item_size(item))
                writes.append({"op": "Put", "pk": prefix(item, "pk"), "sk": prefix(item, "sk"),
                               "bytes": item_size(item), "units": wru, "_attrs": list(item)})
            elif action == "UpdateItem":
                wru = 1
                key = request.get("Key", {})
                writes.append({"op": "Update", "pk": prefix(key, "pk"), "sk": prefix(key, "sk"),
                               "bytes": None, "units": 1})
            elif action == "DeleteItem":
                wru = 1  # small items: the larger of before and after is under 1 KB (see docs/cost.md)
            elif action == "TransactWriteItems":
                for entry in request.get("TransactItems", []):
                    put = entry.get("Put")
                    units = 2 * (kb(item_size(put["Item"])) if put else 1)
                    wru += units
                    (op, body_), = entry.items()
                    item = body_.get("Item") or body_.get("Key") or {}
                    writes.append({"op": f"Transact{op}", "pk": prefix(item, "pk"), "sk": prefix(item, "sk"),
                                   "bytes": item_size(item) if put else None, "units": units,
                                   "_attrs": list(item)})
            elif action == "GetItem":
                rru = rcu(item_size(reply.get("Item", {})), request.get("ConsistentRead", False))
            elif action == "Query":
                size = sum(item_size(i) for i in reply.get("Items", []))
                rru = rcu(size, request.get("ConsistentRead", False))
        elif service == "sqs":
            if action == "SendMessageBatch":
                sent = len(request.get("Entries", []))
            elif action == "SendMessage":
                sent = 1
        # Each write also writes the global secondary indexes whose keys the item carries
        # (projection ALL: the whole item, standard writes). Run items are in gsi1 (updates).
        gsi = 0.0
        for w in writes:
            if w["bytes"] is not None:
                w["gsi"] = sum(max(1, -(-w["bytes"] // 1024)) for g in ("gsi1pk", "gsi2pk")
                               if g in w.get("_attrs", ()))
            else:
                w["gsi"] = 1 if w["pk"] == "RUN" and w["sk"] == "RUN" else 0
            w.pop("_attrs", None)
            gsi += w["gsi"]
        key = f"{service}.{action}"
        with self.lock:
            phase = self.counts.setdefault(self.phase, {"calls": {}, "dynamodbWriteUnits": 0.0,
                                                         "dynamodbReadUnits": 0.0, "sqsMessagesSent": 0,
                                                         "errors": 0})
            phase["calls"][key] = phase["calls"].get(key, 0) + 1
            phase["dynamodbWriteUnits"] += wru
            phase["dynamodbReadUnits"] += rru
            phase["sqsMessagesSent"] += sent
            phase.setdefault("dynamodbWrites", []).extend(writes)
            phase["dynamodbGsiWriteUnits"] = phase.get("dynamodbGsiWriteUnits", 0.0) + gsi
            # Time moto took to answer (calls may overlap): what AWS latency would replace.
            phase["awsMs"] = round(phase.get("awsMs", 0.0) + waited_ms, 2)
            # When each call ended (ms, this clock) and how long moto took: gaps are the
            # function's own work or other I/O (DNS, HTTP).
            phase.setdefault("trace", []).append([round(now_ms(), 1), round(waited_ms, 1), key])
            if status >= 400:
                phase["errors"] += 1

    def set_phase(self, phase: str) -> None:
        with self.lock:
            self.phase = phase

    def take(self, phase: str) -> dict:
        with self.lock:
            return self.counts.pop(phase, {"calls": {}, "dynamodbWriteUnits": 0.0,
                                           "dynamodbReadUnits": 0.0, "dynamodbGsiWriteUnits": 0.0,
                                           "sqsMessagesSent": 0, "errors": 0})


def sqs_event(messages: list[dict], queue_url: str) -> dict:
    """The SQS event the event source mapping would build from `messages`."""
    arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue_url.rsplit('/', 1)[-1]}"
    return {"Records": [{
        "messageId": m["MessageId"],
        "receiptHandle": m["ReceiptHandle"],
        "body": m["Body"],
        "attributes": m.get("Attributes", {}),
        "messageAttributes": {},
        "md5OfBody": m.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": arn,
        "awsRegion": REGION,
    } for m in messages]}


def scheduled_event() -> dict:
    with open(os.path.join(ROOT, "tests/fixtures/events/eventbridge-scheduled.json")) as f:
        return json.load(f)


def health_event() -> dict:
    with open(os.path.join(ROOT, "tests/fixtures/events/apigw-http-health.json")) as f:
        event = json.load(f)
    event["requestContext"]["timeEpoch"] = int(time.time() * 1000)
    return event


# ------------------------------------------------------------------------ the Runtime API


class RuntimeApi:
    """A minimal Lambda Runtime API (2018-06-01) on loopback for one function process:
    invocations are handed out in order by `/invocation/next`; responses and errors are
    recorded with the time they arrived."""

    def __init__(self, function: str):
        self.function = function
        self.events: queue.Queue = queue.Queue()
        self.first_next_ms: float | None = None
        self.results: dict[str, dict] = {}
        self.done = threading.Condition()
        self.init_error: str | None = None
        api = self

        class Handler(QuickHandler):

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _answer(self, status: int, body: bytes = b"{}", headers: dict | None = None):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                end_headers_with_body(self, body)

            def do_GET(self):
                if self.path != "/2018-06-01/runtime/invocation/next":
                    return self._answer(404, b'{"errorMessage":"not found"}')
                at = now_ms()
                with api.done:
                    if api.first_next_ms is None:
                        api.first_next_ms = at
                    api.done.notify_all()
                request_id, event, timeout = api.events.get()
                if request_id is None:  # stop: the process is about to be killed
                    return
                body = json.dumps(event).encode()
                deadline = int(time.time() * 1000) + timeout * 1000
                arn = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{api.function}"
                with api.done:
                    api.results[request_id]["sent_ms"] = now_ms()
                self._answer(200, body, {
                    "Lambda-Runtime-Aws-Request-Id": request_id,
                    "Lambda-Runtime-Deadline-Ms": str(deadline),
                    "Lambda-Runtime-Invoked-Function-Arn": arn,
                    "Lambda-Runtime-Trace-Id": f"Root=1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]};Sampled=0",
                })

            def do_POST(self):
                body = self._body()
                at = now_ms()
                match = re.fullmatch(r"/2018-06-01/runtime/invocation/([^/]+)/(response|error)", self.path)
                if self.path == "/2018-06-01/runtime/init/error":
                    with api.done:
                        api.init_error = body.decode(errors="replace")
                        api.done.notify_all()
                    return self._answer(202, b'{"status":"OK"}')
                if not match:
                    return self._answer(404, b'{"errorMessage":"not found"}')
                request_id, kind = match.groups()
                self._answer(202, b'{"status":"OK"}')
                with api.done:
                    result = api.results.setdefault(request_id, {})
                    result.update(kind=kind, body=body.decode(errors="replace"), answered_ms=at)
                    api.done.notify_all()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def invoke(self, event: dict, timeout_s: int, wait_s: float) -> dict:
        """Hands `event` to the next `/next` and waits for its response or error."""
        request_id = str(uuid.uuid4())
        with self.done:
            self.results[request_id] = {}
        self.events.put((request_id, event, timeout_s))
        deadline = time.monotonic() + wait_s
        with self.done:
            while "kind" not in self.results[request_id]:
                if self.init_error is not None:
                    raise RuntimeError(f"{self.function}: init error {self.init_error}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"{self.function}: no answer within {wait_s} s")
                self.done.wait(left)
            return dict(self.results[request_id])

    def wait_first_next(self, proc: subprocess.Popen, wait_s: float) -> float:
        deadline = time.monotonic() + wait_s
        with self.done:
            while self.first_next_ms is None:
                if proc.poll() is not None:
                    raise RuntimeError(f"{self.function} exited with {proc.returncode} before /next")
                if self.init_error is not None:
                    raise RuntimeError(f"{self.function}: init error {self.init_error}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.function}: no /next within {wait_s} s")
                self.done.wait(0.05)
            return self.first_next_ms

    def close(self) -> None:
        for _ in range(4):  # release any /next still waiting
            self.events.put((None, None, 0))
        self.server.shutdown()
        self.server.server_close()


def cpu_ms(pid: int) -> float:
    """CPU time the process's threads have used so far (sum of /proc/PID/task/*/schedstat)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total / 1e6


def vm_hwm_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM")


# ----------------------------------------------------------------------------- hunter-local


class HunterLocal:
    """A running hunter-local whose built-in simulators the functions talk to."""

    def __init__(self, binary: str, seed: int, log_path: str):
        port = free_port()
        self.log = open(log_path, "w+")
        self.proc = subprocess.Popen(
            [binary, "--in-memory", "--seed", str(seed), "--sim-page-size", "100",
             "--sync-interval", "86400", "--port", str(port)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.log,
            env={**os.environ, "RUST_LOG": "info,hickory_server=warn", "HUNTER_API_TOKEN": API_TOKEN},
            cwd=ROOT,
        )
        found: dict[str, str] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(found) < 4:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hunter-local exited ({self.proc.returncode}); see {log_path}")
            self.log.seek(0)
            for line in self.log:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                event = record.get("event")
                if event == "partner_center_simulator_started":
                    found["pc"] = record["url"]
                elif event == "dataverse_simulator_started":
                    found["dv"] = record["url"]
                elif event == "dns_simulator_started":
                    found["dns"] = record["addr"]
                elif event == "local_sync_finished":
                    found["synced"] = record.get("status", "")
            time.sleep(0.1)
        if len(found) < 4:
            raise RuntimeError(f"hunter-local did not start its simulators; see {log_path}")
        self.pc, self.dv, self.dns = found["pc"], found["dv"], found["dns"]
        # hunter-local's own first sync ingests and pushes in the background; let it finish.
        time.sleep(2)

    def fresh_refresh_token(self) -> str:
        """A refresh token the Partner Center simulator accepts now (device code sign-in,
        approved through its control route): refresh tokens rotate, and hunter-local's own
        first sync used the initial one."""
        token_base = f"{self.pc}/sim-tenant/oauth2/v2.0"
        def post(url: str, form: dict | None) -> dict:
            data = urllib.parse.urlencode(form).encode() if form is not None else b""
            request = urllib.request.Request(url, data=data, method="POST")
            if form is not None:
                request.add_header("Content-Type", "application/x-www-form-urlencoded")
            with urllib.request.urlopen(request, timeout=10) as r:
                text = r.read().decode()
            return json.loads(text) if text.strip() else {}
        code = post(f"{token_base}/devicecode", {"client_id": "cold-start",
                                                 "scope": "https://api.partner.microsoft.com/.default offline_access"})
        post(f"{self.pc}/_sim/device/approve", None)
        answer = post(f"{token_base}/token", {
            "client_id": "cold-start",
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            "device_code": code["device_code"],
        })
        return answer["refresh_token"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# ------------------------------------------------------------------------------ one function


def run_function(function: str, env: dict, invocations: list[tuple[str, dict]], log_dir: str,
                 round_no: int, proxy: CountingProxy) -> dict:
    """Starts `function`'s bootstrap cold, serves it `invocations` ([(label, event)]) one
    after the other, and returns what was measured."""
    api = RuntimeApi(function)
    binary = os.path.join(BIN_DIR, function)
    out_path = os.path.join(log_dir, f"{function}-{round_no}.log")
    out = open(out_path, "wb")
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_LAMBDA_RUNTIME_API": api.address,
        "AWS_LAMBDA_FUNCTION_NAME": function,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{function}",
        "AWS_LAMBDA_LOG_STREAM_NAME": f"cold-start/{round_no}",
        "LAMBDA_TASK_ROOT": os.path.dirname(binary),
        "_HANDLER": "bootstrap",
        "TZ": ":UTC",
        **env,
    }
    result: dict = {"function": function, "round": round_no}
    proxy.set_phase(f"{function}/init")
    started = now_ms()
    proc = subprocess.Popen([binary], env=full_env, stdin=subprocess.DEVNULL, stdout=out,
                            stderr=subprocess.STDOUT, cwd=os.path.dirname(binary))
    try:
        first_next = api.wait_first_next(proc, 60)
        result["firstNextMs"] = round(first_next - started, 2)
        result["rssAtFirstNextMb"] = round(vm_hwm_kb(proc.pid) / 1024, 2)
        result["initCpuMs"] = round(cpu_ms(proc.pid), 2)
        result["initAws"] = proxy.take(f"{function}/init")
        for i, (label, event) in enumerate(invocations):
            proxy.set_phase(f"{function}/{label}")
            out.flush()
            logged_before = os.path.getsize(out_path)
            cpu_before = cpu_ms(proc.pid)
            answer = api.invoke(event, TIMEOUTS[function], TIMEOUTS[function] + 30)
            cpu_used = cpu_ms(proc.pid) - cpu_before
            # The runtime may still be writing its last log lines: a moment for them.
            time.sleep(0.05)
            logged = os.path.getsize(out_path) - logged_before
            entry = {
                "label": label,
                "durationMs": round(answer["answered_ms"] - answer["sent_ms"], 2),
                # CPU the function used for it (all threads, this x86_64 core at full speed).
                "cpuMs": round(cpu_used, 2),
                "peakRssMb": round(vm_hwm_kb(proc.pid) / 1024, 2),
                "kind": answer["kind"],
                "logBytes": logged,
                "answer": answer["body"][:2000],
                "aws": proxy.take(f"{function}/{label}"),
            }
            if answer["kind"] != "response":
                raise RuntimeError(f"{function} {label}: error {answer['body'][:1000]}")
            result.setdefault("invocations", []).append(entry)
        result["peakRssAfterFirstMb"] = result["invocations"][0]["peakRssMb"]
    finally:
        proc.kill()
        proc.wait()
        api.close()
        out.close()
    return result


# ----------------------------------------------------------------------------------- a round


def run_round(moto: Moto, proxy: CountingProxy, hunter: HunterLocal, round_no: int, secrets: str,
              log_dir: str, warm_batch: int) -> list[dict]:
    tag = f"cold-{os.getpid()}-{round_no}"
    table = tag
    moto.create_table(table)
    referrals_q = moto.create_queue(f"{tag}-referrals")
    push_q = moto.create_queue(f"{tag}-dynamics-push")
    token_secret = moto.create_secret(f"{tag}-pc-refresh-token", {"refreshToken": ""})
    credentials = {
        "HUNTER_PC_CLIENT_ID": "cold-start",
        "HUNTER_PC_CLIENT_SECRET": "",
        "HUNTER_PC_REFRESH_TOKEN": hunter.fresh_refresh_token(),
        "HUNTER_D365_CLIENT_ID": "sim-client-id",
        "HUNTER_D365_CLIENT_SECRET": "sim-client-secret",
        "HUNTER_D365_TENANT": "sim-tenant",
        "HUNTER_API_TOKEN": API_TOKEN,
    }
    base = {
        "AWS_ENDPOINT_URL": proxy.url,
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
        "HUNTER_TABLE": table,
        "HUNTER_REFERRALS_QUEUE_URL": referrals_q,
        "HUNTER_DYNAMICS_QUEUE_URL": push_q,
        "HUNTER_PARTNER_CENTER_URL": hunter.pc,
        "HUNTER_PARTNER_CENTER_TOKEN_URL": f"{hunter.pc}/sim-tenant/oauth2/v2.0/token",
        "HUNTER_DYNAMICS_URL": hunter.dv,
        "HUNTER_DYNAMICS_TOKEN_URL": f"{hunter.dv}/sim-tenant/oauth2/v2.0/token",
        "HUNTER_DNS_SERVER": hunter.dns,
        "HUNTER_MAX_RECEIVE_COUNT": "5",
    }
    if secrets == "secretsmanager":
        # As deployed: each function's own secret holds only the keys it reads.
        keys = {
            "fetch-referrals": ["HUNTER_PC_CLIENT_ID", "HUNTER_PC_CLIENT_SECRET", "HUNTER_PC_REFRESH_TOKEN"],
            "push-dynamics": ["HUNTER_D365_CLIENT_ID", "HUNTER_D365_CLIENT_SECRET", "HUNTER_D365_TENANT"],
            # http-api fetches the referral a webhook event names: Partner Center's app too.
            "http-api": ["HUNTER_API_TOKEN", "HUNTER_PC_CLIENT_ID", "HUNTER_PC_CLIENT_SECRET"],
        }
        per_function = {f: {"HUNTER_SECRET_ARN": moto.create_secret(
            f"{tag}-{f}", {k: credentials[k] for k in names})} for f, names in keys.items()}
        per_function["ingest-referral"] = {}
        # pull-dynamics reads push-dynamics' secret (the same Dataverse application user).
        per_function["pull-dynamics"] = per_function["push-dynamics"]
    else:
        # Credentials::load reads the HUNTER_* variables themselves when HUNTER_SECRET_ARN is unset.
        per_function = {f: dict(credentials) for f in FUNCTIONS}
    extra = {
        "fetch-referrals": {"HUNTER_PC_REFRESH_TOKEN_SECRET_ARN": token_secret},
        "ingest-referral": {},
        "push-dynamics": {"HUNTER_PC_WRITE_BACK": "false"},
        "pull-dynamics": {"HUNTER_MIRROR_CRM_OUTCOMES": "false"},
        "http-api": {"HUNTER_FETCH_FUNCTION": "fetch-referrals",
                     "HUNTER_PC_REFRESH_TOKEN_SECRET_ARN": token_secret},
    }
    env = lambda f: {**base, **per_function[f], **extra[f]}
    results = []

    fetched = run_function("fetch-referrals", env("fetch-referrals"),
                           [("scheduled", scheduled_event())], log_dir, round_no, proxy)
    summary = json.loads(fetched["invocations"][0]["answer"])
    fetched["invocations"][0]["summary"] = {k: summary.get(k) for k in ("status", "pages", "fetched", "enqueued")}
    if summary.get("status") not in ("succeeded", "Succeeded"):
        raise RuntimeError(f"fetch-referrals did not succeed: {summary}")
    results.append(fetched)

    messages = moto.receive(referrals_q, 1 + warm_batch)
    if len(messages) < 1 + warm_batch:
        raise RuntimeError(f"only {len(messages)} referral messages to ingest")
    ingested = run_function("ingest-referral", env("ingest-referral"), [
        ("1 message", sqs_event(messages[:1], referrals_q)),
        (f"{warm_batch} messages", sqs_event(messages[1:], referrals_q)),
    ], log_dir, round_no, proxy)
    for inv in ingested["invocations"]:
        if json.loads(inv["answer"]).get("batchItemFailures"):
            raise RuntimeError(f"ingest-referral reported failures: {inv['answer']}")
    results.append(ingested)

    pushes = moto.receive(push_q, 1 + warm_batch)
    if len(pushes) < 2:
        raise RuntimeError(f"only {len(pushes)} push messages")
    pushed = run_function("push-dynamics", env("push-dynamics"), [
        ("1 message", sqs_event(pushes[:1], push_q)),
        (f"{len(pushes) - 1} messages", sqs_event(pushes[1:], push_q)),
    ], log_dir, round_no, proxy)
    for inv in pushed["invocations"]:
        if json.loads(inv["answer"]).get("batchItemFailures"):
            raise RuntimeError(f"push-dynamics reported failures: {inv['answer']}")
    results.append(pushed)

    pulled = run_function("pull-dynamics", env("pull-dynamics"), [
        ("first pull", scheduled_event()),
        ("next pull (warm)", scheduled_event()),
    ], log_dir, round_no, proxy)
    first_pull = json.loads(pulled["invocations"][0]["answer"])
    if not first_pull.get("leadsUpdated"):
        raise RuntimeError(f"pull-dynamics pulled nothing back: {first_pull}")
    results.append(pulled)

    served = run_function("http-api", env("http-api"), [
        ("GET /api/v1/health", health_event()),
        ("GET /api/v1/health (warm)", health_event()),
    ], log_dir, round_no, proxy)
    status = json.loads(served["invocations"][0]["answer"]).get("statusCode")
    if status != 200:
        raise RuntimeError(f"http-api health answered {status}: {served['invocations'][0]['answer'][:500]}")
    results.append(served)
    return results


def median(values):
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 2) if values else None


def summarize(runs: list[dict]) -> list[dict]:
    rows = []
    for function in FUNCTIONS:
        mine = [r for r in runs if r["function"] == function]
        cold = [r["invocations"][0] for r in mine]
        warm = [r["invocations"][1] for r in mine if len(r["invocations"]) > 1]
        rows.append({
            "function": function,
            "runs": len(mine),
            "firstNextMsMedian": median([r["firstNextMs"] for r in mine]),
            "firstNextMsMin": min(r["firstNextMs"] for r in mine),
            "firstNextMsMax": max(r["firstNextMs"] for r in mine),
            "initAwsCallsMsMedian": median([r["initAws"].get("awsMs", 0.0) for r in mine]),
            # exec -> first /next less the time moto took to answer the init calls (AWS answers
            # them in a few ms; moto on a busy 2-core machine in 5-70).
            "firstNextLessMotoMsMedian": median([r["firstNextMs"] - r["initAws"].get("awsMs", 0.0) for r in mine]),
            "rssAtFirstNextMbMedian": median([r["rssAtFirstNextMb"] for r in mine]),
            "peakRssAfterFirstInvocationMbMedian": median([r["peakRssAfterFirstMb"] for r in mine]),
            "firstInvocation": cold[0]["label"],
            "initCpuMsMedian": median([r["initCpuMs"] for r in mine]),
            "firstInvocationMsMedian": median([c["durationMs"] for c in cold]),
            "firstInvocationCpuMsMedian": median([c["cpuMs"] for c in cold]),
            "firstInvocationLogBytesMedian": median([c["logBytes"] for c in cold]),
            "warmInvocation": warm[0]["label"] if warm else None,
            "warmInvocationMsMedian": median([w["durationMs"] for w in warm]),
            "warmInvocationCpuMsMedian": median([w["cpuMs"] for w in warm]),
            "warmInvocationLogBytesMedian": median([w["logBytes"] for w in warm]),
            "peakRssAfterWarmMbMedian": median([w["peakRssMb"] for w in warm]),
            "withinTargets": median([r["firstNextMs"] for r in mine]) <= TARGET_FIRST_NEXT_MS
            and median([r["peakRssAfterFirstMb"] for r in mine]) <= TARGET_RSS_MB,
            "withinTargetsLessMoto": median([r["firstNextMs"] - r["initAws"].get("awsMs", 0.0) for r in mine])
            <= TARGET_FIRST_NEXT_MS and median([r["peakRssAfterFirstMb"] for r in mine]) <= TARGET_RSS_MB,
        })
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"{'function':<16} {'1st /next ms':>18} {'of it moto':>10} {'less moto':>9} {'init CPU':>8} "
          f"{'RSS MB':>7} {'1st inv':>9} {'warm inv':>28} {'RSS MB':>7}  targets")
    print(f"{'':<16} {'median (min-max)':>18} {'ms':>10} {'ms':>9} {'ms':>8} {'after 1':>7} {'ms':>9} "
          f"{'ms (event)':>28} {'after 2':>7}  <= {TARGET_FIRST_NEXT_MS:g} ms, <= {TARGET_RSS_MB:g} MB")
    for r in rows:
        first = f"{r['firstNextMsMedian']:.1f} ({r['firstNextMsMin']:.1f}-{r['firstNextMsMax']:.1f})"
        warm = f"{r['warmInvocationMsMedian']:.1f} ({r['warmInvocation'].replace('GET /api/v1/', '')})" if r["warmInvocation"] else "-"
        print(f"{r['function']:<16} {first:>18} {r['initAwsCallsMsMedian']:>10.1f} "
              f"{r['firstNextLessMotoMsMedian']:>9.1f} {r['initCpuMsMedian']:>8.1f} "
              f"{r['peakRssAfterFirstInvocationMbMedian']:>7.1f} "
              f"{r['firstInvocationMsMedian']:>9.1f} {warm:>28} "
              f"{(r['peakRssAfterWarmMbMedian'] or 0):>7.1f}  {'ok' if r['withinTargets'] else 'OVER'}"
              f"{'' if r['withinTargets'] else (' (ok less moto)' if r['withinTargetsLessMoto'] else '')}")


def main() -> int:
    global BIN_DIR
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="cold starts per function (default 10)")
    parser.add_argument("--seed", type=int, default=300,
                        help="referrals the Partner Center simulator serves; each round's "
                             "fetch-referrals syncs all of them, 100 a page (default 300)")
    parser.add_argument("--secrets", choices=["env", "secretsmanager"], default="env",
                        help="credentials from HUNTER_* variables (default) or, as deployed, "
                             "from a Secrets Manager secret per function (HUNTER_SECRET_ARN)")
    parser.add_argument("--batch", type=int, default=10, help="messages of the warm SQS batch (default 10)")
    parser.add_argument("--bin-dir", default=BIN_DIR,
                        help="where the function binaries are (default target/release)")
    parser.add_argument("--hunter-local", default=None,
                        help="the hunter-local binary (default BIN_DIR/hunter-local)")
    parser.add_argument("--out", default=os.path.join(ROOT, "target/bench/cold-start.json"))
    args = parser.parse_args()

    BIN_DIR = os.path.abspath(args.bin_dir)
    args.hunter_local = args.hunter_local or os.path.join(BIN_DIR, "hunter-local")
    moto_url = os.environ.get("HUNTER_MOTO_URL")
    if not moto_url:
        # Start moto for the run: scripts/with-moto.sh sets HUNTER_MOTO_URL and stops it after.
        os.execv(os.path.join(ROOT, "scripts/with-moto.sh"),
                 [os.path.join(ROOT, "scripts/with-moto.sh"), sys.executable, *sys.argv])
    for f in FUNCTIONS + ["hunter-local"]:
        path = args.hunter_local if f == "hunter-local" else os.path.join(BIN_DIR, f)
        if not os.access(path, os.X_OK):
            log(f"cold-start: {path} is missing; run `cargo build --release -p {f}` (make cold-start does)")
            return 2

    log_dir = os.path.join(ROOT, "target/bench/cold-start-logs")
    os.makedirs(log_dir, exist_ok=True)
    moto = Moto(moto_url)
    proxy = CountingProxy(moto_url)
    hunter = HunterLocal(args.hunter_local, args.seed, os.path.join(log_dir, "hunter-local.log"))
    runs: list[dict] = []
    try:
        for round_no in range(1, args.runs + 1):
            log(f"cold-start: round {round_no}/{args.runs}")
            runs.extend(run_round(moto, proxy, hunter, round_no, args.secrets, log_dir, args.batch))
    finally:
        hunter.stop()

    rows = summarize(runs)
    report = {
        "generatedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"arch": platform.machine(), "cpus": os.cpu_count(), "kernel": platform.release()},
        "binaries": f"{os.path.relpath(BIN_DIR, ROOT)}/<function> (x86_64; target/release: fat LTO, 1 CGU, stripped)",
        "backends": "DynamoDB, SQS, Secrets Manager: moto server on loopback; Partner Center, "
                    "Dataverse, DNS: hunter-local's simulators on loopback",
        "secrets": args.secrets,
        "seed": args.seed,
        "targets": {"firstNextMs": TARGET_FIRST_NEXT_MS, "peakRssMb": TARGET_RSS_MB},
        "summary": rows,
        "runs": runs,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    print_table(rows)
    print(f"written: {os.path.relpath(args.out, ROOT)} (logs: {os.path.relpath(log_dir, ROOT)}/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
