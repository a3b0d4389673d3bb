package platform.workers;

import io.grpc.stub.ServerCallStreamObserver;
import io.grpc.stub.StreamObserver;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.logging.Level;
import java.util.logging.Logger;
import platform.ppp.v1.HealthRequest;
import platform.ppp.v1.HealthResponse;
import platform.ppp.v1.InitRequest;
import platform.ppp.v1.InitResponse;
import platform.ppp.v1.InvokeRequest;
import platform.ppp.v1.PluginMessage;
import platform.ppp.v1.PluginWorkerGrpc;

/**
 * The PPP {@code PluginWorker} gRPC service for one {@link PluginService}: converts requests to
 * plain Java values, calls the plugin, converts its result or failure back to PPP messages.
 *
 * <p>No plugin input or plugin bug escapes as a gRPC error: every Invoke ends with exactly one
 * Completed or Failed message.
 */
final class PluginWorkerService extends PluginWorkerGrpc.PluginWorkerImplBase {
    private static final Logger LOG = Logger.getLogger(PluginWorkerService.class.getName());
    private static final String UNBOUND = "this worker is a stem cell not yet bound to a plugin";

    /** Null while this is a stem cell's service, not yet bound to a plugin. */
    private volatile PluginService plugin;
    private volatile boolean serving = true;

    PluginWorkerService(PluginService plugin) {
        this.plugin = plugin;
    }

    /** A stem cell's service: PPP is served, Health says NOT_SERVING until {@link #bind}. */
    static PluginWorkerService unbound() {
        return new PluginWorkerService(null);
    }

    /** Binds a stem cell's service to its one plugin; from now on Health says SERVING. */
    synchronized void bind(PluginService plugin) {
        if (this.plugin != null) {
            throw new IllegalStateException("already bound to " + this.plugin.primitive());
        }
        this.plugin = plugin;
    }

    /** From now on Health answers NOT_SERVING, so a prober stops sending work. */
    void stopServing() {
        serving = false;
    }

    @Override
    public void init(InitRequest request, StreamObserver<InitResponse> responses) {
        PluginService plugin = this.plugin;
        if (plugin == null) {
            responses.onNext(InitResponse.newBuilder().setOk(false).setMessage(UNBOUND).build());
            responses.onCompleted();
            return;
        }
        InitResponse.Builder response = InitResponse.newBuilder().addPrimitives(plugin.primitive());
        try {
            Map<String, Object> config = request.getConfig().isEmpty()
                    ? new LinkedHashMap<>()
                    : Json.parseObject(request.getConfig().toByteArray());
            plugin.init(config);
            response.setOk(true).setMessage(plugin.readyMessage());
        } catch (Json.ParseException e) {
            response.setOk(false).setMessage("config is not a JSON object: " + e.getMessage());
        } catch (PluginException e) {
            response.setOk(false).setMessage(e.getMessage());
        } catch (RuntimeException e) {
            LOG.log(Level.WARNING, "plugin " + plugin.primitive() + " failed in init", e);
            response.setOk(false).setMessage("internal error in init: " + e);
        }
        responses.onNext(response.build());
        responses.onCompleted();
    }

    @Override
    public void health(HealthRequest request, StreamObserver<HealthResponse> responses) {
        PluginService plugin = this.plugin;
        HealthResponse.Builder health = HealthResponse.newBuilder().setStatus(
                serving && plugin != null ? HealthResponse.Status.SERVING : HealthResponse.Status.NOT_SERVING);
        if (plugin != null) {
            health.addPrimitives(plugin.primitive());
        }
        responses.onNext(health.build());
        responses.onCompleted();
    }

    @Override
    public void invoke(InvokeRequest request, StreamObserver<PluginMessage> responses) {
        InvocationStream stream = new InvocationStream((ServerCallStreamObserver<PluginMessage>) responses);
        PluginService plugin = this.plugin;
        if (plugin == null) {
            stream.fail(PluginException.INTERNAL, UNBOUND);
            return;
        }
        if (!request.getPrimitive().equals(plugin.primitive())) {
            stream.fail(
                    PluginException.UNKNOWN_PRIMITIVE,
                    "this worker hosts '" + plugin.primitive() + "', not '" + request.getPrimitive() + "'");
            return;
        }
        try {
            stream.complete(run(plugin, request, stream));
        } catch (PluginException e) {
            stream.fail(e.code(), e.getMessage());
        } catch (RuntimeException e) {
            // A bug in the plugin: report it to the caller and keep the worker up.
            LOG.log(Level.WARNING, "plugin " + plugin.primitive() + " failed", e);
            stream.fail(PluginException.INTERNAL, e.toString());
        }
    }

    private static byte[] run(PluginService plugin, InvokeRequest request, InvocationStream stream)
            throws PluginException {
        Map<String, Object> arguments;
        try {
            // Empty bytes is protobuf's default: an invocation without arguments.
            arguments = request.getArguments().isEmpty()
                    ? new LinkedHashMap<>()
                    : Json.parseObject(request.getArguments().toByteArray());
        } catch (Json.ParseException e) {
            throw new PluginException(
                    PluginException.INVALID_INPUT, "arguments are not a valid JSON object: " + e.getMessage());
        }
        Map<String, Object> result = plugin.handle(arguments, new InvocationContext(request, stream));
        if (result == null) {
            throw new PluginException(PluginException.INVALID_OUTPUT, "the plugin returned no result");
        }
        try {
            return Json.write(result).getBytes(StandardCharsets.US_ASCII);
        } catch (IllegalArgumentException e) {
            throw new PluginException(
                    PluginException.INVALID_OUTPUT, "result is not JSON-encodable: " + e.getMessage());
        }
    }
}
