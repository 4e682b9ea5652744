"""Creates a topic with the confluent-kafka admin client, for tests whose
own client (kcat) cannot create topics.

Usage: create_topic.py BOOTSTRAP TOPIC PARTITIONS
"""

import sys

from confluent_kafka.admin import AdminClient, NewTopic


def main():
    bootstrap, topic, partitions = sys.argv[1], sys.argv[2], int(sys.argv[3])
    admin = AdminClient({"bootstrap.servers": bootstrap})
    fut = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)],
                              operation_timeout=60, request_timeout=60)[topic]
    # Raises (non-zero exit with the broker's error) if creation failed.
    fut.result(timeout=60)
    print(f"ok: created {topic} with {partitions} partitions", flush=True)


if __name__ == "__main__":
    main()
