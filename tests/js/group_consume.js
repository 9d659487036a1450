// kafkajs consumer group against a potok broker: subscribe, read COUNT messages,
// commit them, leave.
//
//   node group_consume.js BOOTSTRAP TOPIC GROUP COUNT
//
// Prints one JSON object on stdout: the messages read, as [partition, offset, value].
'use strict';

const { Kafka, logLevel } = require('kafkajs');

async function main() {
  const [bootstrap, topic, groupId, countArg] = process.argv.slice(2);
  const count = Number(countArg);
  if (!bootstrap || !topic || !groupId || !(count > 0)) {
    throw new Error('usage: node group_consume.js BOOTSTRAP TOPIC GROUP COUNT');
  }
  const kafka = new Kafka({ clientId: 'potok-e2e-kafkajs', brokers: [bootstrap], logLevel: logLevel.WARN });
  const consumer = kafka.consumer({ groupId, sessionTimeout: 10000, heartbeatInterval: 500 });
  await consumer.connect();
  const got = [];
  let done;
  const finished = new Promise((resolve) => { done = resolve; });
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    autoCommit: true,
    eachMessage: async ({ partition, message }) => {
      if (got.length < count) {
        got.push([partition, Number(message.offset), message.value.toString()]);
      }
      if (got.length >= count) {
        done();
      }
    },
  });
  const timeout = setTimeout(() => done(), 60000);
  await finished;
  clearTimeout(timeout);
  await consumer.disconnect(); // commits what eachMessage resolved, then leaves
  console.log(JSON.stringify({ got }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
