'use strict';
// context_echo: answers with the context its worker was given (who calls, and the trace it is part
// of). Not in the built-in registry: the observability tests use it to check what reaches a worker.

const { Plugin } = require('../../lib/sdk');

module.exports = new Plugin({
  primitive: 'context_echo',
  inputSchema: { type: 'object' },
  outputSchema: { type: 'object' },
  readyMessage: 'Context echo ready',
  handler: async (args, ctx) => ({
    tenant_id: ctx.context.tenantId,
    request_id: ctx.context.requestId,
    traceparent: ctx.context.traceparent,
    tracestate: ctx.context.tracestate,
  }),
});
