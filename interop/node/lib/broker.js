// broker.js - one Warren broker per amqplib test file.
//
// start() writes a config for a free loopback port into a temp dir, runs
// $WARREN_BIN (default: build/src/warren in the checkout) and resolves once
// the port answers the AMQP header; stop() sends SIGTERM and resolves with
// the exit status (Warren exits 0). WARREN_TEST_EXTERNAL=host:port uses a
// broker that is already running instead (RabbitMQ, to check the tests).
'use strict';

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const SRCDIR = process.env.WARREN_SRCDIR || path.resolve(__dirname, '..', '..', '..');

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// True when host:port answers the AMQP 0-9-1 protocol header with a method frame.
function amqpReady(host, port) {
  return new Promise((resolve) => {
    const sock = net.connect({ host, port });
    const done = (ok) => { sock.destroy(); resolve(ok); };
    sock.setTimeout(1000, () => done(false));
    sock.once('error', () => done(false));
    sock.once('connect', () => sock.write(Buffer.from('AMQP\x00\x00\x09\x01', 'latin1')));
    sock.once('data', (d) => done(d[0] === 1));
  });
}

class Warren {
  constructor() {
    this.host = '127.0.0.1';
    this.port = 0;
    this.proc = null;
    this.dir = null;
    this.exited = null;
    this.external = Boolean(process.env.WARREN_TEST_EXTERNAL);
  }

  get url() {
    return `amqp://guest:guest@${this.host}:${this.port}`;
  }

  async start() {
    if (this.external) {
      const ext = process.env.WARREN_TEST_EXTERNAL;
      const i = ext.lastIndexOf(':');
      this.host = ext.slice(0, i) || '127.0.0.1';
      this.port = Number(ext.slice(i + 1));
      return;
    }
    const bin = process.env.WARREN_BIN || path.join(SRCDIR, 'build', 'src', 'warren');
    fs.accessSync(bin, fs.constants.X_OK);
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warren-interop-node-'));
    this.port = await freePort();
    const conf = path.join(this.dir, 'warren.conf');
    fs.writeFileSync(conf, [
      `listeners.tcp.default = 127.0.0.1:${this.port}`,
      `data_dir = ${this.dir}/data`,
      'log.console.level = debug',
      '',
    ].join('\n'));
    this.logFile = path.join(this.dir, 'warren.log');
    const log = fs.openSync(this.logFile, 'w');
    this.proc = spawn(bin, ['--config', conf], { stdio: ['ignore', log, log] });
    fs.closeSync(log);
    this.exited = new Promise((resolve) => this.proc.once('exit', (code, sig) => resolve(sig ? sig : code)));
    // A broker must not outlive its test file, even when the test runner kills it.
    this.onExit = () => { if (this.proc.exitCode === null) this.proc.kill('SIGKILL'); };
    process.once('exit', this.onExit);
    const deadline = Date.now() + 10000;
    while (Date.now() < deadline) {
      if (this.proc.exitCode !== null) throw new Error(`warren exited with status ${this.proc.exitCode}: ${this.logTail()}`);
      if (await amqpReady(this.host, this.port)) return;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`warren did not answer on port ${this.port}: ${this.logTail()}`);
  }

  logTail(lines = 30) {
    try {
      return fs.readFileSync(this.logFile, 'utf8').split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  }

  // SIGTERM; resolves with the exit status (or the signal name if killed).
  async stop(ms = 10000) {
    if (this.external) return 0;
    if (!this.proc) return null;
    this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), ms);
    const status = await this.exited;
    clearTimeout(timer);
    process.removeListener('exit', this.onExit);
    if (status === 0) fs.rmSync(this.dir, { recursive: true, force: true });
    return status;
  }
}

module.exports = { Warren, freePort, amqpReady };
