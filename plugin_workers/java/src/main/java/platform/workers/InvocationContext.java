package platform.workers;

import platform.ppp.v1.InvokeRequest;
import platform.ppp.v1.Log;

/** What a handler gets besides its arguments: who calls, and a way to report progress. */
public final class InvocationContext {
    /** Severity of a {@link #log(Level, String)} line. */
    public enum Level {
        DEBUG(Log.Level.DEBUG),
        INFO(Log.Level.INFO),
        WARNING(Log.Level.WARNING),
        ERROR(Log.Level.ERROR);

        private final Log.Level wire;

        Level(Log.Level wire) {
            this.wire = wire;
        }
    }

    private final InvokeRequest request;
    private final InvocationStream stream;

    InvocationContext(InvokeRequest request, InvocationStream stream) {
        this.request = request;
        this.stream = stream;
    }

    /**
     * Reports progress; the caller sees it while the handler still runs.
     *
     * @param percent 0..100 (values outside are clamped)
     * @throws IllegalArgumentException if {@code percent} is NaN or infinite
     */
    public void progress(double percent, String message) {
        if (!Double.isFinite(percent)) {
            throw new IllegalArgumentException("progress percent must be a finite number, got " + percent);
        }
        stream.progress(Math.min(Math.max(percent, 0.0), 100.0), message == null ? "" : message);
    }

    /** Sends an INFO log line to the caller, stored with the invocation's trace. */
    public void log(String message) {
        log(Level.INFO, message);
    }

    public void log(Level level, String message) {
        stream.log(level.wire, message == null ? "" : message);
    }

    /** True once the caller has cancelled or gone away: a long handler should stop early. */
    public boolean isCancelled() {
        return stream.isCancelled();
    }

    public String tenantId() {
        return request.getContext().getTenantId();
    }

    public String userId() {
        return request.getContext().getUserId();
    }

    public String sessionId() {
        return request.getContext().getSessionId();
    }

    /**
     * The W3C {@code traceparent} of the platform's span of this call ("" when it is not traced): the
     * parent of the plugin's own spans, so that they join the caller's trace.
     */
    public String traceparent() {
        return request.getContext().getTraceparent();
    }

    /** The W3C {@code tracestate} that goes with {@link #traceparent()} ("" when none). */
    public String tracestate() {
        return request.getContext().getTracestate();
    }

    /** The invocation's id: InvokeRequest.request_id, or the context's when that is empty. */
    public String requestId() {
        return request.getRequestId().isEmpty() ? request.getContext().getRequestId() : request.getRequestId();
    }
}
