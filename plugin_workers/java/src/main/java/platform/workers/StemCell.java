package platform.workers;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.ByteBuffer;
import java.nio.channels.ServerSocketChannel;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.Map;
import platform.ppp.v1.Completed;
import platform.ppp.v1.HealthResponse;
import platform.ppp.v1.InitResponse;
import platform.ppp.v1.InvokeRequest;
import platform.ppp.v1.PluginMessage;

/**
 * A stem cell: a worker started before anyone knows which plugin it will run. Its JVM is up,
 * grpc-java and Netty are loaded and its PPP server listens (Health says NOT_SERVING); it waits
 * on a control socket for the one line that binds it to a plugin:
 *
 * <pre>
 * {"entrypoint": "add_numbers"}\n   →   ok\n   (or: error MESSAGE\n, then exit status 2)
 * </pre>
 *
 * The supervisor sends it once, after it has applied the plugin's limits to the process; the
 * control socket is removed before the answer, and from then on the worker is an ordinary one
 * that serves its plugin.
 */
final class StemCell {
    private static final int MAX_REQUEST_BYTES = 64 * 1024;

    private StemCell() {}

    /** Blocks until the supervisor binds {@code service} to a plugin through {@code control}. */
    static void awaitBinding(Path control, PluginWorkerService service) throws WorkerMain.StartupException {
        warmUp();
        try {
            Files.deleteIfExists(control);
            try (ServerSocketChannel listener = ServerSocketChannel.open(StandardProtocolFamily.UNIX)) {
                listener.bind(UnixDomainSocketAddress.of(control));
                Files.setPosixFilePermissions(control, PosixFilePermissions.fromString("rw-------"));
                try (SocketChannel connection = listener.accept()) {
                    Files.deleteIfExists(control);
                    bind(connection, service);
                }
            }
        } catch (IOException e) {
            throw new WorkerMain.StartupException("stem cell control socket " + control + ": " + e.getMessage(), 1);
        }
    }

    private static void bind(SocketChannel connection, PluginWorkerService service)
            throws IOException, WorkerMain.StartupException {
        String entrypoint;
        try {
            Object value = Json.parseObject(readLine(connection)).get("entrypoint");
            if (!(value instanceof String name) || name.isEmpty()) {
                throw new WorkerMain.StartupException("the binding names no entrypoint", 2);
            }
            entrypoint = name;
            service.bind(WorkerMain.loadService(entrypoint));
        } catch (Json.ParseException e) {
            reply(connection, "error the binding is not a JSON object: " + e.getMessage());
            throw new WorkerMain.StartupException("bad binding: " + e.getMessage(), 2);
        } catch (WorkerMain.StartupException e) {
            reply(connection, "error " + e.getMessage().replace('\n', ' '));
            throw e;
        }
        reply(connection, "ok");
    }

    private static byte[] readLine(SocketChannel connection) throws IOException {
        ByteArrayOutputStream line = new ByteArrayOutputStream();
        ByteBuffer buffer = ByteBuffer.allocate(4096);
        while (line.size() < MAX_REQUEST_BYTES) {
            buffer.clear();
            int read = connection.read(buffer);
            if (read < 0) {
                break;
            }
            for (int i = 0; i < read; i++) {
                byte b = buffer.get(i);
                if (b == '\n') {
                    return line.toByteArray();
                }
                line.write(b);
            }
        }
        return line.toByteArray();
    }

    private static void reply(SocketChannel connection, String text) throws IOException {
        ByteBuffer out = ByteBuffer.wrap((text + "\n").getBytes(StandardCharsets.UTF_8));
        while (out.hasRemaining()) {
            connection.write(out);
        }
    }

    /**
     * Loads (without running any plugin) the classes the first Init and Invoke need: the
     * messages, their builders and the JSON code, so that a bound worker's first call does not
     * pay for them.
     */
    private static void warmUp() {
        try {
            Map<String, Object> parsed = Json.parseObject("{\"a\": [1.5, true, null, \"x\"]}".getBytes(StandardCharsets.UTF_8));
            Json.write(parsed);
        } catch (Json.ParseException e) {
            throw new IllegalStateException(e);
        }
        InitResponse.newBuilder().setOk(true).setMessage("").addPrimitives("").build().toByteArray();
        HealthResponse.newBuilder().setStatus(HealthResponse.Status.SERVING).build().toByteArray();
        InvokeRequest.getDefaultInstance().toBuilder().setPrimitive("").build().toByteArray();
        PluginMessage.newBuilder().setCompleted(Completed.newBuilder()).build().toByteArray();
    }
}
