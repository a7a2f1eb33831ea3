#!/usr/bin/env python3
"""A stricter AWS in front of moto: where moto is lenient, answer as AWS documents.

moto merges duplicate tag keys, is strongly consistent, lets a role be assumed the instant
it exists, creates Lambda functions Active, and never throttles. AWS does none of these
(sources in each rule below). This proxy forwards every request to moto and, before or
after, applies the rules:

- duplicate tag keys in one request are refused (EC2: "Duplicate tag key 'Name'
  specified"; IAM case-insensitively);
- an EC2 id a Create call just returned answers NotFound the first time a later call
  names it (AWS, "Eventual consistency in the Amazon EC2 API": a Describe or Modify right
  after a Create may answer InvalidXxx.NotFound);
- a just-created role (or instance profile) cannot be assumed the first time Lambda, EC2,
  SageMaker or EventBridge Scheduler is handed it (IAM propagation);
- a flow log created with a just-created role delivers nothing: DescribeFlowLogs shows it
  FAILED with "Access error", and it stays so until it is deleted and created again (AWS
  re:Post and terraform-aws-modules/terraform-aws-vpc#1262: the flow-log service could not
  assume the role when it first tried);
- a function is Pending after CreateFunction until it has been polled once more, and
  every other action on it is refused meanwhile (Lambda, "Lambda function states":
  "Any invocations or other API actions that operate on the function will fail");
- throttling arrives in bursts of several consecutive answers (seeded);
- an e-mail (or SMS) subscription is never confirmed in a test, and AWS lists an
  unconfirmed one with the SubscriptionArn "PendingConfirmation" (ListSubscriptionsByTopic
  and ListSubscriptions; Subscribe with ReturnSubscriptionArn still answers its ARN);
- an instance being terminated or terminated cannot be modified: ModifyInstanceAttribute
  answers IncorrectInstanceState (as cloud-custodian#7598 meets it when it lifts
  termination protection before terminating);
- an instance type runs only in an Availability Zone that offers it (EC2: "Unsupported:
  Your requested instance type (t3.micro) is not supported in your requested
  Availability Zone (us-east-1e)"), and a subnet created without a zone is in the one AWS
  chose, which the proxy takes to be the worst: moto always picks the region's first
  zone, AWS does not say which it picks. The offerings are moto's own tables.

GET /strict-aws/stats answers what each rule did, so a test can show that it was met.
Requests without a SigV4 signature (moto's own /moto-api) pass untouched.

Usage: strict_aws.py --port P (0: any free one, printed) --moto http://127.0.0.1:M [--seed S] [--throttle-rate R]
"""

import argparse
import http.client
import json
import random
import re
import sys
import threading
import time
import traceback
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Which SDK protocol each service speaks (the error's shape depends on it).
EC2, QUERY, JSON, REST_JSON, REST_XML = "ec2", "query", "json", "rest-json", "rest-xml"
PROTOCOL = {
    "ec2": EC2,
    "iam": QUERY,
    "sns": QUERY,
    "sts": QUERY,
    "monitoring": QUERY,
    "logs": JSON,
    "events": JSON,
    "sagemaker": JSON,
    "ssm": JSON,
    "tagging": JSON,
    "sqs": JSON,
    "lambda": REST_JSON,
    "scheduler": REST_JSON,
    "s3": REST_XML,
}

# The id a Create call returns, by action: the element that names the new resource.
CREATED_ID = {
    "CreateVpc": r"<vpcId>(vpc-[0-9a-z]+)</vpcId>",
    "CreateSubnet": r"<subnetId>(subnet-[0-9a-z]+)</subnetId>",
    "CreateInternetGateway": r"<internetGatewayId>(igw-[0-9a-z]+)</internetGatewayId>",
    "CreateRouteTable": r"<routeTableId>(rtb-[0-9a-z]+)</routeTableId>",
    "CreateSecurityGroup": r"<groupId>(sg-[0-9a-z]+)</groupId>",
    "CreateNetworkAcl": r"<networkAclId>(acl-[0-9a-z]+)</networkAclId>",
    "RunInstances": r"<instanceId>(i-[0-9a-z]+)</instanceId>",
    "CreateSnapshot": r"<snapshotId>(snap-[0-9a-z]+)</snapshotId>",
    "CreateVolume": r"<volumeId>(vol-[0-9a-z]+)</volumeId>",
}

# The NotFound code EC2 gives for an id, by its prefix.
NOT_FOUND = {
    "vpc-": "InvalidVpcID.NotFound",
    "subnet-": "InvalidSubnetID.NotFound",
    "igw-": "InvalidInternetGatewayID.NotFound",
    "rtb-": "InvalidRouteTableID.NotFound",
    "sg-": "InvalidGroup.NotFound",
    "acl-": "InvalidNetworkAclID.NotFound",
    "i-": "InvalidInstanceID.NotFound",
    "snap-": "InvalidSnapshot.NotFound",
    "vol-": "InvalidVolume.NotFound",
}

# Lambda's REST paths that operate on one function, and the function's name in them.
FUNCTION_PATH = re.compile(r"^/\d{4}-\d{2}-\d{2}/functions/([^/?]+)(/[^?]*)?")

THROTTLE = {
    EC2: (503, "RequestLimitExceeded"),
    QUERY: (400, "Throttling"),
    JSON: (400, "ThrottlingException"),
    REST_JSON: (429, "TooManyRequestsException"),
    REST_XML: (503, "SlowDown"),
}


class Rules:
    """What the proxy remembers between requests, behind one lock."""

    def __init__(self, seed, throttle_rate):
        self.lock = threading.Lock()
        self.rng = random.Random(seed)
        self.throttle_rate = throttle_rate
        self.burst_left = 0
        self.fresh_ids = set()  # EC2 ids not yet named since their create
        self.fresh_roles = {}  # role or instance-profile ARN/name -> consumers not yet refused
        self.pending = {}  # function name -> polls left before it is Active
        self.subnet_zones = {}  # subnet id -> its zone, or None when AWS chose it
        self.access_error_flow_logs = set()  # flow logs created with an unpropagated role
        self.terminated = set()  # instances TerminateInstances named
        self.stats = {
            "requests": 0,
            "duplicate_tags_refused": 0,
            "not_found_after_create": 0,
            "role_not_assumable": 0,
            "function_pending_refused": 0,
            "function_pending_polls": 0,
            "throttled": 0,
            "throttle_bursts": 0,
            "zone_lacks_instance_type": 0,
            "flow_log_access_error": 0,
            "subscription_pending_confirmation": 0,
            "terminated_instance_not_modifiable": 0,
        }

    def count(self, key):
        self.stats[key] += 1


def zone_offerings(region):
    """Zone -> the instance types it offers, from moto's tables (the proxy runs in moto's
    environment); empty when moto has none for the region."""
    try:
        from moto.ec2.models.instance_types import INSTANCE_TYPE_OFFERINGS
    except ImportError:
        return {}
    zones = {}
    for o in INSTANCE_TYPE_OFFERINGS.get("availability-zone", {}).get(region, []):
        zones.setdefault(o["Location"], set()).add(o["InstanceType"])
    return zones


def region_of(headers):
    m = re.search(r"Credential=[^/]+/\d{8}/([^/]+)/", headers.get("Authorization", ""))
    return m.group(1) if m else "us-east-1"


def service_of(headers):
    auth = headers.get("Authorization", "")
    m = re.search(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request", auth)
    return m.group(1) if m else None


def error(protocol, status, code, message):
    """(status, headers, body) of an AWS error in the protocol's shape."""
    rid = str(uuid.uuid4())
    if protocol == EC2:
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{code}</Code>'
            f"<Message>{xml_escape(message)}</Message></Error></Errors><RequestID>{rid}</RequestID></Response>"
        )
        return status, {"Content-Type": "text/xml"}, body.encode()
    if protocol in (QUERY, REST_XML):
        if protocol == QUERY:
            body = (
                f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{xml_escape(message)}</Message>"
                f"</Error><RequestId>{rid}</RequestId></ErrorResponse>"
            )
        else:
            body = f"<Error><Code>{code}</Code><Message>{xml_escape(message)}</Message><RequestId>{rid}</RequestId></Error>"
        return status, {"Content-Type": "text/xml", "x-amzn-RequestId": rid}, body.encode()
    if protocol == JSON:
        body = json.dumps({"__type": code, "message": message})
        return status, {"Content-Type": "application/x-amz-json-1.1", "x-amzn-ErrorType": code, "x-amzn-RequestId": rid}, body.encode()
    body = json.dumps({"Type": "User", "Message": message, "message": message})
    return status, {"Content-Type": "application/json", "x-amzn-ErrorType": code, "x-amzn-RequestId": rid}, body.encode()


def log(message):
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def xml_escape(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def form_params(headers, body):
    if "x-www-form-urlencoded" not in headers.get("Content-Type", ""):
        return {}
    return dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def json_body(body):
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


def duplicate_tag(service, params, doc, body):
    """The first tag key one request names twice, if any."""
    fold = (lambda k: k.lower()) if service == "iam" else (lambda k: k)
    groups = {}
    for name, value in params.items():
        m = re.match(r"^(.*(?:Tag|Tags\.member|Tags))\.(\d+)\.Key$", name)
        if m:
            groups.setdefault(m.group(1), []).append(value)
    for keys in groups.values():
        seen = set()
        for k in keys:
            if fold(k) in seen:
                return k
            seen.add(fold(k))

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "Tags" and isinstance(v, list):
                    seen = set()
                    for t in v:
                        if isinstance(t, dict) and "Key" in t:
                            if t["Key"] in seen:
                                return t["Key"]
                            seen.add(t["Key"])
                found = walk(v)
                if found:
                    return found
        elif isinstance(node, list):
            for v in node:
                found = walk(v)
                if found:
                    return found
        return None

    found = walk(doc)
    if found:
        return found
    if service == "s3" and body and b"<TagSet>" in body:
        keys = re.findall(rb"<Key>([^<]*)</Key>", body)
        if len(keys) != len(set(keys)):
            return next(k for k in keys if keys.count(k) > 1).decode()
    return None


def lambda_action(method, path):
    """(action, function name) for a Lambda REST request."""
    if path.startswith("/2015-03-31/functions") and method == "POST" and FUNCTION_PATH.match(path) is None:
        return "CreateFunction", None
    m = FUNCTION_PATH.match(path)
    if not m:
        return None, None
    name = urllib.parse.unquote(m.group(1)).split(":")[-1]
    rest = m.group(2) or ""
    if method == "GET" and rest in ("", "/configuration"):
        return "GetFunction", name
    if method == "DELETE" and rest == "":
        return "DeleteFunction", name
    return f"{method} {rest or '/'}", name


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    rules = None
    moto = None

    def log_message(self, *args):
        pass

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def answer(self, status, headers, body):
        self.send_response(status)
        for k, v in headers.items():
            if k.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def forward(self, body):
        host = urllib.parse.urlparse(self.moto)
        conn = http.client.HTTPConnection(host.hostname, host.port, timeout=300)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "transfer-encoding", "content-length")}
        headers["Content-Length"] = str(len(body))
        conn.request(self.command, self.path, body=body, headers=headers)
        r = conn.getresponse()
        data = r.read()
        out = {k: v for k, v in r.getheaders()}
        conn.close()
        return r.status, out, data

    def handle_any(self):
        # An exception would close the connection without an answer, which the client
        # sees only as "connection closed before message completed": say what it was.
        try:
            self.serve()
        except (BrokenPipeError, ConnectionResetError):
            raise
        except Exception:
            log(f"{self.command} {self.path} failed:\n{traceback.format_exc()}")
            raise

    def reach_moto(self, protocol, body):
        """moto's answer, or AWS's 500 InternalError (which clients retry) when moto
        cannot be reached, with the reason logged."""
        try:
            return self.forward(body)
        except (OSError, http.client.HTTPException) as e:
            log(f"{self.command} {self.path}: moto at {self.moto} did not answer: {e!r}")
            return error(protocol, 500, "InternalError", f"the strict proxy could not reach moto at {self.moto}: {e!r}")

    def serve(self):
        body = self.read_body()
        if self.path == "/strict-aws/stats":
            with self.rules.lock:
                data = json.dumps(self.rules.stats, sort_keys=True).encode()
            return self.answer(200, {"Content-Type": "application/json"}, data)
        service = service_of(self.headers)
        protocol = PROTOCOL.get(service)
        if protocol is None:
            return self.answer(*self.reach_moto(QUERY, body))
        params = form_params(self.headers, body)
        doc = json_body(body) if protocol in (JSON, REST_JSON) else None
        action = params.get("Action") or (self.headers.get("X-Amz-Target", "").split(".")[-1] or None)
        function = None
        if service == "lambda":
            action, function = lambda_action(self.command, self.path.split("?")[0])
        rules = self.rules

        refusal = None
        with rules.lock:
            rules.count("requests")
            refusal = self.before(rules, service, protocol, action, function, params, doc, body)
        if refusal:
            return self.answer(*refusal)

        status, headers, data = self.reach_moto(protocol, body)
        if status < 300:
            with rules.lock:
                data = self.after(rules, service, action, function, params, doc, data)
        return self.answer(status, headers, data)

    def before(self, rules, service, protocol, action, function, params, doc, body):
        """An answer that replaces moto's, or None to forward."""
        # Throttling in bursts (not STS: cis asks it once, before anything else, and an
        # operator simply reruns a command that could not start).
        if service != "sts":
            if rules.burst_left == 0 and rules.rng.random() < rules.throttle_rate:
                rules.burst_left = rules.rng.randint(3, 6)
                rules.count("throttle_bursts")
            if rules.burst_left > 0:
                rules.burst_left -= 1
                rules.count("throttled")
                status, code = THROTTLE[protocol]
                return error(protocol, status, code, "Rate exceeded")

        dup = duplicate_tag(service, params, doc, body)
        if dup is not None:
            rules.count("duplicate_tags_refused")
            if protocol == EC2:
                return error(EC2, 400, "InvalidParameterValue", f"Duplicate tag key '{dup}' specified.")
            if service == "iam":
                return error(QUERY, 400, "InvalidInput", "Duplicate tag keys found. Please note that Tag keys are case insensitive.")
            if protocol == QUERY:
                return error(QUERY, 400, "InvalidParameter", f"Duplicate tag key '{dup}'")
            if protocol == REST_XML:
                return error(REST_XML, 400, "InvalidTag", "Cannot provide multiple Tags with the same key")
            return error(protocol, 400, "ValidationException", f"Duplicate tag key '{dup}'")

        if service == "ec2" and action == "TerminateInstances":
            rules.terminated.update(v for k, v in params.items() if re.match(r"InstanceId\.\d+$", k))
        if service == "ec2" and action == "ModifyInstanceAttribute" and params.get("InstanceId") in rules.terminated:
            rules.count("terminated_instance_not_modifiable")
            instance = params["InstanceId"]
            return error(EC2, 400, "IncorrectInstanceState", f"The instance '{instance}' is not in a state from which it can be modified.")

        # Deleting a just-created id is left alone: AWS's own retries of deletes are not
        # what this rule is about.
        if service == "ec2" and action and not action.startswith(("Delete", "Terminate")):
            for name, value in params.items():
                if value in rules.fresh_ids and re.search(r"Id(\.\d+)?$", name):
                    rules.fresh_ids.discard(value)
                    rules.count("not_found_after_create")
                    code = next(c for p, c in NOT_FOUND.items() if value.startswith(p))
                    return error(EC2, 400, code, f"The ID '{value}' does not exist")

        # A role handed to a service right after it was created.
        handed = None
        if service == "lambda" and action == "CreateFunction" and doc:
            handed = ("lambda", doc.get("Role"), 400, "InvalidParameterValueException", "The role defined for the function cannot be assumed by Lambda.")
        elif service == "ec2" and action == "RunInstances":
            profile = params.get("IamInstanceProfile.Arn") or params.get("IamInstanceProfile.Name")
            handed = ("ec2", profile, 400, "InvalidParameterValue", f"Value ({profile}) for parameter iamInstanceProfile.arn is invalid. Invalid IAM Instance Profile ARN")
        elif service == "sagemaker" and action in ("CreateTrainingJob", "CreateModel") and doc:
            role = doc.get("RoleArn") or doc.get("ExecutionRoleArn")
            handed = ("sagemaker", role, 400, "ValidationException", f"Could not assume role {role}. Please ensure that the role exists and allows principal 'sagemaker.amazonaws.com' to assume the role.")
        elif service == "scheduler" and self.command == "POST" and self.path.startswith("/schedules/") and doc:
            role = (doc.get("Target") or {}).get("RoleArn")
            handed = ("scheduler", role, 400, "ValidationException", "The execution role you provide must allow AWS EventBridge Scheduler to assume the role.")
        if handed and handed[1]:
            consumer, role, status, code, message = handed
            waiting = rules.fresh_roles.get(role)
            if waiting is not None and consumer in waiting:
                waiting.discard(consumer)
                rules.count("role_not_assumable")
                return error(protocol, status, code, message)

        if service == "ec2" and action == "RunInstances" and params.get("SubnetId") in rules.subnet_zones:
            instance_type = params.get("InstanceType", "m1.small")
            offerings = zone_offerings(region_of(self.headers))
            zone = rules.subnet_zones[params["SubnetId"]]
            lacking = sorted(z for z, types in offerings.items() if instance_type not in types)
            if zone is None and lacking:
                zone = lacking[-1]
            if zone is not None and offerings and instance_type not in offerings.get(zone, set()):
                rules.count("zone_lacks_instance_type")
                offered = ", ".join(sorted(z for z, types in offerings.items() if instance_type in types))
                return error(
                    EC2, 400, "Unsupported",
                    f"Your requested instance type ({instance_type}) is not supported in your requested Availability Zone ({zone}). "
                    f"Please retry your request by not specifying an Availability Zone or choosing {offered}.",
                )

        if service == "lambda" and function in rules.pending:
            # Reads and the delete pass; what changes or runs the function waits.
            if self.command != "GET" and action != "DeleteFunction":
                rules.count("function_pending_refused")
                return error(
                    REST_JSON, 409, "ResourceConflictException",
                    f"The operation cannot be performed at this time. The function is currently in the following state: Pending",
                )
        return None

    def after(self, rules, service, action, function, params, doc, data):
        """moto's successful answer, as AWS would give it; remembers what was created."""
        if service == "ec2" and action in CREATED_ID:
            text = data.decode("utf-8", "replace")
            ids = re.findall(CREATED_ID[action], text)
            rules.fresh_ids.update(ids if action == "RunInstances" else ids[:1])
        if service == "ec2" and action == "CreateFlowLogs":
            role = params.get("DeliverLogsPermissionArn")
            waiting = rules.fresh_roles.get(role)
            if waiting is not None and "flow-logs" in waiting:
                waiting.discard("flow-logs")
                created = re.findall(r"<item>(fl-[0-9a-z]+)</item>", data.decode("utf-8", "replace"))
                rules.access_error_flow_logs.update(created)
        if service == "ec2" and action == "DescribeFlowLogs" and params.get("FlowLogId.1") in rules.access_error_flow_logs:
            text = data.decode("utf-8", "replace")
            ok = "<deliverLogsStatus>SUCCESS</deliverLogsStatus>"
            if ok in text:
                rules.count("flow_log_access_error")
                failed = "<deliverLogsStatus>FAILED</deliverLogsStatus><deliverLogsErrorMessage>Access error</deliverLogsErrorMessage>"
                data = text.replace(ok, failed).encode()
        if service == "sns" and action in ("ListSubscriptionsByTopic", "ListSubscriptions"):
            def unconfirmed(m):
                member = m.group(0)
                if re.search(r"<Protocol>(email|email-json|sms)</Protocol>", member):
                    rules.count("subscription_pending_confirmation")
                    return re.sub(r"<SubscriptionArn>[^<]*</SubscriptionArn>", "<SubscriptionArn>PendingConfirmation</SubscriptionArn>", member)
                return member
            data = re.sub(r"<member>.*?</member>", unconfirmed, data.decode("utf-8", "replace"), flags=re.S).encode()
        if service == "ec2" and action == "CreateSubnet":
            created = re.search(CREATED_ID["CreateSubnet"], data.decode("utf-8", "replace"))
            if created:
                rules.subnet_zones[created.group(1)] = params.get("AvailabilityZone")
        if service == "iam" and action in ("CreateRole", "CreateInstanceProfile"):
            text = data.decode("utf-8", "replace")
            arn = re.search(r"<Arn>([^<]+)</Arn>", text)
            name = params.get("RoleName") or params.get("InstanceProfileName")
            consumers = {"lambda", "sagemaker", "scheduler", "flow-logs"} if action == "CreateRole" else {"ec2"}
            for key in filter(None, [arn.group(1) if arn else None, name]):
                rules.fresh_roles[key] = set(consumers)
        if service == "lambda" and action == "CreateFunction":
            out = json_body(data)
            if isinstance(out, dict) and out.get("FunctionName"):
                rules.pending[out["FunctionName"]] = 1
                out["State"] = "Pending"
                out["StateReasonCode"] = "Creating"
                data = json.dumps(out).encode()
        elif service == "lambda" and action == "GetFunction" and function in rules.pending:
            out = json_body(data)
            rules.count("function_pending_polls")
            if isinstance(out, dict):
                config = out.get("Configuration", out)
                config["State"] = "Pending"
                config["StateReasonCode"] = "Creating"
                data = json.dumps(out).encode()
            rules.pending[function] -= 1
            if rules.pending[function] <= 0:
                del rules.pending[function]
        return data

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = handle_any


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--moto", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--throttle-rate", type=float, default=0.01, help="chance that a request starts a burst of throttling")
    a = p.parse_args()
    Handler.rules = Rules(a.seed, a.throttle_rate)
    Handler.moto = a.moto
    server = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    server.daemon_threads = True
    # Port 0 lets the system choose; the line says which (the test reads it from here).
    print(f"strict AWS on 127.0.0.1:{server.server_address[1]} in front of {a.moto}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
