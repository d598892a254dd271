// errors.test.js - the errors amqplib users meet, as amqplib reports them:
// checkQueue on a missing queue, a missing exchange, inequivalent redeclares,
// exclusive queues, unknown delivery tags, and the consumer a deleteQueue
// cancels (amqplib passes null to the consume callback).
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const amqp = require('amqplib');
const { Warren } = require('../lib/broker');

const broker = new Warren();
const P = `interop.node.${process.pid}.`;
let conn;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A channel whose 'error' events are kept instead of being thrown.
async function channel(c = conn) {
  const ch = await c.createChannel();
  ch.errors = [];
  ch.on('error', (e) => ch.errors.push(e));
  ch.closed = new Promise((resolve) => ch.once('close', resolve));
  return ch;
}

before(async () => {
  await broker.start();
  conn = await amqp.connect(broker.url);
  conn.on('error', () => {});
});

after(async () => {
  if (broker.proc && broker.proc.exitCode === null) await broker.stop();
});

test('checkQueue on a missing queue rejects with 404 and closes the channel', async () => {
  const ch = await channel();
  await assert.rejects(ch.checkQueue(`${P}missing`), (e) => {
    assert.equal(e.code, 404);
    assert.match(e.message, new RegExp(`NOT_FOUND - no queue '${P.replace(/\./g, '\\.')}missing' in vhost '/'`));
    return true;
  });
  await ch.closed;
  assert.equal(ch.errors.length, 1);
  assert.equal(ch.errors[0].code, 404);
});

test('checkExchange on a missing exchange rejects with 404', async () => {
  const ch = await channel();
  await assert.rejects(ch.checkExchange(`${P}missing`), { code: 404 });
});

test('publishing to a missing exchange closes the channel with 404', async () => {
  const ch = await channel();
  ch.publish(`${P}missing`, 'k', Buffer.from('x'));
  await ch.closed;
  assert.equal(ch.errors[0].code, 404);
  assert.match(ch.errors[0].message, /NOT_FOUND - no exchange/);
});

test('inequivalent redeclares reject with 406 PRECONDITION_FAILED', async () => {
  let ch = await channel();
  await ch.assertQueue(`${P}q`, { durable: false });
  await assert.rejects(ch.assertQueue(`${P}q`, { durable: true }), (e) => {
    assert.equal(e.code, 406);
    assert.match(e.message, /inequivalent arg 'durable'/);
    return true;
  });
  ch = await channel();
  await ch.assertQueue(`${P}ttl`, { messageTtl: 1000 });
  await assert.rejects(ch.assertQueue(`${P}ttl`, { messageTtl: 2000 }), (e) => {
    assert.equal(e.code, 406);
    assert.match(e.message, /inequivalent arg 'x-message-ttl'/);
    return true;
  });
  ch = await channel();
  await ch.assertExchange(`${P}ex`, 'direct');
  await assert.rejects(ch.assertExchange(`${P}ex`, 'topic'), { code: 406 });
  ch = await channel();
  await ch.deleteQueue(`${P}q`);
  await ch.deleteQueue(`${P}ttl`);
  await ch.deleteExchange(`${P}ex`);
  await ch.close();
});

test("another connection's exclusive queue is locked: 405", async () => {
  const other = await amqp.connect(broker.url);
  const och = await other.createChannel();
  await och.assertQueue(`${P}mine`, { exclusive: true });
  const ch = await channel();
  await assert.rejects(ch.assertQueue(`${P}mine`), (e) => {
    assert.equal(e.code, 405);
    assert.match(e.message, /RESOURCE_LOCKED - cannot obtain exclusive access to locked queue/);
    return true;
  });
  await other.close();
});

test('acking an unknown delivery tag closes the channel with 406', async () => {
  const ch = await channel();
  ch.ack({ fields: { deliveryTag: 7 } });
  await ch.closed;
  assert.equal(ch.errors[0].code, 406);
  assert.match(ch.errors[0].message, /PRECONDITION_FAILED - unknown delivery tag 7/);
});

test('deleteQueue with a consumer cancels it: the consume callback gets null', async () => {
  const ch = await channel();
  const q = (await ch.assertQueue(`${P}doomed`)).queue;
  const got = [];
  await ch.consume(q, (msg) => got.push(msg));
  ch.sendToQueue(q, Buffer.from('last'));
  const other = await channel();
  await sleep(20);
  assert.deepEqual(await other.deleteQueue(q), { messageCount: 0 });
  for (let i = 0; i < 200 && got.length < 2; i++) await sleep(5);
  assert.equal(got.length, 2);
  assert.equal(got[0].content.toString(), 'last');
  assert.equal(got[1], null, 'the cancel reaches the callback as null');
  ch.ack(got[0]); // an unacked delivery of a deleted queue can still be acked
  await ch.assertQueue('', { exclusive: true }); // a round trip: the channel is still open
  assert.equal(ch.errors.length, 0);
  await ch.close();
});

test('an unknown exchange type closes the connection with 503', async () => {
  const c = await amqp.connect(broker.url);
  const errors = [];
  c.on('error', (e) => errors.push(e));
  const closed = new Promise((resolve) => c.once('close', resolve));
  const ch = await c.createChannel();
  ch.on('error', () => {});
  await assert.rejects(ch.assertExchange(`${P}odd`, 'no-such-type'));
  await closed;
  assert.equal(errors.length, 1);
  assert.equal(errors[0].code, 503);
  assert.match(errors[0].message, /COMMAND_INVALID - unknown exchange type 'no-such-type'/);
});

test('the first connection survived every channel error', async () => {
  const ch = await channel();
  const q = await ch.assertQueue('', { exclusive: true });
  assert.match(q.queue, /^amq\.gen-/);
  await conn.close();
});

test('Warren exits 0 on SIGTERM', async () => {
  assert.equal(await broker.stop(), 0, broker.logTail());
});
