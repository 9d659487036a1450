#!/usr/bin/env bash
# Kafka's zookeeper-server-stop.sh: Potok runs no ZooKeeper, so there is nothing to stop.
echo "Potok needs no ZooKeeper; nothing to stop"
exit 0
