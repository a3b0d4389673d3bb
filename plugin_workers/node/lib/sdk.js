'use strict';
// The Node.js worker SDK: serves one plugin over the Platform-Plugin Protocol (PPP).
//
// The protocol is read at run time from protos/plugin_protocol.proto (no generated code): a
// plugin author writes one handler and declares its primitive; the SDK answers Health and Init,
// decodes the JSON arguments, streams progress and log messages while the handler runs, and ends
// every Invoke with exactly one Completed (large results as ResultChunk messages) or Failed.

const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

// Results larger than this go out as ResultChunk messages (gRPC clients refuse messages over 4 MiB).
const CHUNK_BYTES = 1024 * 1024;
// How often a worker looks whether its supervisor (PPP_PARENT_PID) is still its parent.
const PARENT_POLL_MS = 250;
// How long in-flight calls may take to finish after SIGTERM before the server is closed.
const STOP_GRACE_MS = 1000;
const LOG_LEVELS = { debug: 'DEBUG', info: 'INFO', warning: 'WARNING', error: 'ERROR' };

/** A failure the plugin reports on purpose: becomes PPP Failed{code, message}. */
class PluginError extends Error {
  constructor(message, code = 'plugin_error') {
    super(message);
    this.name = 'PluginError';
    this.code = code;
  }
}

/** One primitive: its name, JSON Schemas and the function that runs it. */
class Plugin {
  constructor({ primitive, handler, inputSchema = { type: 'object' }, outputSchema = { type: 'object' },
    description = '', readyMessage = '' }) {
    if (!primitive || typeof handler !== 'function') {
      throw new TypeError('a Plugin needs a primitive name and a handler(args, ctx) function');
    }
    Object.assign(this, { primitive, handler, inputSchema, outputSchema, description, readyMessage });
  }
}

/** What a handler gets besides its arguments: who calls, and how to report progress. */
class InvocationContext {
  constructor(context, send, signal) {
    this.context = {
      tenantId: context?.tenantId ?? '', userId: context?.userId ?? '',
      sessionId: context?.sessionId ?? '', requestId: context?.requestId ?? '',
      // W3C Trace Context of the platform's span of this call ('' when untraced): the parent of
      // the plugin's own spans, so that they join the caller's trace.
      traceparent: context?.traceparent ?? '', tracestate: context?.tracestate ?? '',
    };
    this._send = send;
    // Aborted when the caller goes away (cancelled, deadline): a long handler may stop early.
    this.signal = signal;
  }

  /** Report progress (0..100); the caller sees it while the handler still runs. */
  progress(percent, message = '') {
    if (!Number.isFinite(percent)) {
      throw new TypeError('progress percent must be a finite number');
    }
    this._send({ progress: { percent: Math.min(Math.max(percent, 0), 100), message: String(message) } });
  }

  /** Send a log line to the caller; it is stored with the invocation's trace. */
  log(message, level = 'info') {
    this._send({ log: { level: LOG_LEVELS[level] ?? 'INFO', message: String(message) } });
  }
}

/** protos/plugin_protocol.proto: beside the platform's sources, or where PPP_PROTO says (images). */
function protoPath() {
  const candidates = [
    process.env.PPP_PROTO,
    path.resolve(__dirname, '..', '..', '..', 'protos', 'plugin_protocol.proto'),
    path.resolve(__dirname, '..', 'protos', 'plugin_protocol.proto'),
  ].filter(Boolean);
  const found = candidates.find((candidate) => fs.existsSync(candidate));
  if (!found) {
    throw new Error(`plugin_protocol.proto not found (looked in ${candidates.join(', ')}); set PPP_PROTO`);
  }
  return found;
}

function loadProtocol() {
  const definition = protoLoader.loadSync(protoPath(), {
    keepCase: false, longs: Number, enums: String, defaults: true, oneofs: true,
  });
  return grpc.loadPackageDefinition(definition).ppp.v1;
}

function failed(code, message) {
  return { failed: { code, message } };
}

/** The JSON arguments as an object, or a PluginError(invalid_input) saying what is wrong. */
function decodeArguments(bytes) {
  let text;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes ?? Buffer.alloc(0));
  } catch {
    throw new PluginError('arguments are not valid UTF-8', 'invalid_input');
  }
  let args;
  try {
    args = JSON.parse(text || '{}');
  } catch (error) {
    throw new PluginError(`arguments are not valid JSON: ${error.message}`, 'invalid_input');
  }
  if (args === null || typeof args !== 'object' || Array.isArray(args)) {
    throw new PluginError('arguments must be a JSON object', 'invalid_input');
  }
  return args;
}

/** A counting semaphore: at most `limit` handlers run at once, the others wait their turn. */
function limiter(limit) {
  let running = 0;
  const waiting = [];
  return async function run(task) {
    if (running >= limit) {
      await new Promise((resolve) => waiting.push(resolve));
    }
    running += 1;
    try {
      return await task();
    } finally {
      running -= 1;
      waiting.shift()?.();
    }
  };
}

function service(plugin, { maxConcurrency }) {
  const slot = limiter(maxConcurrency);
  return {
    Health(call, callback) {
      callback(null, { status: 'SERVING', primitives: [plugin.primitive] });
    },
    Init(call, callback) {
      callback(null, { ok: true, message: plugin.readyMessage || `${plugin.primitive} ready`, primitives: [plugin.primitive] });
    },
    Invoke(call) {
      const abort = new AbortController();
      let ended = false;
      const send = (message) => {
        if (!ended && !abort.signal.aborted) {
          call.write(message);
        }
      };
      // Exactly one terminal message ends the stream, whatever the handler does afterwards.
      const end = (terminal) => {
        if (ended) return;
        send(terminal);
        ended = true;
        call.end();
      };
      call.on('cancelled', () => abort.abort());
      const request = call.request;
      if (request.primitive !== plugin.primitive) {
        end(failed('unknown_primitive', `this worker hosts '${plugin.primitive}', not '${request.primitive}'`));
        return;
      }
      slot(async () => {
        const ctx = new InvocationContext(request.context, send, abort.signal);
        const args = decodeArguments(request.arguments);
        const result = await plugin.handler(args, ctx);
        let output;
        try {
          output = Buffer.from(JSON.stringify(result) ?? 'null', 'utf8');
        } catch (error) {
          throw new PluginError(`result is not JSON-encodable: ${error.message}`, 'invalid_output');
        }
        if (output.length <= CHUNK_BYTES) {
          end({ completed: { output } });
          return;
        }
        for (let index = 0, start = 0; start < output.length; index += 1, start += CHUNK_BYTES) {
          send({ resultChunk: { data: output.subarray(start, start + CHUNK_BYTES), index } });
        }
        end({ completed: { output: Buffer.alloc(0) } });
      }).catch((error) => {
        if (error instanceof PluginError) {
          end(failed(error.code, error.message));
        } else {
          // A bug in the plugin: report it, keep the worker up.
          console.error(`plugin ${plugin.primitive} threw:`, error);
          end(failed('internal', `${error?.name ?? 'Error'}: ${error?.message ?? String(error)}`));
        }
      });
    },
  };
}

/**
 * Exit when the supervisor that started us dies. Node has no PR_SET_PDEATHSIG: the worker
 * watches its parent pid instead, so an orphan exits within PARENT_POLL_MS of its supervisor's
 * death (a supervisor that stops normally kills the worker's whole process group itself).
 */
function dieWithParent() {
  const expected = Number(process.env.PPP_PARENT_PID || 0);
  if (!expected) return;
  const check = () => {
    if (process.ppid !== expected) {
      process.exit(1);
    }
  };
  check();
  setInterval(check, PARENT_POLL_MS).unref();
}

/** Serve `plugin` over PPP on a Unix socket until SIGTERM or SIGINT. */
async function serve(plugin, { unix, maxConcurrency = 4 }) {
  if (!unix) throw new Error('serve() needs the Unix socket path to listen on (unix)');
  dieWithParent();
  const ppp = loadProtocol();
  const server = new grpc.Server();
  server.addService(ppp.PluginWorker.service, service(plugin, { maxConcurrency: Math.max(1, maxConcurrency) }));
  fs.rmSync(unix, { force: true });
  // A private socket: only our own uid (and root) may connect; the directory guards it too.
  process.umask(0o077);
  await new Promise((resolve, reject) => {
    server.bindAsync(`unix://${unix}`, grpc.ServerCredentials.createInsecure(), (error) => (error ? reject(error) : resolve()));
  });
  const stop = () => {
    // Let calls in flight finish for a moment, then close whatever is left.
    const force = setTimeout(() => server.forceShutdown(), STOP_GRACE_MS);
    server.tryShutdown(() => {
      clearTimeout(force);
      fs.rmSync(unix, { force: true });
      process.exit(0);
    });
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

module.exports = { Plugin, PluginError, InvocationContext, serve, decodeArguments, CHUNK_BYTES };
