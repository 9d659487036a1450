// kafkajs against a potok broker: admin createTopics / fetchTopicMetadata /
// fetchTopicOffsets and an acks=-1 producer. Consuming needs a consumer group
// in kafkajs, so tests/test_other_clients.py reads the records back itself.
//
//   node roundtrip.js BOOTSTRAP TOPIC COUNT
//
// Prints one JSON object on stdout: what each call returned.
'use strict';

const { Kafka, logLevel } = require('kafkajs');

async function main() {
  const [bootstrap, topic, countArg] = process.argv.slice(2);
  const count = Number(countArg);
  if (!bootstrap || !topic || !(count > 0)) {
    throw new Error('usage: node roundtrip.js BOOTSTRAP TOPIC COUNT');
  }
  const kafka = new Kafka({
    clientId: 'potok-e2e-kafkajs',
    brokers: [bootstrap],
    logLevel: logLevel.WARN,
    retry: { retries: 3 },
  });
  const out = {};

  const admin = kafka.admin();
  await admin.connect();
  try {
    out.created = await admin.createTopics({
      topics: [{ topic, numPartitions: 2, replicationFactor: 1 }],
      waitForLeaders: true,
    });
    out.createdAgain = await admin.createTopics({ topics: [{ topic, numPartitions: 2 }] });
    const md = await admin.fetchTopicMetadata({ topics: [topic] });
    out.metadata = md.topics.map((t) => ({
      name: t.name,
      partitions: t.partitions
        .map((p) => ({ partition: p.partitionId, leader: p.leader, replicas: p.replicas, isr: p.isr, error: p.partitionErrorCode }))
        .sort((a, b) => a.partition - b.partition),
    }));
    out.offsetsBefore = await admin.fetchTopicOffsets(topic);

    const producer = kafka.producer({ allowAutoTopicCreation: false });
    await producer.connect();
    try {
      const messages = [];
      for (let i = 0; i < count; i++) {
        messages.push({
          partition: 0,
          key: `key-${i}`,
          value: `value-${i}`,
          timestamp: String(1700000000000 + i),
          headers: { index: String(i), source: 'kafkajs' },
        });
      }
      // two sends: the second one's base offset follows the first
      out.sends = [];
      const half = Math.floor(count / 2);
      out.sends.push(await producer.send({ topic, acks: -1, messages: messages.slice(0, half) }));
      out.sends.push(await producer.send({ topic, acks: -1, messages: messages.slice(half) }));
      out.sendPartition1 = await producer.send({
        topic, acks: -1, messages: [{ partition: 1, key: 'p1', value: 'on-partition-1' }],
      });
    } finally {
      await producer.disconnect();
    }
    out.offsetsAfter = await admin.fetchTopicOffsets(topic);
  } finally {
    await admin.disconnect();
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((err) => {
  process.stderr.write(`kafkajs roundtrip failed: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
