// centrifuge-js (npm `centrifuge`, WebSocket from the `ws` package) under remote control, for the hub's SDK tests.
//
//   node driver.mjs '<options JSON>'
//
// options: {"url", "token"?, "tokens"? (what getToken returns, in order), "sub_tokens"? ({channel: [tokens]}),
//           "timeout"? (s), "deadline"? (s), "name"?, "protobuf"? (the SDK's protobuf build: binary frames,
//           payloads as bytes; the driver sends JSON text's UTF-8 and reports bytes parsed as JSON)}
// stdin:   one JSON op a line: {"id", "op", ...args}; ops: connect, disconnect, subscribe, unsubscribe,
//          publish (data, or b64data: bytes), sub_publish, rpc, presence, presence_stats, history, exit
// options also: "data"? (the connect command's data)
// stdout:  one JSON event a line: {"ev": ...}; an op's outcome is {"ev":"reply","id":n,"result"|"error":...}
// The process exits by itself on stdin EOF, on "exit", or at the deadline (default 60 s), whatever happens.
import { createInterface } from 'node:readline';
import WebSocket from 'ws';

const options = JSON.parse(process.argv[2]);
const { Centrifuge } = options.protobuf ? await import('centrifuge/build/protobuf') : await import('centrifuge');
const deadlineMs = 1000 * (options.deadline ?? 60);
const timeoutMs = 1000 * (options.timeout ?? 5);
const tokens = [...(options.tokens ?? [])];
const subTokens = Object.fromEntries(Object.entries(options.sub_tokens ?? {}).map(([k, v]) => [k, [...v]]));

function emit(value) {
  process.stdout.write(JSON.stringify(value) + '\n');
}

function errorOf(err) {
  if (err && typeof err === 'object') {
    return { code: err.code ?? null, message: String(err.message ?? err) };
  }
  return { code: null, message: String(err) };
}

// the protobuf build carries payloads as bytes: JSON text in UTF-8 out, parsed back in (else {b64: base64})
function payloadIn(value) {
  if (!(value instanceof Uint8Array)) return value ?? null;
  if (value.length === 0) return null;
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(value));
  } catch (_) {
    return { b64: Buffer.from(value).toString('base64') };
  }
}

// a payload sent by the protobuf build: JSON text's UTF-8 (a Uint8Array as it is)
function payloadOut(data) {
  if (!options.protobuf || data instanceof Uint8Array) return data;
  return new TextEncoder().encode(JSON.stringify(data));
}

// publishing in the protobuf build: the payload as JSON text's UTF-8
function encodingPayloads(target) {
  if (!options.protobuf) return target;
  const publish = target.publish.bind(target);
  target.publish = (...args) => {
    const data = args[args.length - 1];  // a subscription's publish goes through the client's: once only
    if (!(data instanceof Uint8Array)) args[args.length - 1] = new TextEncoder().encode(JSON.stringify(data));
    return publish(...args);
  };
  return target;
}

// the protobuf build hands uint64 fields (offsets) over as protobufjs Long objects
function numberOf(value) {
  if (value && typeof value === 'object' && 'low' in value) return value.high * 2 ** 32 + (value.low >>> 0);
  return value ?? null;
}

function infoOf(info) {
  return info ? { user: info.user, client: info.client, conn_info: payloadIn(info.connInfo) } : null;
}

function pubOf(ctx) {
  return { channel: ctx.channel, data: payloadIn(ctx.data), offset: numberOf(ctx.offset), info: infoOf(ctx.info) };
}

function subscribedOf(ctx) {
  return {
    channel: ctx.channel,
    recoverable: ctx.recoverable,
    positioned: ctx.positioned,
    was_recovering: ctx.wasRecovering,
    recovered: ctx.recovered,
    offset: ctx.streamPosition ? numberOf(ctx.streamPosition.offset) : null,
    epoch: ctx.streamPosition ? ctx.streamPosition.epoch : null,
  };
}

const clientOptions = {
  websocket: WebSocket,
  timeout: timeoutMs,
  minReconnectDelay: 100,
  maxReconnectDelay: 1000,
  name: options.name ?? 'js',
};
if (options.token !== undefined) clientOptions.token = options.token;
if (options.data !== undefined) clientOptions.data = payloadOut(options.data);
if (options.tokens !== undefined) {
  clientOptions.getToken = async () => {
    emit({ ev: 'get_token' });
    const next = tokens.shift();
    if (next === undefined) throw new Error('no more tokens');
    return next;
  };
}
const client = encodingPayloads(new Centrifuge(options.url, clientOptions));

client.on('connecting', (ctx) => emit({ ev: 'connecting', code: ctx.code, reason: ctx.reason }));
client.on('connected', (ctx) => emit({ ev: 'connected', client: ctx.client }));
client.on('disconnected', (ctx) => emit({ ev: 'disconnected', code: ctx.code, reason: ctx.reason }));
client.on('error', (ctx) => emit({ ev: 'error', type: ctx.type, error: errorOf(ctx.error) }));
// server-side subscriptions are reported on the client
client.on('subscribing', (ctx) => emit({ ev: 'server_subscribing', channel: ctx.channel }));
client.on('subscribed', (ctx) => emit({ ev: 'server_subscribed', ...subscribedOf(ctx) }));
client.on('unsubscribed', (ctx) => emit({ ev: 'server_unsubscribed', channel: ctx.channel }));
client.on('publication', (ctx) => emit({ ev: 'server_publication', ...pubOf(ctx) }));
client.on('message', (ctx) => emit({ ev: 'message', data: payloadIn(ctx.data) }));

function subscription(args) {
  const existing = client.getSubscription(args.channel);
  if (existing) return existing;
  const subOptions = {};
  if (args.token !== undefined) subOptions.token = args.token;
  if (args.recoverable) subOptions.recoverable = true;
  if (args.positioned) subOptions.positioned = true;
  if (args.join_leave) subOptions.joinLeave = true;
  if (subTokens[args.channel] !== undefined) {
    subOptions.getToken = async () => {
      emit({ ev: 'get_sub_token', channel: args.channel });
      const next = subTokens[args.channel].shift();
      if (next === undefined) throw new Error('no more subscription tokens');
      return next;
    };
  }
  const sub = encodingPayloads(client.newSubscription(args.channel, subOptions));
  sub.on('subscribing', (ctx) => emit({ ev: 'subscribing', channel: ctx.channel, code: ctx.code, reason: ctx.reason }));
  sub.on('subscribed', (ctx) => emit({ ev: 'subscribed', ...subscribedOf(ctx) }));
  sub.on('unsubscribed', (ctx) => emit({ ev: 'unsubscribed', channel: ctx.channel, code: ctx.code, reason: ctx.reason }));
  sub.on('publication', (ctx) => emit({ ev: 'publication', ...pubOf(ctx) }));
  sub.on('join', (ctx) => emit({ ev: 'join', channel: ctx.channel, info: infoOf(ctx.info) }));
  sub.on('leave', (ctx) => emit({ ev: 'leave', channel: ctx.channel, info: infoOf(ctx.info) }));
  sub.on('error', (ctx) => emit({ ev: 'sub_error', channel: ctx.channel, type: ctx.type, error: errorOf(ctx.error) }));
  return sub;
}

function presenceOf(result) {
  const clients = {};
  for (const [id, info] of Object.entries(result.clients ?? {})) clients[id] = infoOf(info);
  return { clients };
}

// an op's payload: "data", or "b64data" (base64) published as the Uint8Array of its bytes (protobuf build)
function dataOf(args) {
  return args.b64data === undefined ? args.data : new Uint8Array(Buffer.from(args.b64data, 'base64'));
}

const ops = {
  connect: async () => { client.connect(); return {}; },
  disconnect: async () => { client.disconnect(); return {}; },
  subscribe: async (args) => { subscription(args).subscribe(); return {}; },
  unsubscribe: async (args) => { subscription(args).unsubscribe(); return {}; },
  publish: async (args) => { await client.publish(args.channel, dataOf(args)); return {}; },
  rpc: async (args) => ({ data: payloadIn((await client.rpc(args.method, payloadOut(args.data ?? null))).data) }),
  sub_publish: async (args) => { await subscription(args).publish(args.data); return {}; },
  presence: async (args) => presenceOf(await client.presence(args.channel)),
  presence_stats: async (args) => {
    const r = await client.presenceStats(args.channel);
    return { num_clients: r.numClients, num_users: r.numUsers };
  },
  history: async (args) => {
    const opts = {};
    if (args.limit !== undefined) opts.limit = args.limit;
    const r = await client.history(args.channel, opts);
    return { publications: r.publications.map(pubOf), offset: numberOf(r.offset), epoch: r.epoch };
  },
};

function stop(code) {
  try { client.disconnect(); } catch (_) { /* already down */ }
  setTimeout(() => process.exit(code), 50);
}

setTimeout(() => { emit({ ev: 'deadline' }); stop(3); }, deadlineMs).unref();

const lines = createInterface({ input: process.stdin });
lines.on('line', async (line) => {
  let op;
  try {
    op = JSON.parse(line);
  } catch (err) {
    emit({ ev: 'bad_op', line });
    return;
  }
  if (op.op === 'exit') { stop(0); return; }
  const fn = ops[op.op];
  if (fn === undefined) { emit({ ev: 'reply', id: op.id, error: { code: null, message: 'unknown op ' + op.op } }); return; }
  try {
    emit({ ev: 'reply', id: op.id, result: await fn(op) });
  } catch (err) {
    emit({ ev: 'reply', id: op.id, error: errorOf(err) });
  }
});
lines.on('close', () => stop(0));
