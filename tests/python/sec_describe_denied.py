"""DescribeUserScramCredentials refused to a user who is no super user, with
confluent-kafka's AdminClient: every named user comes back with
CLUSTER_AUTHORIZATION_FAILED (31) and the client process survives (an empty
result list made librdkafka abort with `free(): invalid size`).

Usage: sec_describe_denied.py BOOTSTRAP CA_FILE USER PASSWORD
"""

import sys

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from sec_common import OP_TIMEOUT, check, ck_conf, log

CLUSTER_AUTHORIZATION_FAILED = 31

bootstrap, ca, user, password = sys.argv[1:5]
admin = AdminClient(ck_conf(bootstrap, ca, user, password))
for users in (["bob"], ["bob", "carol"]):
    futs = admin.describe_user_scram_credentials(users, request_timeout=OP_TIMEOUT)
    check(sorted(futs) == sorted(users), f"futures for {sorted(futs)}, asked {users}")
    for name, fut in futs.items():
        try:
            got = fut.result(timeout=OP_TIMEOUT)
            check(False, f"describe {name} as {user} answered {got}")
        except KafkaException as e:
            code = e.args[0].code()
            check(code == CLUSTER_AUTHORIZATION_FAILED, f"describe {name}: code {code} ({e})")
            log(f"describe {name} as {user}: {e.args[0].name()} ({code})")
print("ALL OK")
