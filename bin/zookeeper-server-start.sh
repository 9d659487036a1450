#!/usr/bin/env bash
# Kafka's zookeeper-server-start.sh, for tutorials written before KRaft: Potok keeps
# its cluster metadata itself, so there is nothing to start. One line, exit 0, so
# that the tutorial's next line (bin/kafka-server-start.sh) runs.
echo "Potok needs no ZooKeeper; nothing to start (bin/kafka-server-start.sh config/server.properties starts the broker)"
exit 0
