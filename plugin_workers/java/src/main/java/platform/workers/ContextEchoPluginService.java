package platform.workers;

import java.util.Map;

/**
 * {@code context_echo}: answers with the context its worker was given (who calls, and the trace it
 * is part of). Not in the built-in registry: the observability tests use it to check what reaches
 * a worker.
 */
public final class ContextEchoPluginService extends PluginService {
    @Override
    public String primitive() {
        return "context_echo";
    }

    @Override
    public Map<String, Object> handle(Map<String, Object> arguments, InvocationContext context) {
        return Json.object(
                "tenant_id", context.tenantId(),
                "request_id", context.requestId(),
                "traceparent", context.traceparent(),
                "tracestate", context.tracestate());
    }
}
