// messaging.test.js - Warren through amqplib's promise API: connect, declare
// and bind, sendToQueue/publish, consume with prefetch, ack/nack/reject,
// ConfirmChannel, get, and closing, each as a Node service would use them.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const amqp = require('amqplib');
const { Warren } = require('../lib/broker');

const broker = new Warren();
const P = `interop.node.${process.pid}.`;
let conn;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Resolves when cond() holds, or rejects after ms.
async function until(cond, ms = 5000, what = 'condition') {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

before(async () => {
  await broker.start();
  conn = await amqp.connect(broker.url);
});

after(async () => {
  if (broker.proc && broker.proc.exitCode === null) await broker.stop();
});

test('connect: amqplib opens a connection and sees the capabilities it relies on', async () => {
  const caps = conn.connection.serverProperties.capabilities;
  assert.equal(caps.publisher_confirms, true);
  assert.equal(caps['basic.nack'], true);
  assert.equal(caps.consumer_cancel_notify, true);
  assert.equal(caps.exchange_exchange_bindings, true);
});

test('assertQueue, assertExchange and bindQueue answer as amqplib expects', async () => {
  const ch = await conn.createChannel();
  const q = await ch.assertQueue(`${P}declared`, { durable: false, autoDelete: true });
  assert.deepEqual(q, { queue: `${P}declared`, messageCount: 0, consumerCount: 0 });
  const named = await ch.assertQueue('', { exclusive: true });
  assert.match(named.queue, /^amq\.gen-/);
  const ex = await ch.assertExchange(`${P}direct`, 'direct', { durable: false });
  assert.deepEqual(ex, { exchange: `${P}direct` });
  await ch.bindQueue(q.queue, ex.exchange, 'k1');
  await ch.bindQueue(named.queue, ex.exchange, 'k2');
  ch.publish(ex.exchange, 'k1', Buffer.from('one'));
  ch.publish(ex.exchange, 'k2', Buffer.from('two'));
  ch.publish(ex.exchange, 'k3', Buffer.from('nowhere'));
  const again = await ch.assertQueue(`${P}declared`, { durable: false, autoDelete: true });
  assert.equal(again.messageCount, 1, 'redeclare reports the routed message');
  assert.equal((await ch.checkQueue(named.queue)).messageCount, 1);
  await ch.unbindQueue(q.queue, ex.exchange, 'k1');
  ch.publish(ex.exchange, 'k1', Buffer.from('after unbind'));
  assert.equal((await ch.checkQueue(q.queue)).messageCount, 1, 'unbound key no longer routes');
  assert.deepEqual(await ch.deleteQueue(q.queue), { messageCount: 1 });
  await ch.deleteExchange(ex.exchange);
  await ch.close();
});

test('sendToQueue, consume with prefetch 2, ack: never more than 2 unacked, order kept', async () => {
  const ch = await conn.createChannel();
  const q = (await ch.assertQueue(`${P}work`, { durable: true })).queue;
  await ch.purgeQueue(q);
  await ch.prefetch(2);
  for (let i = 0; i < 10; i++) {
    ch.sendToQueue(q, Buffer.from(`job ${i}`), { persistent: true, contentType: 'text/plain', headers: { i } });
  }
  const got = [];
  let unacked = 0;
  let maxUnacked = 0;
  const { consumerTag } = await ch.consume(q, (msg) => {
    got.push(msg);
    unacked += 1;
    maxUnacked = Math.max(maxUnacked, unacked);
    setTimeout(() => { unacked -= 1; ch.ack(msg); }, 5);
  });
  await until(() => got.length === 10, 5000, '10 deliveries');
  assert.equal(maxUnacked, 2, 'prefetch 2 bounds the unacked deliveries');
  assert.deepEqual(got.map((m) => m.content.toString()), Array.from({ length: 10 }, (_, i) => `job ${i}`));
  assert.equal(got[3].properties.deliveryMode, 2);
  assert.equal(got[3].properties.contentType, 'text/plain');
  assert.deepEqual(got[3].properties.headers, { i: 3 });
  assert.equal(got[3].fields.consumerTag, consumerTag);
  assert.equal(got[3].fields.routingKey, q);
  assert.equal(got[3].fields.redelivered, false);
  await ch.cancel(consumerTag);
  await sleep(20);
  assert.deepEqual(await ch.checkQueue(q), { queue: q, messageCount: 0, consumerCount: 0 });
  await ch.deleteQueue(q);
  await ch.close();
});

test('nack with requeue comes back redelivered; nack without requeue and reject drop', async () => {
  const ch = await conn.createChannel();
  const q = (await ch.assertQueue(`${P}nack`)).queue;
  for (const b of ['a', 'b', 'c', 'd']) ch.sendToQueue(q, Buffer.from(b));
  const seen = [];
  const msgs = [];
  const { consumerTag } = await ch.consume(q, (msg) => {
    seen.push(`${msg.content}${msg.fields.redelivered ? '*' : ''}`);
    msgs.push(msg);
  });
  await until(() => msgs.length === 4, 5000, 'four deliveries');
  ch.nack(msgs[0], false, false); // a: dropped
  ch.reject(msgs[1], false); // b: dropped
  ch.nack(msgs[3], true, true); // c and d: requeued, in their original order
  await until(() => msgs.length === 6, 5000, 'two redeliveries');
  assert.deepEqual(seen, ['a', 'b', 'c', 'd', 'c*', 'd*']);
  ch.ackAll();
  await ch.cancel(consumerTag);
  assert.deepEqual(await ch.checkQueue(q), { queue: q, messageCount: 0, consumerCount: 0 });
  await ch.deleteQueue(q);
  await ch.close();
});

test('ConfirmChannel: publish callbacks, waitForConfirms, mandatory returns', async () => {
  const ch = await conn.createConfirmChannel();
  const q = (await ch.assertQueue(`${P}confirm`, { autoDelete: true })).queue;
  const acks = [];
  for (let i = 0; i < 20; i++) {
    ch.sendToQueue(q, Buffer.from(`m${i}`), {}, (err) => acks.push(err));
  }
  await ch.waitForConfirms();
  assert.equal(acks.length, 20);
  assert.ok(acks.every((e) => e === null || e === undefined), 'every publish acked');
  const returned = [];
  ch.on('return', (msg) => returned.push(msg));
  let unroutableAck;
  ch.publish('', `${P}nowhere`, Buffer.from('lost'), { mandatory: true }, (err) => { unroutableAck = err; });
  await ch.waitForConfirms();
  assert.equal(unroutableAck, null, 'an unroutable mandatory message is still acked');
  assert.equal(returned.length, 1);
  assert.equal(returned[0].fields.replyCode, 312);
  assert.equal(returned[0].fields.replyText, 'NO_ROUTE');
  assert.equal(returned[0].content.toString(), 'lost');
  assert.equal((await ch.checkQueue(q)).messageCount, 20);
  await ch.deleteQueue(q);
  await ch.close();
});

test('get: messages with messageCount, false on empty, noAck', async () => {
  const ch = await conn.createChannel();
  const q = (await ch.assertQueue(`${P}get`)).queue;
  for (const b of ['x', 'y', 'z']) ch.sendToQueue(q, Buffer.from(b), { messageId: b });
  const m1 = await ch.get(q);
  assert.equal(m1.content.toString(), 'x');
  assert.equal(m1.fields.messageCount, 2);
  assert.equal(m1.properties.messageId, 'x');
  ch.ack(m1);
  const m2 = await ch.get(q, { noAck: true });
  assert.equal(m2.content.toString(), 'y');
  assert.equal(m2.fields.messageCount, 1);
  const m3 = await ch.get(q);
  ch.nack(m3);
  const again = await ch.get(q, { noAck: true });
  assert.equal(again.content.toString(), 'z');
  assert.equal(again.fields.redelivered, true);
  assert.equal(again.fields.messageCount, 0);
  assert.equal(await ch.get(q), false);
  await ch.deleteQueue(q);
  await ch.close();
});

test('fanout and topic exchanges route to every matching queue', async () => {
  const ch = await conn.createChannel();
  await ch.assertExchange(`${P}fan`, 'fanout', { autoDelete: false });
  await ch.assertExchange(`${P}topic`, 'topic', { autoDelete: false });
  const a = (await ch.assertQueue('', { exclusive: true })).queue;
  const b = (await ch.assertQueue('', { exclusive: true })).queue;
  await ch.bindQueue(a, `${P}fan`, '');
  await ch.bindQueue(b, `${P}fan`, '');
  await ch.bindQueue(a, `${P}topic`, 'orders.*.eu');
  await ch.bindQueue(b, `${P}topic`, 'orders.#');
  ch.publish(`${P}fan`, '', Buffer.from('all'));
  ch.publish(`${P}topic`, 'orders.new.eu', Buffer.from('eu'));
  ch.publish(`${P}topic`, 'orders.new.us', Buffer.from('us'));
  ch.publish(`${P}topic`, 'orders', Buffer.from('bare'));
  const drain = async (q) => {
    const out = [];
    for (let m = await ch.get(q, { noAck: true }); m; m = await ch.get(q, { noAck: true })) out.push(m.content.toString());
    return out;
  };
  await sleep(20);
  assert.deepEqual(await drain(a), ['all', 'eu']);
  assert.deepEqual(await drain(b), ['all', 'eu', 'us', 'bare']);
  await ch.deleteExchange(`${P}fan`);
  await ch.deleteExchange(`${P}topic`);
  await ch.close();
});

test('close: channel and connection close cleanly with their events', async () => {
  const ch = await conn.createChannel();
  let channelClosed = false;
  ch.on('close', () => { channelClosed = true; });
  await ch.close();
  assert.equal(channelClosed, true);
  let connClosed = false;
  let connError = null;
  conn.on('close', () => { connClosed = true; });
  conn.on('error', (e) => { connError = e; });
  await conn.close();
  assert.equal(connClosed, true);
  assert.equal(connError, null);
  await assert.rejects(conn.createChannel(), /closed/i);
});

test('Warren exits 0 on SIGTERM', async () => {
  assert.equal(await broker.stop(), 0, broker.logTail());
});
